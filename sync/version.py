"""The installed version, single-sourced from the package's metadata (pyproject's).

A leaf module: the seal, the history and the client's User-Agent read it without
importing the package's door (``sync/__init__.py`` re-exports it as ``__version__``).
"""

from __future__ import annotations

from functools import cache


@cache
def version() -> str:
    """Read once, when first asked: importlib.metadata costs ~20 ms that `validate` and a
    sealed run need not pay."""
    from importlib import metadata

    try:
        return metadata.version("np6-sync")
    except metadata.PackageNotFoundError:  # run from a folder that was never installed
        return "0+unknown"
