"""A job's figures, copied into its report from the phases that make them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.compute as pc

from sync.config import Job
from sync.core.keys import KeySet
from sync.core.plan import Plan
from sync.report.model import JobReport, Requests

if TYPE_CHECKING:
    from sync.np6.client import NP6Client


def count_rows(report: JobReport, keyset: KeySet) -> None:
    """What the rows came to: known once read, before the keys are told apart."""
    report.rows_read = keyset.rows_read + keyset.rows_filtered
    report.rows_filtered = keyset.rows_filtered
    report.rows_rejected = keyset.rows_rejected
    report.rejects_by_reason = keyset.rejects_by_reason


def count_keys(report: JobReport, keyset: KeySet) -> None:
    """The rows, and the distinct keys among them (``keyset`` is distinct or folded)."""
    count_rows(report, keyset)
    report.duplicate_keys = keyset.duplicate_keys
    report.keys = keyset.distinct_keys


def count_plan(report: JobReport, plan: Plan, job: Job) -> None:
    report.action = plan.action
    report.added, report.removed, report.reason = plan.added, plan.removed, plan.reason
    changes = plan.action != "none"
    report.planned_requests = Requests(
        put=plan.put_requests(job.sync.chunk_size),
        delete=int(plan.clears) + len(plan.remove),
        post=int(changes and job.normalization is not None),
        get=plan.lookups,
    )
    report.removal_costs = {
        name: {"requests": cost.requests, "incomplete_requests": cost.incomplete_requests}
        for name, cost in plan.costs.items()
    }
    report.pending_removals = len(plan.pending)
    if len(plan.pending):
        report.oldest_pending_removal = pc.min(plan.pending["since"]).as_py()


def count_requests(report: JobReport, client: NP6Client) -> None:
    stats = client.stats
    calls = {method: stats.calls.get(method, 0) for method in ("put", "delete", "post", "get")}
    report.requests = Requests(**calls, retries=stats.retries)
    report.retry_wait_s = stats.retry_wait_s
    report.rate_limit_wait_s = stats.rate_limit_wait_s
    report.lowest_concurrency = client.gate.lowest
