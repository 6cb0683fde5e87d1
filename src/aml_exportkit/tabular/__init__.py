"""Tables for the tabular sinks: row building (long, wide, MUSCLE's layouts), spilling to
disk, and writing CSV and Parquet. The sinks in :mod:`aml_exportkit.sinks` are thin layers
over this package."""
