"""Pure planning: what the segment holds + the source's keys -> what to do, and the safeguards."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from sync.config import SyncConfig
from sync.keys import KEY_TYPE, KeySet

Action = Literal["append", "reload", "none"]


@dataclass(frozen=True)
class Holding:
    """What the state says the segment holds.

    ``certain`` is False when an earlier run was stopped while clearing the segment:
    NP6 may or may not have emptied it, so only a reload can make it right.
    """

    keys: pa.Array
    certain: bool = True
    known: bool = True  # False when the state is ignored (--full-refresh over a bad state)

    @classmethod
    def empty(cls) -> Holding:
        return cls(pa.array([], KEY_TYPE))


@dataclass(frozen=True)
class Plan:
    action: Action
    send: pa.Array  # the keys to PUT, in order
    added: int  # in the source, not in the segment
    removed: int  # in the segment, not in the source
    previous: int  # how many targets the segment held before
    source_keys: int
    reason: str  # why this action, in words

    @property
    def clears(self) -> bool:
        return self.action == "reload"

    def put_requests(self, chunk_size: int) -> int:
        return math.ceil(len(self.send) / chunk_size)


def make_plan(
    holding: Holding,
    source: pa.Array,
    mode: Literal["auto", "append", "reload"],
    full_refresh: bool = False,
) -> Plan:
    previous = holding.keys
    new = pc.invert(pc.is_in(source, value_set=previous))
    added_keys = pc.filter(source, new)
    kept = int(pc.sum(pc.is_in(previous, value_set=source)).as_py() or 0)
    removed = len(previous) - kept

    def plan(action: Action, send: pa.Array, reason: str) -> Plan:
        return Plan(action, send, len(added_keys), removed, len(previous), len(source), reason)

    if full_refresh:
        return plan("reload", source, "--full-refresh asks for a clear and reload")
    if not holding.certain:
        if mode == "append":
            return plan("append", source, "an earlier run stopped while clearing: send every key")
        return plan("reload", source, "an earlier run stopped while clearing the segment")
    if len(added_keys) == 0 and (removed == 0 or mode == "append"):
        return plan("none", added_keys, "the segment already holds every key")
    if mode == "reload":
        return plan("reload", source, "sync.mode is reload")
    if mode == "append" or removed == 0:
        return plan("append", added_keys, "only additions")
    return plan("reload", source, f"{removed} target(s) must leave the segment")


def check_safeguards(plan: Plan, keyset: KeySet, rules: SyncConfig) -> list[str]:
    """Why this plan must not run unattended; empty when it may."""
    problems = []
    if keyset.rows_read == 0:
        problems.append("the source has no rows")
    elif keyset.valid_rows < rules.min_rows:
        problems.append(
            f"the source has {keyset.valid_rows} valid row(s), fewer than sync.min_rows "
            f"({rules.min_rows})"
        )
    if keyset.rows_read:
        rejected_ratio = keyset.rows_rejected / keyset.rows_read
        if rejected_ratio > rules.max_rejected_ratio:
            problems.append(
                f"{keyset.rows_rejected} of {keyset.rows_read} rows were rejected "
                f"({rejected_ratio:.1%}), more than sync.max_rejected_ratio "
                f"({rules.max_rejected_ratio:.1%})"
            )
    if plan.clears and plan.previous:
        removed_ratio = plan.removed / plan.previous
        if removed_ratio > rules.max_removed_ratio:
            problems.append(
                f"the reload would remove {plan.removed} of the segment's {plan.previous} "
                f"targets ({removed_ratio:.1%}), more than sync.max_removed_ratio "
                f"({rules.max_removed_ratio:.1%})"
            )
    return problems
