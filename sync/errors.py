"""The error tree, grouped by what the caller can do about it.

Every error that ends a job maps to one documented exit code:

- ``UsageError``      2  bad usage, job file, settings, source or state, the API key
                         missing: fix the input
- ``KeyRefusedError`` 2  NP6 refused the key (401) or a right of it (403) before anything
                         was sent (1 once sending had begun)
- ``RefusedError``    3  a safeguard refused the run: check the source, or pass --force
- ``LockedError``     4  another run holds this job's lock: wait for it
- ``SyncError``       1  the sync itself failed (after retries), or NP6 could not be
                         reached (``UnreachableError``): the state holds exactly what
                         NP6 acknowledged, so a rerun goes on from there
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_LOCKED = 4


class Np6SyncError(Exception):
    """Base of every error np6-sync reports to its user. ``kind`` names the class of
    failure in a word, for the report's ``error_kind`` and the metrics' ``reason``."""

    exit_code = EXIT_FAILED
    kind = "failed"


# --- input: nothing was sent, fix the input and run again (exit 2) ---------------------


class UsageError(Np6SyncError):
    kind = "usage"
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A job or settings file is invalid; ``problems`` lists each one with its YAML path."""

    kind = "config"

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


class SourceError(UsageError):
    """The source file cannot be read as the job describes it."""

    kind = "source"


class StateError(UsageError):
    """The state file cannot be trusted for this job."""

    kind = "state"


class SegmentError(UsageError):
    """The job names a segment it cannot sync: NP6 does not know it, or it is dynamic.
    Found before the first change, so nothing was sent."""

    kind = "segment"


class HistoryError(Np6SyncError):
    """The run history could not be written. Never ends a job: the caller warns, because
    the history is for people and a sync that worked must not fail over it."""


# --- refused by a safeguard: nothing was sent (exit 3) ---------------------------------


class RefusedError(Np6SyncError):
    kind = "refused"
    exit_code = EXIT_REFUSED


# --- another run holds the lock (exit 4) -----------------------------------------------


class LockedError(Np6SyncError):
    kind = "locked"
    exit_code = EXIT_LOCKED


# --- the sync failed: the state holds what NP6 acknowledged (exit 1) -------------------


class SyncError(Np6SyncError):
    kind = "sync"
    exit_code = EXIT_FAILED


class ApiError(SyncError):
    """NP6 answered with an error, or could not be reached.

    The message carries the call, the status and NP6's request id, and never the key.
    """

    def __init__(
        self,
        call: str,
        status: int | None,
        request_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.call = call
        self.status = status
        self.request_id = request_id
        self.detail = detail
        self.retry_after = retry_after
        parts = [call, f"HTTP {status}" if status is not None else "no answer"]
        if detail:
            parts.append(detail)
        if request_id:
            parts.append(f"x-request-id {request_id}")
        super().__init__(": ".join(parts[:2]) + "".join(f" ({p})" for p in parts[2:]))


class RetriableApiError(ApiError):
    """429, 5xx, a dropped connection or a timeout: worth another try."""

    kind = "api"


class UnreachableError(RetriableApiError):
    """No request of the run has been answered yet and the host cannot be reached (DNS,
    refused, timeout, TLS): within ``timeouts.first_contact`` it is given up on."""

    kind = "unreachable"


class FatalApiError(ApiError):
    """Any other 4xx: trying again cannot help."""

    kind = "api"


class KeyRefusedError(FatalApiError):
    """NP6 answered 401 (the key is not accepted) or 403 (it lacks a right). Exit 2 while
    nothing was sent (fix the key or its user's rights), 1 once sending had begun."""

    kind = "key_refused"
    exit_code = EXIT_USAGE


class KeyMissingError(UsageError):
    """The environment variable the settings name (api_key_env) is unset or empty."""

    kind = "key_missing"


class UnexpectedAnswerError(FatalApiError):
    """NP6 answered 2xx with a body np6-sync cannot read (a count that is not a number, a
    look-up that is not a list): its own class, so a caller that can do without the
    answer may fall back."""


class NotTakenError(SyncError):
    """NP6 added too few of the keys sent (they match no contact): the sending stopped,
    and the state holds what NP6 acknowledged."""

    kind = "not_taken"


class StoppedError(SyncError):
    """SIGTERM or SIGINT stopped the run; the state holds what NP6 acknowledged."""

    kind = "stopped"

    @classmethod
    def before_sending(cls) -> StoppedError:
        return cls(
            "stopped by a signal before anything was sent: the segment and the state are unchanged"
        )

    @classmethod
    def before_the_reload(cls) -> StoppedError:
        """A stop between a push and the reload fallback that follows it."""
        return cls(
            "stopped by a signal before the reload instead was sent: the state holds what NP6 "
            "acknowledged of the push before it, and the next run goes on from there"
        )


class _Bug(SyncError):
    kind = "bug"


# --- the one place where foreign failures enter the tree -------------------------------


class StorageError(UsageError):
    """A file np6-sync keeps (state, journal, lock, rejects, history, listing) could not be
    read or written: a read-only or full folder, a permission. Nothing was sent (exit 2),
    unless the failure came once sending had begun (then the job's exit is 1)."""

    kind = "storage"


def describe_error(error: BaseException) -> str:
    """One line for a foreign exception: ``No space left on device (state/a.parquet)``."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def foreign_errors(
    wrap: Callable[[str], Np6SyncError], describe: Callable[[BaseException], str] = describe_error
) -> Iterator[None]:
    """At an I/O edge: any exception that is not one of ours becomes ``wrap(description)``.

    Ours pass through untouched, so nested edges do not wrap twice.
    """
    try:
        yield
    except Np6SyncError:
        raise
    except Exception as error:
        raise wrap(describe(error)) from None


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """An I/O edge: an ``OSError`` of the block (what a disk, a folder or a library's file
    layer raise) becomes a StorageError saying ``cannot <what>``. Errors of the tree pass
    unchanged; anything else is a bug, which the job's edge reports with ``as_error``."""
    try:
        yield
    except OSError as error:
        raise as_error(error, what) from error


def as_error(error: BaseException, what: str) -> Np6SyncError:
    """Any exception as an error of the tree: itself, a StorageError for an ``OSError``
    (``cannot <what>``), else an unexpected one (a bug: exit 1, its type named, a request
    to report it). The original stays the ``__cause__``, for ``-v``'s traceback."""
    if isinstance(error, Np6SyncError):
        return error
    if isinstance(error, OSError):
        translation: Np6SyncError = StorageError(f"cannot {what}: {describe_error(error)}")
    else:
        text = str(error).splitlines()[0] if str(error) else ""
        translation = _Bug(
            f"unexpected {type(error).__name__}{': ' + text if text else ''}; this is a bug "
            "in np6-sync: please report it, with the output of the same command run with -v"
        )
    translation.__cause__ = error
    return translation
