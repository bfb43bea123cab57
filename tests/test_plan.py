from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import SyncConfig
from sync.keys import KEY_TYPE, KeySet
from sync.plan import Holding, check_safeguards, make_plan


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
    plan = make_plan(holding(before), arr(source), mode)
    assert plan.action == action
    assert plan.send.to_pylist() == send


def test_counts() -> None:
    plan = make_plan(holding(["a", "b", "c"]), arr(["a", "d", "e"]), "auto")
    assert (plan.added, plan.removed, plan.previous, plan.source_keys) == (2, 2, 3, 3)
    assert plan.put_requests(2) == 2
    assert plan.clears


def test_full_refresh_reloads_even_without_changes() -> None:
    plan = make_plan(holding(["a"]), arr(["a"]), "auto", full_refresh=True)
    assert plan.action == "reload"
    assert plan.send.to_pylist() == ["a"]


@pytest.mark.parametrize(("mode", "action"), [("auto", "reload"), ("append", "append")])
def test_an_interrupted_clear_forces_a_full_send(mode: str, action: str) -> None:
    plan = make_plan(holding(["a", "b"], certain=False), arr(["a", "b"]), mode)  # type: ignore[arg-type]
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
    plan = make_plan(holding(before), arr(source), "auto")
    assert check_safeguards(plan, keyset(rows, valid), SyncConfig(**rules)) == expected


key_lists = st.lists(st.text(min_size=1, max_size=3), max_size=30, unique=True)


@settings(max_examples=200, deadline=None)
@given(before=key_lists, source=key_lists, mode=st.sampled_from(["auto", "append", "reload"]))
def test_planning_again_from_the_result_does_nothing(before, source, mode) -> None:
    plan = make_plan(holding(before), arr(source), mode)
    base = [] if plan.clears else before
    after = list(dict.fromkeys(base + plan.send.to_pylist()))
    assert set(after) >= set(source)
    if mode != "append":
        assert set(after) == set(source)
    again = make_plan(holding(after), arr(source), mode)
    assert again.action == "none"
    assert again.send.to_pylist() == []
