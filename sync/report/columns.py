"""What every rendering of a report shows: one column list and one list of notes.

The table on stdout and the Markdown summary both draw from here, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sync.report.model import JobReport, Requests


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[JobReport], str]
    right: bool = True  # numbers are right-aligned


def _count(value: int) -> str:
    return f"{value:,}"


def requests_of(job: JobReport) -> Requests:
    """A dry run shows what it would send; a run what it sent."""
    return job.planned_requests if job.status == "planned" else job.requests


def _calls(job: JobReport) -> str:
    r = requests_of(job)
    return f"{r.put}/{r.delete}/{r.post}"


COLUMNS: tuple[Column, ...] = (
    Column("job", lambda j: j.name, right=False),
    Column("segment", lambda j: str(j.segment_id or "")),
    Column("status", lambda j: j.status, right=False),
    Column("action", lambda j: j.action, right=False),
    Column("rows", lambda j: _count(j.rows_read)),
    Column("rejected", lambda j: _count(j.rows_rejected)),
    Column("dupes", lambda j: _count(j.duplicate_keys)),
    Column("keys", lambda j: _count(j.keys)),
    Column("added", lambda j: _count(j.added)),
    Column("removed", lambda j: _count(j.removed)),
    Column("sent", lambda j: _count(j.targets_sent)),
    Column("accepted", lambda j: _count(j.targets_accepted)),
    Column("put/del/post", _calls),
    Column("retries", lambda j: str(j.requests.retries)),
    Column("time", lambda j: f"{j.duration_s:.1f}s"),
)


def notes(job: JobReport) -> list[str]:
    """What a reader should know beyond the counts, problems first; one line each."""
    lines = []
    if job.error:
        lines.append(f"error: {job.error}")
    lines.extend(f"refused: {refusal}" for refusal in job.refusals)
    lines.extend(job.notices)
    if job.status == "planned":
        r = job.planned_requests
        lines.append(
            f"plan: {job.action} ({job.reason}); would send {r.put} PUT, {r.delete} DELETE, "
            f"{r.post} POST{f', {r.get} GET (contact look-ups)' if r.get else ''}; "
            "nothing was sent"
        )
        if job.removed and job.removal_costs:
            lines.append("removal costs: " + _costs(job))
    elif job.reason and job.status != "no_changes":
        lines.append(f"{job.action}: {job.reason}")
    if job.pending_removals:
        lines.append(
            f"{job.pending_removals:,} deferred removal(s) wait in the segment, the oldest "
            f"since {job.oldest_pending_removal}"
        )
    lines.extend(_lookup_notes(job))
    if job.rows_rejected:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in job.rejects_by_reason.items())
        where = f" (rows in {job.rejects_file})" if job.rejects_file else ""
        lines.append(f"rejected rows: {reasons}{where}")
    if job.targets_accepted < job.targets_sent:
        lines.append(
            f"NP6 added {job.targets_accepted:,} of the {job.targets_sent:,} targets sent "
            "(the others were already in the segment or unknown to NP6)"
        )
    return lines


def _lookup_notes(job: JobReport) -> list[str]:
    lines = []
    if job.lookup_fallback:
        lines.append(f"fell back to a reload: {job.lookup_fallback}")
    if job.lookups_not_found:
        lines.append(
            f"{job.lookups_not_found:,} leaving key(s) name no NP6 contact (the look-up found "
            "none): they cannot be in the segment and were dropped from the state"
        )
    if job.lookups_several:
        lines.append(
            f"{job.lookups_several:,} leaving key(s) name several NP6 contacts: each was "
            "removed from the segment"
        )
    if job.lookups_kept_by_twin:
        lines.append(
            f"{job.lookups_kept_by_twin:,} leaving key(s) name a contact a kept key still "
            "names (the same value but for case): it stays in the segment"
        )
    return lines


def _costs(job: JobReport) -> str:
    return "; ".join(
        f"{name} {cost['requests']:,} requests ({cost['incomplete_requests']:,} while the "
        "segment is incomplete)"
        for name, cost in job.removal_costs.items()
    )
