"""np6-sync: keep NP6 static segments equal to target lists kept in files.

The Python API (``sync.run``, ``sync.plan``, ``sync.RunReport``) lives in ``sync.api``
and is imported on first use: the command line's start must stay fast.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

try:  # one source: the installed package's metadata (pyproject's version)
    __version__ = metadata.version("np6-sync")
except metadata.PackageNotFoundError:  # run from a folder that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from sync.api import JobReport, Np6SyncError, RunReport, plan, run

__all__ = ["JobReport", "Np6SyncError", "RunReport", "__version__", "plan", "run"]


def __getattr__(name: str) -> Any:
    if name in ("JobReport", "Np6SyncError", "RunReport", "plan", "run"):
        from sync import api

        return getattr(api, name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
