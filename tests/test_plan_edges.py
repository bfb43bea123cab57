"""What each branch of the planner decides and says (the reason reaches the report), and
the safeguards that must not fire on a plan that removes nothing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import pytest

from sync.config import SyncConfig
from sync.core.fold import fold_array
from sync.core.keys import KEY_TYPE, KeySet, concat
from sync.core.plan import (
    IDS_SCHEMA,
    PENDING_SCHEMA,
    Cost,
    Holding,
    applied,
    check_safeguards,
    choose_strategy,
)
from sync.core.plan import make_plan as plan_of

IDS = [f"{n:08d}" for n in range(200)]
DAY = date(2026, 3, 1)


def arr(values: list[str]) -> pa.Array:
    return pa.array(values, KEY_TYPE)


def pending(*keys: str, since: str = "2026-03-01") -> pa.Table:
    return pa.Table.from_pylist([{"key": k, "since": since} for k in keys], PENDING_SCHEMA)


CASES = [
    pytest.param(
        Holding(arr(IDS[:3])), IDS[:3], {}, {"full_refresh": True},
        "reload", IDS[:3], "--full-refresh asks for a clear and reload", id="full-refresh",
    ),
    pytest.param(
        Holding(arr(IDS[:3]), certain=False), IDS[:3], {"mode": "append"}, {},
        "append", IDS[:3], "an earlier run stopped while clearing: send every key",
        id="uncertain-append",
    ),
    pytest.param(
        Holding(arr(IDS[:3]), certain=False), IDS[:3], {}, {},
        "reload", IDS[:3], "an earlier run stopped while clearing the segment",
        id="uncertain-auto",
    ),
    pytest.param(
        Holding(arr(IDS[:3])), IDS[:4], {"mode": "reload"}, {},
        "reload", IDS[:4], "sync.mode is reload", id="mode-reload",
    ),
    pytest.param(
        Holding(arr(IDS[:3])), IDS[:5], {}, {},
        "append", IDS[3:5], "only additions", id="additions",
    ),
    pytest.param(
        Holding(arr(IDS[:3])), IDS[:3], {}, {},
        "none", [], "the segment already holds every key", id="nothing",
    ),
    pytest.param(
        Holding(arr(IDS[:102])), IDS[:100], {}, {"by_id": True},
        "update", [], "2 target(s) leave one by one (2 requests against 3 for a reload; within "
        "sync.reload_cost_factor (5) times a reload's, which would leave the segment "
        "incomplete for 2 requests)",
        id="update",
    ),
    pytest.param(
        Holding(arr(IDS[:102])), IDS[:100], {}, {},
        "reload", IDS[:100], "2 target(s) must leave the segment", id="reload",
    ),
    pytest.param(
        Holding(arr(IDS[:200])), IDS[:199], {"removals": "defer"}, {"today": DAY},
        "none", [], "1 removal(s) deferred (sync.removals is defer)", id="deferred",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("holding", "source", "rules", "options", "action", "send", "reason"), CASES
)
def test_each_branch_says_why(
    holding: Holding,
    source: list[str],
    rules: dict[str, Any],
    options: dict[str, Any],
    action: str,
    send: list[str],
    reason: str,
) -> None:
    plan = plan_of(holding, arr(source), SyncConfig(**rules), **options)
    assert (plan.action, plan.reason) == (action, reason)
    assert plan.send.to_pylist() == send
    # An empty plan still carries keys: renderers and the push slice and join them.
    assert plan.send.type == KEY_TYPE and plan.remove.type == KEY_TYPE
    assert plan.pending_changed is (action == "none" and "deferred" in reason)


@pytest.mark.parametrize(
    ("source", "options", "action"),
    [
        pytest.param(IDS[:100], {"by_id": True}, "update", id="update"),
        pytest.param(IDS[:101], {}, "none", id="nothing-left"),
        pytest.param(IDS[:102], {}, "append", id="additions"),
    ],
)
def test_a_pending_removal_that_is_dropped_changes_the_state(
    source: list[str], options: dict[str, Any], action: str
) -> None:
    holding = Holding(arr(IDS[:101]), pending=pending(IDS[100]))
    plan = plan_of(holding, arr(source), SyncConfig(), **options)
    assert plan.action == action
    assert plan.pending_changed and len(plan.pending) == 0


def test_a_due_deferral_reloads_every_key_and_clears_the_pending_list() -> None:
    rules = SyncConfig(removals="defer", defer_removals_days=7)
    holding = Holding(arr(IDS[:101]), pending=pending(IDS[100], since="2026-02-01"))
    plan = plan_of(holding, arr(IDS[:100]), rules, today=DAY)
    assert plan.action == "reload"
    assert plan.send.to_pylist() == IDS[:100]
    assert plan.pending_changed and len(plan.pending) == 0


RELOAD_3 = {"reload": Cost(3, 2), "defer": Cost(0, 0)}


@pytest.mark.parametrize(
    ("wanted", "per_target", "strategy"),
    [
        pytest.param("reload", 1, "reload", id="reload-even-when-dearer"),
        pytest.param("per_target", 9, "per_target", id="per-target-even-when-dearer"),
        pytest.param("defer", 1, "defer", id="defer"),
        pytest.param("auto", None, "reload", id="auto-without-ids"),
        pytest.param("per_target", None, "reload", id="per-target-without-ids"),
    ],
)
def test_a_chosen_way_is_kept_whatever_it_costs(
    wanted: str, per_target: int | None, strategy: str
) -> None:
    costs = dict(RELOAD_3)
    if per_target is not None:
        costs["per_target"] = Cost(per_target, 0)
    assert choose_strategy(wanted, costs, 5) == strategy


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param({"mode": "append"}, id="append"),
        pytest.param({"removals": "defer", "defer_removals_ratio": 1.0}, id="deferred"),
    ],
)
def test_the_removal_ratio_does_not_refuse_a_plan_that_removes_nothing(
    rules: dict[str, Any],
) -> None:
    config = SyncConfig(max_removed_ratio=0.0, **rules)
    plan = plan_of(Holding(arr(IDS[:10])), arr(IDS[5:12]), config, today=DAY)
    assert plan.action == "append" and plan.removed == 5
    keyset = KeySet(arr(IDS[5:12]), 7, 7, pa.table({"row": []}))
    assert check_safeguards(plan, keyset, config) == []


@pytest.mark.parametrize(
    ("rows", "filtered", "problems"),
    [
        pytest.param(0, 5, ["source.where keeps none of the source's 5 rows"], id="none-kept"),
        pytest.param(0, 0, ["the source has no rows"], id="no-rows"),
        pytest.param(1, 5, [], id="one-kept"),
    ],
)
def test_a_filter_that_keeps_no_row_is_refused(rows: int, filtered: int, problems: list[str]):
    keys = IDS[:rows]
    keyset = KeySet(arr(keys), rows, rows, pa.table({"row": []}), rows_filtered=filtered)
    plan = plan_of(Holding.empty(), arr(keys), SyncConfig(min_rows=0))
    assert check_safeguards(plan, keyset, SyncConfig(min_rows=0)) == problems


def test_ids_known_only_for_keys_that_stay_save_no_look_up() -> None:
    known = pa.table(
        {"key": arr(IDS[10:12]), "ids": pa.array([["00000001"]] * 2, pa.list_(pa.string()))},
        schema=IDS_SCHEMA,
    )
    held = Holding(arr(IDS[:100]), ids=known)
    plan = plan_of(held, arr(IDS[3:100]), SyncConfig(removals="per_target"), lookups=True)
    assert (plan.lookups, plan.costs["per_target"].requests) == (3, 6)
    assert plan.known_ids is not None and len(plan.known_ids) == 0


def test_a_folded_reload_counts_its_puts_then_gathers_every_key_before_sending() -> None:
    held, source = arr(IDS[:60]), arr(IDS[10:130])
    folded = fold_array(source, held)
    plan = plan_of(Holding(held), folded, SyncConfig(), full_refresh=True)
    assert plan.action == "reload" and plan.send_every and len(plan.send) == 0
    assert plan.put_requests(50) == 3  # 120 keys, not the 0 in ``send`` yet
    with pytest.raises(ValueError, match=r"^a plan that sends every folded key needs the fold$"):
        plan.gathered(None)
    sent = plan.gathered(folded)
    assert not sent.send_every and sent.action == "reload"
    assert sorted(sent.send.to_pylist()) == IDS[10:130]
    assert sent.put_requests(50) == 3
    update = plan_of(Holding(held), fold_array(arr(IDS[:61]), held), SyncConfig())
    assert not update.send_every and update.gathered(None) is update
    assert update.put_requests(50) == 1


def test_what_the_segment_holds_once_a_plan_is_applied() -> None:
    held = arr(IDS[:6])
    send, remove = arr(IDS[6:8]), arr(IDS[1:3])
    update = plan_of(Holding(held), fold_array(arr(IDS[:1] + IDS[3:8]), held), SyncConfig(
        max_removed_ratio=1.0, removals="per_target"), by_id=True)  # fmt: skip
    assert (update.action, update.send.to_pylist(), update.remove.to_pylist()) == (
        "update",
        send.to_pylist(),
        remove.to_pylist(),
    )
    expected = [IDS[0], *IDS[3:8]]
    assert applied(held, update).to_pylist() == expected
    # The state's keys a part at a time (a folded run): the parts come back one by one.
    parts = applied(iter([held.slice(0, 4), held.slice(4)]), update)
    assert [p.to_pylist() for p in parts] == [[IDS[0], IDS[3]], IDS[4:6], IDS[6:8]]
    # Uncertain: the keys sent again are not counted twice.
    again = plan_of(Holding(held), fold_array(arr(IDS[:8]), held), SyncConfig())
    assert applied(held, again, certain=False).to_pylist() == IDS[:8]
    twice = applied(concat(held, arr(IDS[6:7])), again)  # certain: nothing is looked for
    assert twice.to_pylist() == [*IDS[:6], IDS[6], *IDS[6:8]]
    folded = fold_array(arr(IDS[3:5]), held)
    reload = plan_of(Holding(held), folded, SyncConfig(), full_refresh=True).gathered(folded)
    assert applied(held, reload).to_pylist() == IDS[3:5]
    assert applied(iter([held]), reload).to_pylist() == IDS[3:5]  # a reload: the keys sent
    nothing = plan_of(Holding(held), fold_array(held, held), SyncConfig())
    assert applied(held, nothing).to_pylist() == IDS[:6]
