"""Read-back in unicity mode: NP6 lists a segment's members by contact id, and the state
keeps keys (unicity values), so only the keys whose id a run learned can be compared.

What it cannot check: whether a key whose id the state does not know is in the segment,
nor which segment id is extra when some keys' ids are unknown (only how many at least).
So it says how many keys it checked, and under ``MIN_CHECKED_SHARE`` of them it cannot
call the segment equal: a read-back that checked 0 of 200 keys proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sync.config import Job
from sync.errors import UsageError, translated
from sync.np6.client import NP6Client
from sync.state.store import store_for

MIN_CHECKED_SHARE = 0.9  # of the state's keys, whose ids must be known to say "equal"


@dataclass(frozen=True)
class IdComparison:
    segment: int  # ids the segment holds
    keys: int  # keys the state says the segment holds
    missing: int  # keys whose known ids are none of them in the segment
    unknown: int  # keys whose contact id the state does not know
    unmatched: int  # segment ids that are no known id of a key

    @property
    def extra_at_least(self) -> int:
        """Each key of unknown id may explain one unmatched id; the rest are extra."""
        return max(0, self.unmatched - self.unknown)

    @property
    def checked(self) -> int:
        """Keys whose ids the state knows: the only ones a read-back can check."""
        return self.keys - self.unknown

    @property
    def enough_checked(self) -> bool:
        return self.checked >= MIN_CHECKED_SHARE * self.keys

    @property
    def equal(self) -> bool:
        """As far as the known ids tell: nothing missing, nothing surely extra."""
        return not self.missing and not self.extra_at_least

    def checked_text(self) -> str:
        share = f" ({self.checked / self.keys:.0%})" if self.keys else ""
        return f"checked {self.checked:,} of {self.keys:,} keys{share}"

    def text(self) -> str:
        return (
            f"{self.checked_text()}: the segment holds {self.segment:,} ids; the state "
            "knows the ids of "
            f"{self.keys - self.unknown:,} of its {self.keys:,} keys: {self.missing:,} "
            f"missing, {self.unmatched:,} segment id(s) the state does not know (at least "
            f"{self.extra_at_least:,} extra), {self.unknown:,} key(s) whose contact id the "
            "state does not know"
        )


def verify_by_ids(job: Job, client: NP6Client, *, repair: bool = False) -> IdComparison:
    """Compare the segment's ids with the ids the state knows for its keys."""
    if repair:
        raise UsageError(
            f"verify --repair needs targets.identify_by: id (job {job.name}): in unicity "
            "mode a run corrects the segment (np6-sync run --full-refresh reloads it)"
        )
    store = store_for(job)
    with translated("read back the segment beside its state"), store.lock(job.name):
        holding = store.load()
    members = pa.array(client.list_targets(job.segment_id), pa.string())
    known = holding.ids.filter(pc.is_in(holding.ids["key"], value_set=holding.keys))
    flat = pc.list_flatten(known["ids"])
    unmatched = int(pc.sum(pc.invert(pc.is_in(members, value_set=flat))).as_py() or 0)
    missing = 0
    if len(known):
        parents = pc.list_parent_indices(known["ids"])
        present = pc.is_in(flat, value_set=members)
        hits = pc.take(known["key"], pc.filter(parents, present))
        missing = len(known) - len(pc.unique(hits))
    return IdComparison(len(members), len(holding.keys), missing, len(holding.keys) - len(known),
                        unmatched)  # fmt: skip
