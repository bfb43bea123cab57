"""When the account lacks the look-up or the per-target removal: the same job as a reload.

The reload goes through the same safeguards as any reload, and the report says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from sync.core.keys import KEY_TYPE
from sync.core.plan import Plan, check_safeguards
from sync.errors import RefusedError
from sync.lookup import LookupStats, LookupUnavailable
from sync.report.model import JobReport

if TYPE_CHECKING:
    from sync.config import Job
    from sync.job.run import JobRun
    from sync.push import PushResult

log = logging.getLogger("np6sync.run")


def fell_back(
    run: JobRun, pushed: PushResult, recount: Callable[[JobReport, Plan, Job], None]
) -> bool:
    """Counts the look-ups; when the account lacks these calls, makes ``run.plan`` the
    reload that replaces the per-target plan (``recount`` puts it in the report)."""
    count_lookups(run.report, pushed.lookups)
    if not isinstance(pushed.error, LookupUnavailable):
        return False
    run.plan = reload_instead(run, pushed.error)
    recount(run.report, run.plan, run.job)
    return True


def reload_instead(run: JobRun, why: LookupUnavailable) -> Plan:
    """The reload that replaces a per-target plan the account cannot carry out."""
    import pyarrow as pa

    plan = replace(
        run.plan,
        action="reload",
        send=run.keyset.keys if run.folded is None else run.folded.every(),
        remove=pa.array([], KEY_TYPE),
        lookups=0,
        pending=run.plan.pending[:0],
        pending_changed=True,
        reason=f"{run.plan.removed} target(s) must leave the segment; {why}: reloading instead",
    )
    run.report.lookup_fallback = str(why)
    problems = [] if run.options.force else check_safeguards(plan, run.keyset, run.job.sync)
    if problems:
        run.report.refusals = problems
        raise RefusedError(f"{why}; the reload instead is refused: " + "; ".join(problems))
    log.warning("%s: the job reloads the segment instead", why, extra={"job": run.job.name})
    return plan


def count_lookups(report: JobReport, stats: LookupStats | None) -> None:
    if stats is None:
        return
    report.lookups += stats.lookups
    report.lookups_not_found += stats.not_found
    report.lookups_several += stats.several
