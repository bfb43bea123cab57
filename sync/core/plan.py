"""Pure planning: what the segment holds + the source's keys -> what to do, and the safeguards."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from sync.core.fold import Folded, fold_array
from sync.core.hashing import first_distinct, isin
from sync.core.keys import KEY_TYPE, KeySet, concat
from sync.core.twins import case_twins

# append: PUT the new keys; update: PUT the new keys and remove the old ones one by one;
# reload: clear the segment and PUT every key; none: nothing to send.
Action = Literal["append", "update", "reload", "none"]
Strategy = Literal["reload", "per_target", "defer"]
PENDING_SCHEMA = pa.schema([("key", KEY_TYPE), ("since", pa.string())])
# The contact ids a run learned for a unicity value (a look-up may find several).
IDS_SCHEMA = pa.schema([("key", KEY_TYPE), ("ids", pa.list_(pa.string()))])


class PlanRules(Protocol):
    """The job's ``sync`` rules as planning reads them (``sync.config.SyncConfig``
    satisfies it): core imports nothing of the config."""

    @property
    def mode(self) -> str: ...

    @property
    def removals(self) -> str: ...

    @property
    def chunk_size(self) -> int: ...

    @property
    def reload_cost_factor(self) -> float: ...

    @property
    def defer_removals_ratio(self) -> float: ...

    @property
    def defer_removals_days(self) -> int: ...

    @property
    def min_rows(self) -> int: ...

    @property
    def max_rejected_ratio(self) -> float: ...

    @property
    def max_removed_ratio(self) -> float: ...


def no_pending() -> pa.Table:
    return PENDING_SCHEMA.empty_table()


def no_ids() -> pa.Table:
    return IDS_SCHEMA.empty_table()


@dataclass(frozen=True)
class Holding:
    """What the state says the segment holds.

    ``certain`` is False when an earlier run was stopped while clearing the segment:
    NP6 may or may not have emptied it, so only a reload can make it right.
    ``pending`` lists targets still in the segment whose removal is deferred, with the
    date each was first seen missing from the source.
    """

    keys: pa.Array
    certain: bool = True
    known: bool = True  # False when the state is ignored (--full-refresh over a bad state)
    pending: pa.Table = field(default_factory=no_pending)
    ids: pa.Table = field(default_factory=no_ids)  # unicity mode: contact ids learned

    @classmethod
    def empty(cls) -> Holding:
        return cls(pa.array([], KEY_TYPE))


@dataclass(frozen=True)
class Cost:
    """What a way of removing targets costs now, in requests, and how many of those
    requests go by while the segment misses targets it should hold."""

    requests: int
    incomplete_requests: int


@dataclass(frozen=True)
class Plan:
    action: Action
    send: pa.Array  # the keys to PUT, in order
    remove: pa.Array  # the targets to remove one by one (action "update")
    added: int  # in the source, not in the segment
    removed: int  # in the segment, not in the source
    previous: int  # how many targets the segment held before
    source_keys: int
    reason: str  # why this action, in words
    costs: dict[str, Cost] = field(default_factory=dict)
    pending: pa.Table = field(default_factory=no_pending)  # deferred after this run
    pending_changed: bool = False  # the state must be saved even if nothing is sent
    lookups: int = 0  # unicity mode: keys of ``remove`` whose contact id must be looked up
    known_ids: pa.Table | None = None  # unicity mode: the ids of ``remove`` runs learned
    # Unicity mode: leaving keys with the kept keys equal to them but for case (an account
    # that folds case resolves both to one contact, which must stay).
    twins: pa.Table | None = None
    # Every source key is to be sent, and ``send`` is still empty: a source folded against
    # the state in batches holds only its new keys, and a plan that is only shown never
    # needs the others. ``gathered`` fills ``send`` before anything is sent.
    send_every: bool = False

    @property
    def clears(self) -> bool:
        return self.action == "reload"

    def put_requests(self, chunk_size: int) -> int:
        sends = self.source_keys if self.send_every else len(self.send)
        return math.ceil(sends / chunk_size)

    def gathered(self, folded: Folded | None) -> Plan:
        """This plan with every key it sends in ``send``."""
        if not self.send_every:
            return self
        if folded is None:
            raise ValueError("a plan that sends every folded key needs the fold")
        return replace(self, send=folded.every(), send_every=False)


def make_plan(
    holding: Holding,
    source: pa.Array | Folded,
    rules: PlanRules,
    *,
    by_id: bool = False,
    lookups: bool = False,
    full_refresh: bool = False,
    today: date | None = None,
) -> Plan:
    """``source``: the source's distinct keys, or the source already folded against
    ``holding``'s keys (then ``holding.keys`` is not read, and a plan that sends every
    key leaves them to ``Plan.gathered``)."""
    folded = source if isinstance(source, Folded) else fold_array(source, holding.keys)
    added_keys, gone, count = folded.added, folded.gone, folded.count
    empty = pa.array([], KEY_TYPE)
    # Unicity mode: each removal needs the contact's id, a look-up unless a run learned it.
    lookups = lookups and not by_id  # unicity mode, with sync.lookups
    to_look_up = _unknown_ids(gone, holding.ids) if lookups else 0
    costs = _costs(count, len(added_keys), len(gone) + to_look_up, rules, by_id or lookups)
    base = Plan("none", empty, empty, len(added_keys), len(gone), folded.held, count, "", costs)
    # Every source key: in hand, or gathered from the fold when the plan is carried out.
    every = {"send": empty, "send_every": True} if source is folded else {"send": source}

    def plan(action: Action, send: pa.Array | None, reason: str, **changes: Any) -> Plan:
        sends = every if send is None else {"send": send}
        return replace(base, action=action, reason=reason, **sends, **changes)

    forced = _every_key(holding, rules, full_refresh, changes=bool(len(added_keys) or len(gone)))
    if forced is not None:
        return plan(forced[0], None, forced[1])
    adds: Action = "append" if len(added_keys) else "none"
    if len(gone) == 0 or rules.mode == "append":
        reason = _additions_reason(len(added_keys), count)
        return plan(adds, added_keys, reason, pending_changed=len(holding.pending) > 0)

    factor = rules.reload_cost_factor

    def one_by_one(why: str, wanted: str) -> Plan:
        reason = why + _one_by_one_reason(len(gone), to_look_up, costs, wanted, factor)
        changed = len(holding.pending) > 0
        known, twins = _looked_up(holding, gone, source, folded) if lookups else (None, None)
        looked = to_look_up + (len(pc.unique(twins["twin"])) if twins is not None else 0)
        return plan("update", added_keys, reason, remove=gone, pending_changed=changed,
                    lookups=looked, known_ids=known, twins=twins)  # fmt: skip

    strategy = choose_strategy(rules.removals, costs, factor)
    if strategy == "per_target":
        return one_by_one("", rules.removals)
    if strategy == "defer":
        pending = _pending(holding.pending, gone, today or date.today())
        due = _deferral_due(pending, folded.held, rules, today or date.today())
        if due and choose_strategy("auto", costs, factor) == "per_target":
            return one_by_one(f"{due}: ", "auto")  # due removals go the way auto would
        if due:
            return plan("reload", None, due, pending_changed=True)
        reason = f"{len(gone)} removal(s) deferred (sync.removals is defer)"
        return plan(adds, added_keys, reason, pending=pending, pending_changed=True)
    reason = f"{len(gone)} target(s) must leave the segment"
    return plan("reload", None, reason + _reload_reason(costs, rules.removals, factor))


def _additions_reason(added: int, count: int) -> str:
    if not count:  # no keys at all: "holds every key" would read as a success
        return "the source has no keys, and the state holds none: nothing to send"
    return "only additions" if added else "the segment already holds every key"


def _looked_up(
    holding: Holding, gone: pa.Array, source: pa.Array | Folded, folded: Folded
) -> tuple[pa.Table, pa.Table]:
    """Unicity mode: the ids runs learned for the leaving keys, and the kept keys equal
    to a leaving one but for case (their contact must stay: sync.core.twins)."""
    known = holding.ids.filter(pc.is_in(holding.ids["key"], value_set=gone))
    kept = [source] if not isinstance(source, Folded) else [
        folded.pick(folded.in_source), folded.added]  # fmt: skip
    return known, case_twins(gone, kept)


def _every_key(
    holding: Holding, rules: PlanRules, full_refresh: bool, *, changes: bool
) -> tuple[Action, str] | None:
    """The action and reason of a plan that must send every key, if it must."""
    if full_refresh:
        return "reload", "--full-refresh asks for a clear and reload"
    if not holding.certain:
        if rules.mode == "append":
            return "append", "an earlier run stopped while clearing: send every key"
        return "reload", "an earlier run stopped while clearing the segment"
    if rules.mode == "reload" and changes:
        return "reload", "sync.mode is reload"
    return None


def applied(
    held: pa.Array | Iterator[pa.Array], plan: Plan, certain: bool = True
) -> pa.Array | Iterator[pa.Array]:
    """What the segment holds once every step of ``plan`` was acknowledged: from the keys
    held before, in memory or a part at a time (then the result comes a part at a time,
    and ``certain`` must be true: a folded state always is)."""
    if plan.clears:
        return plan.send
    if not isinstance(held, pa.Array | pa.ChunkedArray):
        return _applied_parts(held, plan)
    keys = held
    if len(plan.remove):
        keys = pc.filter(keys, pc.invert(isin(keys, plan.remove)))
    if len(plan.send):
        keys = concat(keys, plan.send)
        if not certain:  # every key was sent again, whatever the state held
            keys = first_distinct(keys)
    return keys


def _applied_parts(parts: Iterator[pa.Array], plan: Plan) -> Iterator[pa.Array]:
    for part in parts:
        yield pc.filter(part, pc.invert(isin(part, plan.remove))) if len(plan.remove) else part
    yield plan.send


def _one_by_one_reason(
    gone: int, to_look_up: int, costs: dict[str, Cost], wanted: str, factor: float
) -> str:
    looked = f", {to_look_up} look-up(s) of contact ids," if to_look_up else ""
    reload = costs["reload"]
    why = (
        "sync.removals is per_target"
        if wanted == "per_target"
        else f"within sync.reload_cost_factor ({factor:g}) times a reload's, which would "
        f"leave the segment incomplete for {reload.incomplete_requests} requests"
    )
    return (
        f"{gone} target(s) leave one by one ({costs['per_target'].requests} "
        f"requests{looked} against {reload.requests} for a reload; {why})"
    )


def _reload_reason(costs: dict[str, Cost], wanted: str, factor: float) -> str:
    """Why a reload when removals could also go one by one; nothing to add when they
    cannot (no target ids, no look-ups)."""
    reload, per_target = costs["reload"], costs.get("per_target")
    if per_target is None:
        return ""
    if wanted == "reload":
        return " (sync.removals is reload)"
    return (
        f": a reload ({reload.requests} requests, the segment incomplete for "
        f"{reload.incomplete_requests} of them), as one by one would cost "
        f"{per_target.requests}, more than sync.reload_cost_factor ({factor:g}) times as many"
    )


def _unknown_ids(gone: pa.Array, ids: pa.Table) -> int:
    """How many of the leaving keys have no contact id learned by an earlier run."""
    if not len(gone) or not len(ids):
        return len(gone)
    return len(gone) - int(pc.sum(pc.is_in(gone, value_set=ids["key"])).as_py() or 0)


def _costs(
    source: int, added: int, removals: int, rules: PlanRules, per_target: bool
) -> dict[str, Cost]:
    """``removals``: the requests that remove the leaving targets one by one, look-ups
    of their contact ids included."""
    chunk = rules.chunk_size
    reload_puts = math.ceil(source / chunk)
    costs = {
        "reload": Cost(1 + reload_puts, reload_puts),
        "defer": Cost(math.ceil(added / chunk), 0),
    }
    if per_target:
        costs["per_target"] = Cost(removals + math.ceil(added / chunk), 0)
    return costs


def choose_strategy(wanted: str, costs: dict[str, Cost], factor: float) -> Strategy:
    """``auto`` removes one by one, which never leaves the segment incomplete, unless that
    costs more than ``factor`` (sync.reload_cost_factor) times the requests of a reload,
    during which a campaign sent would miss contacts; a reload is the only way without
    ids (or look-ups)."""
    if wanted == "defer":
        return "defer"
    per_target = costs.get("per_target")
    if per_target is None or wanted == "reload":
        return "reload"
    if wanted == "per_target" or per_target.requests <= factor * costs["reload"].requests:
        return "per_target"
    return "reload"


def _pending(before: pa.Table, gone: pa.Array, today: date) -> pa.Table:
    """The targets now missing from the source, each with the date first seen missing.

    A date later than today (a clock that was wrong once) counts as today: otherwise that
    removal would never come due.
    """
    known = pc.index_in(gone, value_set=before["key"])
    since = pc.take(before["since"], known)
    since = pc.min_element_wise(since, pa.scalar(today.isoformat()))  # new ones: today
    return pa.Table.from_arrays([gone, since.cast(pa.string())], schema=PENDING_SCHEMA)


def _deferral_due(pending: pa.Table, previous: int, rules: PlanRules, today: date) -> str:
    """Why deferred removals must be applied now; empty while they may wait."""
    ratio = len(pending) / previous if previous else 1.0
    if ratio > rules.defer_removals_ratio:
        return (
            f"{len(pending)} deferred removal(s) reach {ratio:.1%} of the segment, past "
            f"sync.defer_removals_ratio ({rules.defer_removals_ratio:.1%})"
        )
    oldest = pc.min(pending["since"]).as_py() if len(pending) else None
    if oldest is not None:
        age = (today - date.fromisoformat(oldest)).days
        if age >= rules.defer_removals_days:
            return (
                f"the oldest deferred removal waits since {oldest} ({age} days), "
                f"sync.defer_removals_days is {rules.defer_removals_days}"
            )
    return ""


def check_safeguards(plan: Plan, keyset: KeySet, rules: PlanRules) -> list[str]:
    """Why this plan must not run unattended; empty when it may."""
    problems = []
    if keyset.rows_read == 0 and keyset.rows_filtered:
        problems.append(f"source.where keeps none of the source's {keyset.rows_filtered} rows")
    elif keyset.rows_read == 0:
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
    removing = plan.clears or plan.action == "update"
    if removing and plan.previous:
        removed_ratio = plan.removed / plan.previous
        if removed_ratio > rules.max_removed_ratio:
            verb = "reload" if plan.clears else "update"
            problems.append(
                f"the {verb} would remove {plan.removed} of the segment's {plan.previous} "
                f"targets ({removed_ratio:.1%}), more than sync.max_removed_ratio "
                f"({rules.max_removed_ratio:.1%})"
            )
    return problems
