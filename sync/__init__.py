"""np6-sync: keep NP6 static segments equal to target lists kept in files.

The Python API (``sync.run``, ``sync.plan``, ``sync.RunReport``) lives in ``sync.api``
and is imported on first use: the command line's start must stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str

    from sync.api import JobReport, Np6SyncError, RunReport, plan, run

__all__ = ["JobReport", "Np6SyncError", "RunReport", "__version__", "plan", "run"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # Read when asked: importlib.metadata costs ~20 ms that `validate` need not pay.
        global __version__
        from sync.version import version

        __version__ = version()
        return __version__
    if name in ("JobReport", "Np6SyncError", "RunReport", "plan", "run"):
        from sync import api

        return getattr(api, name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
