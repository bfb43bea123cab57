"""The run report as a value, and its table and JSON renderings. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sync.errors import EXIT_OK

Status = Literal["succeeded", "no_changes", "planned", "refused", "failed"]


@dataclass
class Requests:
    put: int = 0
    delete: int = 0
    post: int = 0
    retries: int = 0


@dataclass
class JobReport:
    name: str
    segment_id: int | None = None
    status: Status = "failed"
    action: Literal["append", "update", "reload", "none"] = "none"
    rows_read: int = 0
    rows_rejected: int = 0
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
    # What each way of removing targets would cost this run (see the README's cost model).
    removal_costs: dict[str, dict[str, int]] = field(default_factory=dict)
    pending_removals: int = 0  # deferred removals still in the segment
    oldest_pending_removal: str | None = None
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
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


_COLUMNS = (
    ("job", lambda j: j.name),
    ("segment", lambda j: str(j.segment_id or "")),
    ("status", lambda j: j.status),
    ("action", lambda j: j.action),
    ("rows", lambda j: f"{j.rows_read:,}"),
    ("rejected", lambda j: f"{j.rows_rejected:,}"),
    ("dupes", lambda j: f"{j.duplicate_keys:,}"),
    ("keys", lambda j: f"{j.keys:,}"),
    ("added", lambda j: f"{j.added:,}"),
    ("removed", lambda j: f"{j.removed:,}"),
    ("sent", lambda j: f"{j.targets_sent:,}"),
    ("accepted", lambda j: f"{j.targets_accepted:,}"),
    ("put/del/post", lambda j: _requests(j)),
    ("retries", lambda j: str(j.requests.retries)),
    ("time", lambda j: f"{j.duration_s:.1f}s"),
)


def _requests(job: JobReport) -> str:
    r = job.planned_requests if job.status == "planned" else job.requests
    return f"{r.put}/{r.delete}/{r.post}"


def _costs(job: JobReport) -> str:
    return "; ".join(
        f"{name} {cost['requests']:,} requests ({cost['incomplete_requests']:,} while the "
        "segment is incomplete)"
        for name, cost in job.removal_costs.items()
    )


def render_table(report: RunReport) -> str:
    """A plain table for people, then one line per note (plan reason, refusals, errors)."""
    header = [name for name, _ in _COLUMNS]
    rows = [[cell(job) for _, cell in _COLUMNS] for job in report.jobs]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {i for i, (name, _) in enumerate(_COLUMNS) if name not in ("job", "status", "action")}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    for job in report.jobs:
        out.extend(f"{job.name}: {note}" for note in _notes(job))
    return "\n".join(out)


def _notes(job: JobReport) -> list[str]:
    notes = []
    if job.status == "planned":
        r = job.planned_requests
        notes.append(
            f"plan: {job.action} ({job.reason}); would send {r.put} PUT, {r.delete} DELETE, "
            f"{r.post} POST; nothing was sent"
        )
        if job.removed:
            notes.append("removal costs: " + _costs(job))
    elif job.reason and job.status != "no_changes":
        notes.append(f"{job.action}: {job.reason}")
    notes.extend(f"refused: {refusal}" for refusal in job.refusals)
    if job.pending_removals:
        notes.append(
            f"{job.pending_removals:,} deferred removal(s) wait in the segment, the oldest "
            f"since {job.oldest_pending_removal}"
        )
    if job.rows_rejected:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in job.rejects_by_reason.items())
        where = f" (rows in {job.rejects_file})" if job.rejects_file else ""
        notes.append(f"rejected rows: {reasons}{where}")
    if job.targets_accepted < job.targets_sent:
        notes.append(
            f"NP6 added {job.targets_accepted:,} of the {job.targets_sent:,} targets sent "
            "(the others were already in the segment or unknown to NP6)"
        )
    if job.error:
        notes.append(f"error: {job.error}")
    return notes
