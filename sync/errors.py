"""The error tree, grouped by what the caller can do about it.

Every error that ends a job maps to one documented exit code:

- ``UsageError``      2  bad usage, job file, settings, source or state: fix the input
- ``RefusedError``    3  a safeguard refused the run: check the source, or pass --force
- ``LockedError``     4  another run holds this job's lock: wait for it
- ``SyncError``       1  the sync itself failed (after retries): the state holds
                         exactly what NP6 acknowledged, so a rerun goes on from there
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_LOCKED = 4


class Np6SyncError(Exception):
    """Base of every error np6-sync reports to its user."""

    exit_code = EXIT_FAILED


# --- input: nothing was sent, fix the input and run again (exit 2) ---------------------


class UsageError(Np6SyncError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A job or settings file is invalid; ``problems`` lists each one with its YAML path."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


class SourceError(UsageError):
    """The source file cannot be read as the job describes it."""


class StateError(UsageError):
    """The state file cannot be trusted for this job."""


# --- refused by a safeguard: nothing was sent (exit 3) ---------------------------------


class RefusedError(Np6SyncError):
    exit_code = EXIT_REFUSED


# --- another run holds the lock (exit 4) -----------------------------------------------


class LockedError(Np6SyncError):
    exit_code = EXIT_LOCKED


# --- the sync failed: the state holds what NP6 acknowledged (exit 1) -------------------


class SyncError(Np6SyncError):
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


class FatalApiError(ApiError):
    """Any other 4xx: trying again cannot help."""
