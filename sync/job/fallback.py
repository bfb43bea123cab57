"""The reload fallback: when the account lacks the look-up or the per-target removal, the
same job as a clear and reload, planned from its own inputs.

Its keys are the file's, read afresh: never a mask of the state as it was before the first
push (which may have changed it, additions and acknowledged removals alike). The reload
goes through the same safeguards as any reload, and the report says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sync.core.keys import KEY_TYPE, KeySet
from sync.core.plan import Plan, check_safeguards
from sync.errors import RefusedError
from sync.job.counts import count_plan
from sync.report.model import JobReport
from sync.send.lookup import LookupStats, LookupUnavailable

if TYPE_CHECKING:
    import pyarrow as pa

    from sync.config import Job

log = logging.getLogger("np6sync.run")


@dataclass(frozen=True)
class Fallback:
    """The fallback's inputs: the job, its keys' counts (for the safeguards), the report
    it writes in, and a way to read the file's distinct keys afresh."""

    job: Job
    keyset: KeySet
    report: JobReport
    source_keys: Callable[[], pa.Array]
    force: bool = False


def reload_instead(plan: Plan, why: LookupUnavailable, given: Fallback) -> Plan:
    """The reload that replaces a per-target ``plan`` the account cannot carry out."""
    import pyarrow as pa

    keys = given.source_keys()
    reload = replace(
        plan,
        action="reload",
        send=keys,
        send_every=False,
        remove=pa.array([], KEY_TYPE),
        source_keys=len(keys),
        lookups=0,
        pending=plan.pending[:0],
        pending_changed=True,
        reason=f"{plan.removed} target(s) must leave the segment; {why}: reloading instead",
    )
    given.report.lookup_fallback = str(why)
    problems = [] if given.force else check_safeguards(reload, given.keyset, given.job.sync)
    if problems:
        given.report.refusals = problems
        raise RefusedError(f"{why}; the reload instead is refused: " + "; ".join(problems))
    log.warning("%s: the job reloads the segment instead", why, extra={"job": given.job.name})
    count_plan(given.report, reload, given.job)
    return reload


def count_lookups(report: JobReport, stats: LookupStats | None) -> None:
    if stats is None:
        return
    report.lookups += stats.lookups
    report.lookups_not_found += stats.not_found
    report.lookups_several += stats.several
    report.lookups_kept_by_twin += stats.kept_by_twin
