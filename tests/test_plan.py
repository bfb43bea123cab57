from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import SyncConfig
from sync.core.keys import KEY_TYPE, KeySet
from sync.core.plan import IDS_SCHEMA, PENDING_SCHEMA, Cost, Holding, check_safeguards, make_plan


def arr(values: list[str]) -> pa.Array:
    return pa.array(values, KEY_TYPE)


def holding(values: list[str], certain: bool = True) -> Holding:
    return Holding(arr(values), certain=certain)


@pytest.mark.parametrize(
    ("mode", "before", "source", "action", "send"),
    [
        pytest.param("auto", [], ["a", "b"], "append", ["a", "b"], id="auto-first-load"),
        pytest.param("auto", ["a"], ["a", "b"], "append", ["b"], id="auto-additions"),
        pytest.param("auto", ["a", "b"], ["b", "a"], "none", [], id="auto-same"),
        pytest.param("auto", ["a", "b"], ["a", "c"], "reload", ["a", "c"], id="auto-removal"),
        pytest.param(
            "append", ["a", "b"], ["a", "c"], "append", ["c"], id="append-ignores-removal"
        ),
        pytest.param("append", ["a", "b"], ["a"], "none", [], id="append-only-removal"),
        pytest.param("reload", ["a"], ["a", "b"], "reload", ["a", "b"], id="reload-addition"),
        pytest.param("reload", ["a"], ["a"], "none", [], id="reload-same"),
    ],
)
def test_actions(mode, before, source, action, send) -> None:
    plan = make_plan(holding(before), arr(source), SyncConfig(mode=mode))
    assert plan.action == action
    assert plan.send.to_pylist() == send


def test_counts() -> None:
    plan = make_plan(holding(["a", "b", "c"]), arr(["a", "d", "e"]), SyncConfig())
    assert (plan.added, plan.removed, plan.previous, plan.source_keys) == (2, 2, 3, 3)
    assert plan.put_requests(2) == 2
    assert plan.clears


def test_full_refresh_reloads_even_without_changes() -> None:
    plan = make_plan(holding(["a"]), arr(["a"]), SyncConfig(), full_refresh=True)
    assert plan.action == "reload"
    assert plan.send.to_pylist() == ["a"]


@pytest.mark.parametrize(("mode", "action"), [("auto", "reload"), ("append", "append")])
def test_an_interrupted_clear_forces_a_full_send(mode: str, action: str) -> None:
    plan = make_plan(holding(["a", "b"], certain=False), arr(["a", "b"]), SyncConfig(mode=mode))  # type: ignore[arg-type]
    assert plan.action == action
    assert plan.send.to_pylist() == ["a", "b"]


def keyset(rows: int, valid: int) -> KeySet:
    return KeySet(arr([str(i) for i in range(valid)]), rows, valid, pa.table({"row": []}))


@pytest.mark.parametrize(
    ("rows", "valid", "before", "source", "rules", "expected"),
    [
        pytest.param(
            0,
            0,
            ["a"],
            [],
            {"max_removed_ratio": 0.5},
            [
                "the source has no rows",
                "the reload would remove 1 of the segment's 1 targets (100.0%), more than "
                "sync.max_removed_ratio (50.0%)",
            ],
            id="empty",
        ),
        pytest.param(
            5,
            5,
            [],
            list("abcde"),
            {"min_rows": 10},
            ["the source has 5 valid row(s), fewer than sync.min_rows (10)"],
            id="min",
        ),
        pytest.param(
            10,
            5,
            [],
            list("abcde"),
            {"max_rejected_ratio": 0.2},
            ["5 of 10 rows were rejected (50.0%), more than sync.max_rejected_ratio (20.0%)"],
            id="rejected",
        ),
        pytest.param(
            8,
            8,
            list("abcdefghij"),
            list("abcdefgh"),
            {"max_removed_ratio": 0.1},
            [
                "the reload would remove 2 of the segment's 10 targets (20.0%), more than "
                "sync.max_removed_ratio (10.0%)"
            ],
            id="removed-ratio",
        ),
        pytest.param(
            9,
            9,
            list("abcdefghij"),
            list("abcdefghi"),
            {"max_removed_ratio": 0.1},
            [],
            id="removed-within-ratio",
        ),
    ],
)
def test_safeguards(rows, valid, before, source, rules, expected) -> None:
    plan = make_plan(holding(before), arr(source), SyncConfig())
    assert check_safeguards(plan, keyset(rows, valid), SyncConfig(**rules)) == expected


key_lists = st.lists(st.text(min_size=1, max_size=3), max_size=30, unique=True)


@settings(max_examples=200, deadline=None)
@given(before=key_lists, source=key_lists, mode=st.sampled_from(["auto", "append", "reload"]))
def test_planning_again_from_the_result_does_nothing(before, source, mode) -> None:
    plan = make_plan(holding(before), arr(source), SyncConfig(mode=mode))
    base = [] if plan.clears else before
    after = list(dict.fromkeys(base + plan.send.to_pylist()))
    assert set(after) >= set(source)
    if mode != "append":
        assert set(after) == set(source)
    again = make_plan(holding(after), arr(source), SyncConfig(mode=mode))
    assert again.action == "none"
    assert again.send.to_pylist() == []


IDS = [f"{n:08d}" for n in range(5000)]


def test_removal_costs_are_computed_for_each_strategy() -> None:
    plan = make_plan(holding(IDS[:100]), arr(IDS[10:160]), SyncConfig(), by_id=True)
    assert plan.costs == {
        "reload": Cost(1 + 3, 3),
        "defer": Cost(2, 0),
        "per_target": Cost(10 + 2, 0),
    }
    unicity = make_plan(holding(IDS[:100]), arr(IDS[10:160]), SyncConfig())
    assert "per_target" not in unicity.costs
    by_value = make_plan(holding(IDS[:100]), arr(IDS[10:160]), SyncConfig(), lookups=True)
    assert by_value.costs["per_target"] == Cost(2 * 10 + 2, 0)  # a look-up and a removal


def test_an_id_already_known_saves_its_look_up() -> None:
    known = pa.table(
        {"key": arr(IDS[:4]), "ids": pa.array([["00000001"]] * 4, pa.list_(pa.string()))},
        schema=IDS_SCHEMA,
    )
    held = Holding(arr(IDS[:100]), ids=known)
    plan = make_plan(held, arr(IDS[10:100]), SyncConfig(removals="per_target"), lookups=True)
    assert (plan.lookups, plan.costs["per_target"].requests) == (6, 16)
    assert plan.known_ids is not None and len(plan.known_ids) == 4
    assert "6 look-up(s) of contact ids" in plan.reason


def test_auto_removes_by_look_up_up_to_the_reload_cost_factor() -> None:
    # 100 keys, 2 leave: a reload is 1 + 2 requests, per target 2 * 2: within 5 reloads.
    two = make_plan(holding(IDS[:100]), arr(IDS[2:100]), SyncConfig(), lookups=True)
    assert two.action == "update" and "sync.reload_cost_factor (5)" in two.reason
    # A factor of 1 takes the cheaper way: a reload.
    cheaper = SyncConfig(reload_cost_factor=1)
    two = make_plan(holding(IDS[:100]), arr(IDS[2:100]), cheaper, lookups=True)
    assert two.action == "reload" and "more than sync.reload_cost_factor (1)" in two.reason
    # 1 leaves: 2 requests against 3.
    one = make_plan(holding(IDS[:100]), arr(IDS[1:100]), cheaper, lookups=True)
    assert one.action == "update"


def test_due_deferred_removals_go_one_by_one_when_that_is_cheaper() -> None:
    rules = SyncConfig(removals="defer", defer_removals_days=7)
    pending = pa.Table.from_pylist([{"key": IDS[100], "since": "2026-02-01"}], PENDING_SCHEMA)
    held = Holding(arr(IDS[:101]), pending=pending)
    plan = make_plan(held, arr(IDS[:100]), rules, lookups=True, today=date(2026, 3, 1))
    assert (plan.action, plan.remove.to_pylist(), plan.lookups) == ("update", [IDS[100]], 1)
    assert "waits since 2026-02-01" in plan.reason and len(plan.pending) == 0


def test_auto_removes_few_targets_one_by_one_in_id_mode() -> None:
    plan = make_plan(holding(IDS), arr(IDS[10:]), SyncConfig(), by_id=True)
    assert plan.action == "update"
    assert plan.remove.to_pylist() == IDS[:10]
    assert plan.send.to_pylist() == []


def test_auto_reloads_when_removing_one_by_one_costs_more() -> None:
    plan = make_plan(holding(IDS[:100]), arr(IDS[90:150]), SyncConfig(), by_id=True)
    assert plan.costs["per_target"].requests > plan.costs["reload"].requests
    assert plan.action == "reload"


def test_unicity_mode_can_only_reload() -> None:
    rules = SyncConfig(removals="per_target")
    assert make_plan(holding(IDS), arr(IDS[10:]), rules).action == "reload"


def test_deferred_removals_wait_then_apply_in_one_reload() -> None:
    rules = SyncConfig(removals="defer", defer_removals_ratio=0.01, defer_removals_days=7)
    day = date(2026, 3, 1)
    first = make_plan(holding(IDS[:1000]), arr(IDS[5:1000]), rules, today=day)
    assert first.action == "none" and first.pending_changed
    assert first.pending.to_pylist() == [{"key": k, "since": "2026-03-01"} for k in IDS[:5]]

    later = Holding(arr(IDS[:1000]), pending=first.pending)
    second = make_plan(later, arr(IDS[8:1001]), rules, today=date(2026, 3, 3))
    assert second.action == "append" and second.send.to_pylist() == [IDS[1000]]
    since = dict(zip(*[second.pending[c].to_pylist() for c in ("key", "since")], strict=True))
    assert since[IDS[0]] == "2026-03-01" and since[IDS[7]] == "2026-03-03"

    by_ratio = make_plan(later, arr(IDS[20:1000]), rules, today=date(2026, 3, 3))
    assert by_ratio.action == "reload" and "defer_removals_ratio" in by_ratio.reason
    by_age = make_plan(later, arr(IDS[5:1000]), rules, today=date(2026, 3, 8))
    assert by_age.action == "reload" and "7 days" in by_age.reason


def test_a_pending_removal_that_comes_back_is_no_longer_pending() -> None:
    rules = SyncConfig(removals="defer")
    pending = pa.Table.from_pylist([{"key": IDS[0], "since": "2026-03-01"}], PENDING_SCHEMA)
    plan = make_plan(Holding(arr(IDS[:10]), pending=pending), arr(IDS[:10]), rules)
    assert plan.action == "none" and plan.pending_changed and len(plan.pending) == 0
