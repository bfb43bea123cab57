"""The run report as one value: what a job did, counted. Pure; renderers print it.

A job's report is frozen: built once from what its phases reached (sync.job.report), and
replaced whole by a later step (a verification, a fan-out's unmapped rows)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

from sync.errors import EXIT_OK, EXIT_REFUSED, Np6SyncError

Status = Literal["succeeded", "no_changes", "planned", "refused", "failed"]


@dataclass(frozen=True)
class Requests:
    put: int = 0
    delete: int = 0
    post: int = 0
    retries: int = 0
    get: int = 0  # look-ups of contact ids (unicity mode), segment descriptions


@dataclass(frozen=True)
class JobReport:
    name: str
    segment_id: int | None = None
    status: Status = "failed"
    action: Literal["append", "update", "reload", "none"] = "none"
    rows_read: int = 0
    rows_rejected: int = 0
    rows_filtered: int = 0  # left out by source.where (the file's rows: rows_read)
    rows_unmapped: int = 0  # a fan-out by column: rows whose value maps to no segment
    duplicate_keys: int = 0
    keys: int = 0
    added: int = 0
    removed: int = 0
    targets_sent: int = 0
    targets_accepted: int = 0
    requests: Requests = field(default_factory=Requests)
    duration_s: float = 0.0
    error: str | None = None
    # Beyond PRODUCT.md's minimum: why the action, what a dry run would send, and more.
    reason: str = ""
    planned_requests: Requests = field(default_factory=Requests)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_file: str | None = None
    refusals: list[str] = field(default_factory=list)
    retry_wait_s: float = 0.0
    rate_limit_wait_s: float = 0.0
    lowest_concurrency: int | None = None  # requests in flight after NP6's 429s
    phase_s: dict[str, float] = field(default_factory=dict)  # read, keys, diff, push...
    targets_removed: int = 0  # removed one by one (id mode)
    # What each way of removing targets would cost this run (docs/removals.md, the cost model).
    removal_costs: dict[str, dict[str, int]] = field(default_factory=dict)
    pending_removals: int = 0  # deferred removals still in the segment
    oldest_pending_removal: str | None = None
    notices: list[str] = field(default_factory=list)  # what NP6 said before and after sending
    # Unicity mode: look-ups of contact ids made, keys they found no contact for (dropped
    # from the state), keys with several contacts (each removed), and why the job fell
    # back to a reload when the account lacks these calls.
    lookups: int = 0
    lookups_not_found: int = 0
    lookups_several: int = 0
    # Leaving keys whose contact a kept key still names (case twins): not removed.
    lookups_kept_by_twin: int = 0

    lookup_fallback: str | None = None
    # The way the source was read (sync.job.route): sealed, printed, folded, whole or
    # shared, and why, in words.
    route: str = ""
    route_reason: str = ""
    phase: str = ""  # the last phase the job reached: lock, read, plan, check, send, done
    exit_code: int = EXIT_OK
    # Where a failed job stopped (settings, key, job, lock, read, plan, preflight, send,
    # fallback, verify; done when it did not fail), and the failure's class in a word
    # (``kind`` of sync/errors.py: config, key_missing, key_refused, unreachable...).
    error_kind: str | None = None
    # The error that failed the job, for the Python API to raise (never rendered).
    failure: Np6SyncError | None = field(default=None, repr=False, compare=False)

    def fail(self, error: Np6SyncError, phase: str = "") -> JobReport:
        """This report as failed by ``error`` (its message, exit code and kind)."""
        return replace(
            self,
            status="refused" if error.exit_code == EXIT_REFUSED else "failed",
            error=str(error),
            exit_code=error.exit_code,
            error_kind=error.kind,
            phase=phase or self.phase,
            failure=error,
        )

    def phase_reached(self) -> str:
        if self.phase:
            return self.phase
        if self.error is not None:
            return "unknown"
        return "plan" if self.status == "refused" else "done"  # a safeguard judges the plan

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "failure"}
        data["phase"] = self.phase_reached()
        data["duration_s"] = round(self.duration_s, 3)
        data["retry_wait_s"] = round(self.retry_wait_s, 3)
        data["rate_limit_wait_s"] = round(self.rate_limit_wait_s, 3)
        return data


@dataclass
class RunReport:
    jobs: list[JobReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The highest exit code of the jobs: one failed job fails the run."""
        return max((job.exit_code for job in self.jobs), default=EXIT_OK)

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": [job.to_dict() for job in self.jobs], "exit_code": self.exit_code}


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return copy.deepcopy(value)
