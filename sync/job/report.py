"""A job's report, built once from what its phases reached (sync.job.context.Reached):
the figures each phase found, the requests its client made, and the job's status and
exit code, decided here and only here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from sync.config import Job
from sync.core.keys import KeySet
from sync.errors import EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, KeyRefusedError, Np6SyncError
from sync.job.context import Given, Reached
from sync.report.model import JobReport, Requests

if TYPE_CHECKING:
    from sync.np6.client import NP6Client


def report_of(
    given: Given, at: Reached, *, error: Np6SyncError | None = None, duration_s: float = 0.0
) -> JobReport:
    """The job's report: what ``at`` holds, and how the job ended (``error``, if any)."""
    job = given.job
    figures: dict[str, Any] = {
        "route": at.route.name,
        "route_reason": at.route.reason,
        **_keys(at),
        **_plan(at, job),
        **_sent(at),
        "rejects_file": at.rejects_file,
        "refusals": list(at.refusals or (at.reload.refusals if at.reload else ())),
        "phase_s": dict(given.timer.phases),
        "duration_s": duration_s,
    }
    if at.planned is not None:
        figures["route"], figures["route_reason"] = at.planned.route, at.planned.route_reason
    elif at.read is not None and at.read.printed:  # the print spared the state's keys
        figures["route"], figures["route_reason"] = "printed", at.read.printed
    if given.np6.client is not None:
        figures.update(_requests(given.np6.client))
    return JobReport(job.name, job.segment_id, **figures, **_ending(given, at, error, figures))


def _keys(at: Reached) -> dict[str, Any]:
    """The rows, and once told apart (folded, or planned), the distinct keys."""
    if at.planned is not None:
        return _counted(at.planned.keyset, distinct=True)
    if at.read is not None:
        return _counted(at.read.keyset, distinct=at.read.folded is not None)
    return {}


def _counted(keyset: KeySet, *, distinct: bool) -> dict[str, Any]:
    rows = {
        "rows_read": keyset.rows_read + keyset.rows_filtered,
        "rows_filtered": keyset.rows_filtered,
        "rows_rejected": keyset.rows_rejected,
        "rejects_by_reason": dict(keyset.rejects_by_reason),
    }
    if distinct:  # ``keyset`` is distinct or folded
        rows.update(duplicate_keys=keyset.duplicate_keys, keys=keyset.distinct_keys)
    return rows


def _plan(at: Reached, job: Job) -> dict[str, Any]:
    """What the plan carried out changes, and what it costs."""
    plan = at.carried_out()
    if plan is None:
        return {}
    changes = plan.action != "none"
    figures: dict[str, Any] = {
        "action": plan.action,
        "added": plan.added,
        "removed": plan.removed,
        "reason": plan.reason,
        "planned_requests": Requests(
            put=plan.put_requests(job.sync.chunk_size),
            delete=int(plan.clears) + len(plan.remove),
            post=int(changes and job.normalization is not None),
            get=plan.lookups,
        ),
        "removal_costs": {
            name: {"requests": cost.requests, "incomplete_requests": cost.incomplete_requests}
            for name, cost in plan.costs.items()
        },
        "pending_removals": len(plan.pending),
    }
    if len(plan.pending):
        figures["oldest_pending_removal"] = pc.min(plan.pending["since"]).as_py()
    return figures


def _sent(at: Reached) -> dict[str, Any]:
    """What every push of the job sent, and what NP6 said around the last."""
    figures: dict[str, Any] = {
        "targets_sent": sum(sent.pushed.targets_sent for sent in at.sent),
        "targets_accepted": sum(sent.pushed.targets_accepted for sent in at.sent),
        "targets_removed": sum(sent.pushed.targets_removed for sent in at.sent),
        "notices": list(at.notices),
        "lookup_fallback": at.reload.why if at.reload is not None else None,
    }
    found = [sent.pushed.lookups for sent in at.sent if sent.pushed.lookups is not None]
    figures["lookups"] = sum(stats.lookups for stats in found)
    figures["lookups_not_found"] = sum(stats.not_found for stats in found)
    figures["lookups_several"] = sum(stats.several for stats in found)
    figures["lookups_kept_by_twin"] = sum(stats.kept_by_twin for stats in found)
    return figures


def _requests(client: NP6Client) -> dict[str, Any]:
    stats = client.stats
    calls = {method: stats.calls.get(method, 0) for method in ("put", "delete", "post", "get")}
    return {
        "requests": Requests(**calls, retries=stats.retries),
        "retry_wait_s": stats.retry_wait_s,
        "rate_limit_wait_s": stats.rate_limit_wait_s,
        "lowest_concurrency": client.gate.lowest,
    }


def _ending(
    given: Given, at: Reached, error: Np6SyncError | None, figures: dict[str, Any]
) -> dict[str, Any]:
    """The job's status and exit code, and the phase it reached."""
    if error is not None:
        code = error.exit_code
        # The segment changed: the state holds what NP6 acknowledged. (A refused key
        # knows better: its client says whether any change had left before.)
        if at.changing and code == EXIT_USAGE and not isinstance(error, KeyRefusedError):
            code = EXIT_FAILED
        return {
            "status": "refused" if code == EXIT_REFUSED else "failed",
            "exit_code": code,
            "error": str(error),
            "failure": error,
            "error_kind": error.kind,
            "phase": at.phase,
        }
    if figures["refusals"]:  # the plan was judged
        return {"status": "refused", "exit_code": EXIT_REFUSED, "phase": at.phase}
    if given.options.dry_run:
        return {"status": "planned", "phase": "done"}
    return {"status": "succeeded" if at.sent else "no_changes", "phase": "done"}
