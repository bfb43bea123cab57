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
from sync.send.lookup import LookupUnavailable

if TYPE_CHECKING:
    import pyarrow as pa

    from sync.config import Job

log = logging.getLogger("np6sync.run")


@dataclass(frozen=True)
class Fallback:
    """The fallback's inputs: the job, its keys' counts (for the safeguards), and a way
    to read the file's distinct keys afresh."""

    job: Job
    keyset: KeySet
    source_keys: Callable[[], pa.Array]
    force: bool = False


@dataclass(frozen=True)
class Reload:
    """The reload that replaces a way the account cannot carry out: its plan, why, and
    what the safeguards found wrong with it (nothing when it may go)."""

    plan: Plan
    why: str
    refusals: tuple[str, ...] = ()

    def refused(self) -> RefusedError:
        return RefusedError(
            f"{self.why}; the reload instead is refused: " + "; ".join(self.refusals)
        )


def reload_instead(plan: Plan, why: LookupUnavailable, given: Fallback) -> Reload:
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
    problems = [] if given.force else check_safeguards(reload, given.keyset, given.job.sync)
    if not problems:
        log.warning("%s: the job reloads the segment instead", why, extra={"job": given.job.name})
    return Reload(reload, str(why), tuple(problems))
