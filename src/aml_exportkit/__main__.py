"""``python -m aml_exportkit``: the same as the ``exportkit`` command."""

from .cli import main

if __name__ == "__main__":
    main()
