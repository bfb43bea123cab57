"""What the commands print, when the output may fail: a full disk, a closed pipe.

A sync's outcome does not depend on its stdout: a table that cannot be printed is said
once, on stderr if that still works, and the run goes on to write its reports and exit
with its own code.
"""

from __future__ import annotations

import threading

from sync.console.logs import say

_failed = threading.Event()


def show(text: str) -> None:
    """``text`` on stdout, flushed, so that a failure is seen here and not at exit."""
    try:
        print(text, flush=True)
    except (OSError, ValueError) as error:  # ValueError: stdout closed by the caller
        output_failed("stdout", error)


def output_failed(stream: str, error: BaseException) -> None:
    """Say once, on stderr if it can still take it, that ``stream`` failed."""
    if _failed.is_set():
        return
    _failed.set()
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    say(
        f"np6-sync: the output to {stream} failed ({reason}); the run's outcome stands: "
        "its exit code, its state, and the --report-json file when asked for",
        "WARNING",
    )
