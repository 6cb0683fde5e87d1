"""Snapshot tests: the checksums of what today's export paths write, recorded in the repository,
which every later engine must reproduce (docs/decisions/0023-output-snapshots.md).

A *case* is one run of one template (a builtin template, or a template of several sinks)
on one source (a reference zip, a block of a database, a generated block). Its snapshot is
``{relative output name: digest}`` for every file the run wrote, or ``{"error": "Class:
message"}`` when the run fails by design. The snapshots of one source live in one JSON file
(sorted keys, one entry per case).

The snapshots were recorded from the plain path, the row-by-row path that the engine
(:mod:`aml_exportkit.engine`) replaced; they are the contract of every export's one path
now (decision 0035). Every case runs on each lane (:data:`LANES`): the default (the engine
with its native kernel) and the engine with its Python functions, the kernel's reference
(``EXPORTKIT_NATIVE=0``); every lane must give the one recorded snapshot.

What a digest is taken over:

- ``sha256:<hex>``: the file's bytes. CSV files, fixture zips (decision 0008: fixed entry
  times and order, stored members), ``datapackage.json`` and ``codebook.md`` are byte for
  byte reproducible, so their bytes are the contract.
- ``parquet:<hex>``: the sha256 of a canonical JSON text of the file: every field's name,
  Arrow type, nullability and metadata; the file's key-value metadata without
  ``ARROW:schema`` (pyarrow's serialisation of the same schema, listed field by field
  instead) and without ``exportkit.version``; the rows of each row group and the codecs
  used; and every value of every column (timestamps as integers in their unit). Left out:
  the writer's ``created_by`` and format version, page and dictionary layout, statistics
  and compressed bytes, all of which change with the pyarrow and zstd versions.
- ``arrow:<hex>``: a table from :func:`aml_exportkit.to_arrow`, in the canonical form of a
  Parquet file without the row groups and codecs (it has none).
- ``duckdb:<hex>``: the sha256 of a canonical JSON text of the database: per table (by
  name) its columns (name, type, nullability, in order), its primary, unique and foreign
  keys, and its rows in primary-key order (``TIMESTAMPTZ`` as microseconds since the epoch,
  ``JSON`` as its text); the names of user views and indexes. Left out: the file's bytes
  (storage version, block layout and free space change with DuckDB's version and between
  runs).
- ``manifest:<hex>``: the sha256 of the manifest as written (key order kept), after
  replacing what names the machine or the moment, not the data: the tool's and the plugins'
  versions; the source's location (``{source}``), a database's name (``{database}``) and
  the output folder (``{out}``) wherever they occur; a database's server version and
  snapshot time; the ``bytes`` and ``sha256`` of outputs whose own digest is canonical
  (above: their file bytes are not reproducible); and the watermark's packed session keys,
  which are zlib output (zlib builds differ in their bytes), unpacked to the keys they hold.
- Plugins' tests add their own canonical forms (:func:`register_canonical`).

An error's message is recorded with the same replacements (``{source}``, ``{out}``, …).

To record the snapshots (after a deliberate change of output), run the tests with
``EXPORTKIT_UPDATE_SNAPSHOTS=1``: each case then rewrites its entry instead of comparing
(the lanes must still agree), and the stale-entry check drops entries of cases that are
gone. Review the diff of the JSON files before committing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from aml_exportkit.errors import ExportkitError
from aml_exportkit.frames import to_arrow
from aml_exportkit.pipeline import load_template, run_export
from aml_exportkit.plugins import PluginManager, get_plugin_manager, load_registry
from aml_exportkit.template.load import parse_template
from aml_exportkit.watermark import decode_pks

#: Set to ``1`` to record the snapshots instead of comparing with them.
UPDATE_ENV = "EXPORTKIT_UPDATE_SNAPSHOTS"
#: The switches the lanes set; cleared otherwise.
SWITCHES = ("EXPORTKIT_NATIVE",)
#: Every lane: the environment it runs in.
LANES: dict[str, dict[str, str]] = {
    "default": {},
    "python-kernel": {"EXPORTKIT_NATIVE": "0"},
}


def updating() -> bool:
    """Whether this test session records snapshots instead of comparing."""
    return os.environ.get(UPDATE_ENV) == "1"


# -- what a case is ---------------------------------------------------------------------------


@attrs.frozen
class Run:
    """One run of a case.

    :param name: the case's key in its source's snapshot file.
    :param template: a builtin template's name, or a template's TOML text.
    :param to_arrow: instead of a template, :func:`aml_exportkit.to_arrow` of the source
        with this layout (``"long"`` or ``"wide"``); its snapshot is ``{"table": digest}``.
    """

    name: str
    template: str = ""
    to_arrow: str | None = None


@attrs.frozen
class Source:
    """Where a case reads from.

    :param name: the snapshot file's stem, and the case ids' prefix.
    :param uri: a zip's path or a database's URI.
    :param blocks: the block slugs to export (a database's), or none (a zip's one block).
    :param volatile: text in outputs that names the machine, not the data, with what
        stands for it in a snapshot.
    """

    name: str
    uri: str
    blocks: tuple[str, ...] = ()
    volatile: tuple[tuple[str, str], ...] = ()

    @classmethod
    def zip(cls, name: str, path: Path) -> Source:
        """A fixture zip."""
        return cls(name, str(path), (), ((str(path), "{source}"),))

    @classmethod
    def database(cls, name: str, dsn: str, block: str) -> Source:
        """One block of a database."""
        dbname = dsn.rsplit("/", 1)[-1]
        return cls(name, dsn, (block,), ((dsn, "{source}"), (dbname, "{database}")))


# -- canonical forms --------------------------------------------------------------------------

#: file suffix → (digest label, canonical bytes of the file)
_CANONICAL: dict[str, tuple[str, Callable[[Path], bytes]]] = {}


def register_canonical(suffix: str, label: str, canonical: Callable[[Path], bytes]) -> None:
    """Take the digest of files ending in ``suffix`` over ``canonical(path)`` instead of
    their bytes, labelled ``label`` (for a format whose bytes carry versions or times)."""
    _CANONICAL[suffix] = (label, canonical)


def canonical_json(value: Any) -> bytes:
    """``value`` as one JSON text: key order as given, floats by ``repr`` (exact; NaN
    and infinities spelt out), decimals and bytes as text, dates in ISO form."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), allow_nan=True, default=_plain
    ).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    if hasattr(value, "isoformat"):
        return {"iso": value.isoformat()}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


#: Key-value metadata left out of a canonical table: pyarrow's serialisation of the schema
#: (recorded field by field instead) and the tool's version.
VOLATILE_METADATA = frozenset({b"ARROW:schema", b"exportkit.version"})


def table_form(table: Any, metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """An Arrow table as plain data: each field's name, type, nullability and metadata; the
    key-value ``metadata`` but :data:`VOLATILE_METADATA`; every value of every column
    (timestamps as integers in their unit)."""
    pa = importlib.import_module("pyarrow")
    pc = importlib.import_module("pyarrow.compute")
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = pc.cast(column, pa.int64())
        columns.append(column.to_pylist())
    return {
        "fields": [
            [
                f.name,
                str(f.type),
                f.nullable,
                sorted((k.decode(), v.decode()) for k, v in (f.metadata or {}).items()),
            ]
            for f in table.schema
        ],
        "metadata": sorted(
            (k.decode(), v.decode())
            for k, v in (metadata or {}).items()
            if k not in VOLATILE_METADATA
        ),
        "columns": columns,
    }


def parquet_canonical(path: Path) -> bytes:
    """A Parquet file's schema, metadata, row groups and values (module docstring)."""
    pq = importlib.import_module("pyarrow.parquet")
    handle = pq.ParquetFile(str(path))
    meta = handle.metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    form = table_form(handle.read(), meta.metadata)
    form["row_groups"] = [g.num_rows for g in groups]
    form["codecs"] = sorted({g.column(j).compression for g in groups for j in range(g.num_columns)})
    return canonical_json(form)


def duckdb_canonical(path: Path) -> bytes:
    """A DuckDB database's tables, keys and rows (module docstring)."""
    duckdb = importlib.import_module("duckdb")
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY table_name"
            ).fetchall()
        ]
        tables = []
        for name in names:
            columns = con.execute(
                "SELECT column_name, data_type, is_nullable FROM duckdb_columns()"
                " WHERE table_name = ? ORDER BY column_index",
                [name],
            ).fetchall()
            keys = con.execute(
                "SELECT constraint_type, constraint_column_names, referenced_table,"
                " referenced_column_names FROM duckdb_constraints() WHERE table_name = ?"
                " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')",
                [name],
            ).fetchall()
            keys = sorted(([t, list(c), r, list(rc or [])] for t, c, r, rc in keys), key=repr)
            primary = next((c for t, c, _, _ in keys if t == "PRIMARY KEY"), None)
            order = primary or [c[0] for c in columns]
            selected = ", ".join(
                f'epoch_us("{c}")' if t == "TIMESTAMP WITH TIME ZONE" else f'"{c}"'
                for c, t, _ in columns
            )
            ordered = ", ".join(f'"{c}"' for c in order)
            rows = con.execute(f'SELECT {selected} FROM "{name}" ORDER BY {ordered}').fetchall()
            tables.append(
                {
                    "name": name,
                    "columns": [list(c) for c in columns],
                    "keys": keys,
                    "rows": [list(r) for r in rows],
                }
            )
        views = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        ).fetchall()
        indexes = con.execute("SELECT index_name FROM duckdb_indexes() ORDER BY 1").fetchall()
    finally:
        con.close()
    return canonical_json(
        {"tables": tables, "views": [v[0] for v in views], "indexes": [i[0] for i in indexes]}
    )


register_canonical(".parquet", "parquet", parquet_canonical)
register_canonical(".duckdb", "duckdb", duckdb_canonical)


def _replace(value: Any, volatile: Sequence[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for text, stand_in in volatile:
            value = value.replace(text, stand_in)
        return value
    if isinstance(value, list):
        return [_replace(v, volatile) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, volatile) for k, v in value.items()}
    return value


def manifest_canonical(data: bytes, volatile: Sequence[tuple[str, str]]) -> bytes:
    """A manifest without what names the machine or the moment (module docstring)."""
    doc = json.loads(data)
    doc["tool"]["version"] = "{version}"
    for plugin in doc["plugins"]:
        plugin["version"] = "{version}"
    source = doc["source"]
    for key in ("server_version", "snapshot_time"):
        if source.get(key) is not None:
            source[key] = "{" + key + "}"
    for inputs in source.get("inputs") or []:
        for key in ("server_version", "snapshot_time"):
            if inputs.get(key) is not None:
                inputs[key] = "{" + key + "}"
    for part in source["parts"]:
        if part["details"].get("snapshot_time") is not None:
            part["details"]["snapshot_time"] = "{snapshot_time}"
    for output in doc["outputs"]:
        if Path(output["path"]).suffix in _CANONICAL:
            output["bytes"] = output["sha256"] = "{canonical}"
    for block in (doc.get("watermark") or {}).get("blocks", []):
        if block.get("snapshot_time") is not None:
            block["snapshot_time"] = "{snapshot_time}"
        sessions = block.get("sessions")
        if isinstance(sessions, dict) and "pks" in sessions:
            sessions["pks"] = decode_pks(sessions["pks"])
    return canonical_json(_replace(doc, volatile))


def digest(path: Path, volatile: Sequence[tuple[str, str]] = ()) -> str:
    """The digest a snapshot records for the file at ``path`` (module docstring)."""
    if path.name.endswith("manifest.json"):
        data = manifest_canonical(path.read_bytes(), volatile)
        return "manifest:" + hashlib.sha256(data).hexdigest()
    known = _CANONICAL.get(path.suffix)
    if known is not None:
        label, canonical = known
        return f"{label}:" + hashlib.sha256(canonical(path)).hexdigest()
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# -- running a case ---------------------------------------------------------------------------


@contextlib.contextmanager
def lane(name: str) -> Iterator[None]:
    """Run the body with the environment of lane ``name``."""
    saved = {k: os.environ.get(k) for k in SWITCHES}
    try:
        for key in SWITCHES:
            os.environ.pop(key, None)
        os.environ.update(LANES[name])
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def export(
    run: Run,
    source: Source,
    out: Path,
    *,
    plugins: Sequence[object] = (),
) -> dict[str, str]:
    """Run ``run`` on ``source`` into the empty folder ``out`` (in this process) and return
    its snapshot: every file's digest by relative name, or ``{"error": ...}``."""
    pm: PluginManager = get_plugin_manager(load_entrypoints=False, plugins=list(plugins))
    registry = load_registry(pm)
    volatile = sorted((*source.volatile, (str(out), "{out}")), key=lambda v: -len(v[0]))
    out.mkdir(parents=True)
    if run.to_arrow is not None:
        return _to_arrow(run, source, pm, volatile)
    try:
        if "\n" in run.template:
            template = parse_template(
                run.template,
                file=f"{run.name}.toml",
                folder=out,
                sinks=registry.sink_specs,
                templates=registry.template_specs,
            )
        else:
            template = load_template(run.template, registry=registry)
        run_export(
            template,
            source=source.uri,
            blocks=source.blocks or None,
            out_dir=out,
            plugin_manager=pm,
        )
    except ExportkitError as exc:
        assert not any(out.iterdir()), f"{run.name}: a failed run left files in {out}"
        return {"error": _replace(f"{type(exc).__name__}: {exc}", volatile)}
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {p.relative_to(out).as_posix(): digest(p, volatile) for p in files}


def _to_arrow(
    run: Run, source: Source, pm: PluginManager, volatile: Sequence[tuple[str, str]]
) -> dict[str, str]:
    try:
        table = to_arrow(
            source.uri,
            blocks=source.blocks or None,
            table=run.to_arrow,  # type: ignore[arg-type]
            plugin_manager=pm,
        )
    except ExportkitError as exc:
        return {"error": _replace(f"{type(exc).__name__}: {exc}", volatile)}
    form = canonical_json(table_form(table, table.schema.metadata))
    return {"table": "arrow:" + hashlib.sha256(form).hexdigest()}


def export_on_lanes(
    run: Run, source: Source, workdir: Path, *, plugins: Sequence[object] = ()
) -> dict[str, str]:
    """Run the case on each lane; fail unless every lane wrote the same snapshot."""
    seen: dict[str, dict[str, str]] = {}
    for name in LANES:
        with lane(name):
            seen[name] = export(run, source, workdir / name, plugins=plugins)
        shutil.rmtree(workdir / name)
    first, *others = LANES
    for name in others:
        if seen[name] != seen[first]:
            pytest.fail(
                f"{source.name} {run.name}: lane {name!r} differs from lane {first!r}:\n"
                + describe(seen[first], seen[name], (first, name))
            )
    return seen[first]


def describe(
    expected: Mapping[str, str],
    got: Mapping[str, str],
    labels: tuple[str, str] = ("recorded", "got"),
) -> str:
    """The difference between two snapshots of a case, one line per file."""
    was, now = labels
    lines = []
    for name in sorted(set(expected) | set(got)):
        if name not in got:
            lines.append(f"  {name}: only {was} ({expected[name]})")
        elif name not in expected:
            lines.append(f"  {name}: only {now} ({got[name]})")
        elif expected[name] != got[name]:
            lines.append(f"  {name}: {was} {expected[name]}, {now} {got[name]}")
    return "\n".join(lines)


# -- the recorded snapshots -------------------------------------------------------------------


def load(file: Path) -> dict[str, dict[str, str]]:
    """A snapshot file's cases (empty when the file does not exist yet)."""
    if not file.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(file.read_text(encoding="utf-8"))
    return data


def save(file: Path, cases: Mapping[str, Mapping[str, str]]) -> None:
    """Write a snapshot file: sorted keys, two-space indent, a final newline."""
    file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cases, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    file.write_text(text, encoding="utf-8")


def check(file: Path, case: str, got: Mapping[str, str]) -> None:
    """Compare ``got`` with the snapshot of ``case`` in ``file``, or record it when
    :func:`updating`. Fails naming the case and each file that differs."""
    cases = load(file)
    if updating():
        if cases.get(case) != got:
            cases[case] = dict(got)
            save(file, cases)
        return
    shown = file.name
    if case not in cases:
        pytest.fail(
            f"{shown}: no snapshot of case {case!r}; record it with {UPDATE_ENV}=1"
            f" (it would be {json.dumps(got, sort_keys=True)})"
        )
    expected = cases[case]
    if expected != got:
        pytest.fail(
            f"{shown}: case {case!r} differs from its snapshot ({UPDATE_ENV}=1 records the"
            f" new one if the change is meant):\n" + describe(expected, got)
        )


def check_no_stale(file: Path, cases: Iterable[str]) -> None:
    """Every entry of ``file`` is a case that still exists (dropped when :func:`updating`)."""
    recorded = load(file)
    known = set(cases)
    stale = sorted(set(recorded) - known)
    if updating():
        if stale:
            save(file, {k: v for k, v in recorded.items() if k in known})
        return
    assert not stale, f"{file.name}: snapshots of cases that no longer exist: {stale}"
