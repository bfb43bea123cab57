"""Every threshold and limit at, just under and just over its value.

Equality falls on the side docs/ states: ``max_removed_ratio`` and
``max_rejected_ratio`` refuse *more than* their share, ``min_rows`` refuses *fewer*
rows, deferred removals apply once they *pass* ``defer_removals_ratio`` or the oldest
*has waited* ``defer_removals_days``, per-target removal *wins ties*, a chunk holds
*1..50* targets, a ``Retry-After`` is honoured *up to* ``max_retry_after``, *no wait
ends past* the retry deadline, and keys are refused when *fewer than*
``min_accepted_ratio`` match a contact.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pydantic
import pytest

from conftest import SEGMENT, emails, make_job, np6_client, settings_file, write_csv
from sync.config import RetryConfig, SyncConfig, load_job
from sync.core.keys import KEY_TYPE, KeySet
from sync.core.plan import (
    PENDING_SCHEMA,
    Cost,
    Holding,
    check_safeguards,
    choose_strategy,
    make_plan,
)
from sync.emulator import Emulator
from sync.errors import ConfigError, NotTakenError, RetriableApiError
from sync.np6.client import parse_retry_after, retry_policy
from sync.send.push import push
from sync.state.local import StateStore
from sync.verify.preflight import WATCHED_KEYS, AcceptanceWatch, Sample

IDS = [f"{n:08d}" for n in range(2000)]


def arr(values: list[str]) -> pa.Array:
    return pa.array(values, KEY_TYPE)


def clean_keyset(keys: list[str], rows_rejected: int = 0) -> KeySet:
    rows = len(keys) + rows_rejected
    return KeySet(arr(keys), rows, len(keys), pa.table({"row": []}))


# --- max_removed_ratio: "refuse a reload that drops more than this share" -------------


@pytest.mark.parametrize(
    ("ratio", "removed", "refused"),
    [
        pytest.param(0.1, 99, False, id="0.1-under"),
        pytest.param(0.1, 100, False, id="0.1-at"),
        pytest.param(0.1, 101, True, id="0.1-over"),
        pytest.param(0.25, 249, False, id="0.25-under"),
        pytest.param(0.25, 250, False, id="0.25-at"),
        pytest.param(0.25, 251, True, id="0.25-over"),
        pytest.param(0.0, 1, True, id="0-refuses-any-removal"),
        pytest.param(1.0, 1000, False, id="1-allows-emptying"),
    ],
)
@pytest.mark.parametrize(
    "by_id", [pytest.param(False, id="reload"), pytest.param(True, id="update")]
)
def test_max_removed_ratio(ratio: float, removed: int, refused: bool, by_id: bool) -> None:
    before, source = IDS[:1000], IDS[removed:1000]
    rules = SyncConfig(max_removed_ratio=ratio, min_rows=0)
    # per_target forces an update in id mode, whatever it costs.
    plan = make_plan(
        Holding(arr(before)),
        arr(source),
        rules.model_copy(update={"removals": "per_target"}),
        by_id=by_id,
    )
    assert plan.action == ("update" if by_id else "reload")
    problems = check_safeguards(plan, clean_keyset(source), rules)
    assert [p for p in problems if "max_removed_ratio" in p] == (
        [
            f"the {plan.action} would remove {removed} of the segment's 1000 targets "
            f"({removed / 1000:.1%}), more than sync.max_removed_ratio ({ratio:.1%})"
        ]
        if refused
        else []
    )


@pytest.mark.parametrize(
    ("removed", "code"),
    [
        pytest.param(9, 0, id="under"),
        pytest.param(10, 0, id="at"),
        pytest.param(11, 3, id="over"),
    ],
)
def test_max_removed_ratio_end_to_end(tmp_path: Path, emulator: Emulator, cli, removed, code):
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.1})
    config = settings_file(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 100))
    assert cli("run", job, "--config", config).code == 0
    emulator.reset_calls()

    write_csv(tmp_path / "list.csv", emails(removed, 100))
    result = cli("run", job, "--config", config)
    assert result.code == code, result.out + result.err
    expected = emails(removed, 100) if code == 0 else emails(0, 100)
    assert emulator.members(SEGMENT) == {row[0] for row in expected}
    if code:
        assert emulator.calls == []  # refused: nothing was sent
        assert "max_removed_ratio" in result.out + result.err


# --- max_rejected_ratio: "refuse a source where more than this share is rejected" ------


@pytest.mark.parametrize(
    ("ratio", "rejected", "refused"),
    [
        pytest.param(0.05, 4, False, id="0.05-under"),
        pytest.param(0.05, 5, False, id="0.05-at"),
        pytest.param(0.05, 6, True, id="0.05-over"),
        pytest.param(0.0, 0, False, id="0-at"),
        pytest.param(0.0, 1, True, id="0-over"),
    ],
)
def test_max_rejected_ratio(ratio: float, rejected: int, refused: bool) -> None:
    source = IDS[: 100 - rejected]
    rules = SyncConfig(max_rejected_ratio=ratio)
    plan = make_plan(Holding.empty(), arr(source), rules)
    problems = check_safeguards(plan, clean_keyset(source, rows_rejected=rejected), rules)
    assert problems == (
        [
            f"{rejected} of 100 rows were rejected ({rejected / 100:.1%}), more than "
            f"sync.max_rejected_ratio ({ratio:.1%})"
        ]
        if refused
        else []
    )


@pytest.mark.parametrize(
    ("rejected", "code"),
    [pytest.param(5, 0, id="at"), pytest.param(6, 3, id="over")],
)
def test_max_rejected_ratio_end_to_end(tmp_path: Path, emulator: Emulator, cli, rejected, code):
    job = make_job(tmp_path, sync={"max_rejected_ratio": 0.05})
    write_csv(tmp_path / "list.csv", emails(rejected, 100) + [[" "]] * rejected)
    result = cli("run", job, "--config", settings_file(tmp_path))
    assert result.code == code, result.out + result.err
    held = {row[0] for row in emails(rejected, 100)} if code == 0 else set()
    assert emulator.members(SEGMENT) == held


# --- min_rows: "refuse a source with fewer valid rows" --------------------------------


@pytest.mark.parametrize(
    ("min_rows", "valid", "problem"),
    [
        pytest.param(10, 9, "the source has 9 valid row(s), fewer than sync.min_rows (10)",
                     id="under"),
        pytest.param(10, 10, None, id="at"),
        pytest.param(10, 11, None, id="over"),
        pytest.param(1, 0, "the source has 0 valid row(s), fewer than sync.min_rows (1)",
                     id="1-no-valid-row"),
        pytest.param(0, 0, None, id="0-no-valid-row"),
    ],
)  # fmt: skip
def test_min_rows(min_rows: int, valid: int, problem: str | None) -> None:
    source = IDS[:valid]
    rules = SyncConfig(min_rows=min_rows, max_rejected_ratio=1.0)
    # One rejected row, so that a source without valid rows still has rows.
    keyset = clean_keyset(source, rows_rejected=1)
    plan = make_plan(Holding.empty(), arr(source), rules)
    assert check_safeguards(plan, keyset, rules) == ([problem] if problem else [])


def test_an_empty_source_is_refused_even_with_min_rows_0() -> None:
    rules = SyncConfig(min_rows=0)
    plan = make_plan(Holding.empty(), arr([]), rules)
    assert check_safeguards(plan, clean_keyset([]), rules) == ["the source has no rows"]


# --- defer_removals_ratio: "apply once pending removals pass this share" --------------

DAY = date(2026, 3, 1)
DEFER = SyncConfig(removals="defer", defer_removals_ratio=0.01, defer_removals_days=7)


@pytest.mark.parametrize(
    ("ratio", "gone", "applied"),
    [
        pytest.param(0.01, 9, False, id="0.01-under"),
        pytest.param(0.01, 10, False, id="0.01-at"),
        pytest.param(0.01, 11, True, id="0.01-over"),
        pytest.param(0.0, 1, True, id="0-applies-at-once"),
    ],
)
def test_defer_removals_ratio(ratio: float, gone: int, applied: bool) -> None:
    rules = DEFER.model_copy(update={"defer_removals_ratio": ratio})
    plan = make_plan(Holding(arr(IDS[:1000])), arr(IDS[gone:1000]), rules, today=DAY)
    assert plan.action == ("reload" if applied else "none")
    assert ("defer_removals_ratio" in plan.reason) is applied
    assert len(plan.pending) == (0 if applied else gone)


# --- defer_removals_days: "...or once the oldest has waited this many days" ------------


@pytest.mark.parametrize(
    ("days", "waited", "applied"),
    [
        pytest.param(7, 6, False, id="7-under"),
        pytest.param(7, 7, True, id="7-at"),
        pytest.param(7, 8, True, id="7-over"),
        pytest.param(0, 0, True, id="0-applies-at-once"),
    ],
)
def test_defer_removals_days(days: int, waited: int, applied: bool) -> None:
    rules = DEFER.model_copy(update={"defer_removals_days": days})
    pending = pa.Table.from_pylist([{"key": IDS[0], "since": DAY.isoformat()}], PENDING_SCHEMA)
    today = DAY + timedelta(days=waited)
    plan = make_plan(
        Holding(arr(IDS[:1000]), pending=pending), arr(IDS[1:1000]), rules, today=today
    )
    assert plan.action == ("reload" if applied else "none")
    if applied:
        assert plan.reason == (
            f"the oldest deferred removal waits since {DAY.isoformat()} ({waited} days), "
            f"sync.defer_removals_days is {days}"
        )
    else:
        assert plan.pending.to_pylist() == [{"key": IDS[0], "since": DAY.isoformat()}]


# --- the cost model: per target unless it costs more than reload_cost_factor reloads ---


@pytest.mark.parametrize(
    ("factor", "per_target", "strategy"),
    [
        pytest.param(1, 2, "per_target", id="cheaper"),
        pytest.param(1, 3, "per_target", id="tie"),
        pytest.param(1, 4, "reload", id="dearer"),
        pytest.param(5, 15, "per_target", id="factor-5-at-the-bound"),
        pytest.param(5, 16, "reload", id="factor-5-past-the-bound"),
        pytest.param(2.5, 7, "per_target", id="factor-2.5-under"),
        pytest.param(2.5, 8, "reload", id="factor-2.5-past"),
    ],
)
def test_auto_removes_one_by_one_up_to_the_reload_cost_factor(
    factor: float, per_target: int, strategy: str
) -> None:
    costs = {"reload": Cost(3, 2), "defer": Cost(0, 0), "per_target": Cost(per_target, 0)}
    assert choose_strategy("auto", costs, factor) == strategy


@pytest.mark.parametrize(
    ("factor", "gone", "action"),
    [
        pytest.param(1, 2, "update", id="cheaper"),
        pytest.param(1, 3, "update", id="tie"),
        pytest.param(1, 4, "reload", id="dearer"),
        pytest.param(5, 15, "update", id="factor-5-at-the-bound"),
        pytest.param(5, 16, "reload", id="factor-5-past-the-bound"),
    ],
)
def test_the_reload_cost_factor_in_a_plan(factor: int, gone: int, action: str) -> None:
    # 100 targets stay: a reload costs 1 clear + 2 PUTs = 3 requests; per target, one each.
    rules = SyncConfig(reload_cost_factor=factor, max_removed_ratio=1)
    plan = make_plan(Holding(arr(IDS[: 100 + gone])), arr(IDS[:100]), rules, by_id=True)
    assert plan.costs["reload"].requests == 3
    assert plan.costs["per_target"].requests == gone
    assert plan.action == action


# --- chunk size: "1..50 targets per PUT" ----------------------------------------------


@pytest.mark.parametrize(
    ("size", "accepted"),
    [
        pytest.param(0, False, id="0"),
        pytest.param(1, True, id="1"),
        pytest.param(49, True, id="49"),
        pytest.param(50, True, id="50"),
        pytest.param(51, False, id="51"),
    ],
)
def test_chunk_size_limits(tmp_path: Path, size: int, accepted: bool) -> None:
    job = make_job(tmp_path, sync={"chunk_size": size})
    if accepted:
        assert load_job(job).sync.chunk_size == size
        return
    with pytest.raises(ConfigError) as error:
        load_job(job)
    bound = "greater than or equal to 1" if size < 1 else "less than or equal to 50"
    assert error.value.problems == [f"sync.chunk_size: Input should be {bound}"]
    with pytest.raises(pydantic.ValidationError):
        SyncConfig(chunk_size=size)


@pytest.mark.parametrize(
    ("count", "puts"),
    [
        pytest.param(1, 1, id="1"),
        pytest.param(50, 1, id="50"),
        pytest.param(51, 2, id="51"),
        pytest.param(100, 2, id="100"),
        pytest.param(101, 3, id="101"),
    ],
)
def test_a_push_sends_at_most_50_targets_per_put(
    tmp_path: Path, emulator: Emulator, count: int, puts: int
) -> None:
    keys = [f"k{n}" for n in range(count)]
    rules = SyncConfig()
    plan = make_plan(Holding.empty(), arr(keys), rules)
    assert plan.put_requests(rules.chunk_size) == puts
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    np6 = np6_client(emulator)
    with store.open_journal(plan.action) as journal:
        result = push(
            plan, np6, journal, segment_id=SEGMENT, chunk_size=rules.chunk_size, concurrency=2
        )
    np6.close()
    sent = [c.targets for c in emulator.calls if c.method == "PUT"]
    assert len(sent) == puts == result.chunks_acknowledged
    assert sorted(len(chunk) for chunk in sent) == sorted(
        [50] * (count // 50) + ([count % 50] if count % 50 else [])
    )
    assert emulator.members(SEGMENT) == set(keys)
    assert sorted(store.load().keys.to_pylist()) == sorted(keys)


# --- the retry deadline: "no wait ends past retry.deadline seconds into the run" -------


@pytest.mark.parametrize(
    ("wait", "sleeps"),
    [
        pytest.param(5.999, [5.999], id="ends-just-before"),
        pytest.param(6.0, [6.0], id="ends-at"),
        pytest.param(6.001, [], id="ends-just-after"),
    ],
)
def test_the_retry_deadline(wait: float, sleeps: list[float]) -> None:
    clock = [4.0]  # the run is 4 s old; the deadline is at 10 s
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    calls = []

    def call() -> None:
        calls.append(clock[0])
        raise RetriableApiError("PUT /x", 429, retry_after=wait)

    policy = retry_policy(
        RetryConfig(max_attempts=100), deadline=10.0, sleep=sleep, clock=lambda: clock[0]
    )
    with pytest.raises(RetriableApiError):
        for attempt in policy:
            with attempt:
                call()
    assert slept == sleeps
    assert len(calls) == 1 + len(sleeps)
    assert clock[0] <= 10.0


# --- max_retry_after: "a Retry-After is honoured up to retry.max_retry_after" ----------

NOW = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("299.5", 299.5, id="seconds-under"),
        pytest.param("300", 300.0, id="seconds-at"),
        pytest.param("300.5", 300.0, id="seconds-over"),
        pytest.param("Thu, 01 Jan 2026 12:04:59 GMT", 299.0, id="date-under"),
        pytest.param("Thu, 01 Jan 2026 12:05:00 GMT", 300.0, id="date-at"),
        pytest.param("Thu, 01 Jan 2026 12:05:01 GMT", 300.0, id="date-over"),
    ],
)
def test_max_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, cap=300.0, now=NOW) == seconds


# --- min_accepted_ratio: "when fewer than min_accepted_ratio match a contact" ----------


@pytest.mark.parametrize(
    ("ratio", "matched", "under"),
    [
        pytest.param(0.5, 9, True, id="0.5-under"),
        pytest.param(0.5, 10, False, id="0.5-at"),
        pytest.param(0.5, 11, False, id="0.5-over"),
        pytest.param(0.0, 0, False, id="0-never"),
        pytest.param(1.0, 19, True, id="1-one-short"),
        pytest.param(1.0, 20, False, id="1-all"),
    ],
)
def test_min_accepted_ratio_of_the_look_up_sample(ratio: float, matched: int, under: bool):
    assert Sample(looked=20, matched=matched).under(ratio) is under


@pytest.mark.parametrize(
    ("accepted", "stops"),
    [
        pytest.param(49, True, id="under"),
        pytest.param(50, False, id="at"),
        pytest.param(51, False, id="over"),
    ],
)
def test_min_accepted_ratio_while_adding(accepted: int, stops: bool) -> None:
    watch = AcceptanceWatch(0.5, planned=100, resent=frozenset())
    verdict = watch([f"k{n}" for n in range(100)], accepted)
    assert isinstance(verdict, NotTakenError) is stops
    if stops:
        assert str(verdict).startswith(
            "NP6 added 49 of the first 100 targets sent (49%), fewer than "
            "sync.min_accepted_ratio (50%)"
        )


@pytest.mark.parametrize(
    ("chunks", "judged"),
    [
        pytest.param(WATCHED_KEYS // 50 - 1, False, id="just-under-the-first-keys"),
        pytest.param(WATCHED_KEYS // 50, True, id="at-the-first-keys"),
    ],
)
def test_the_watch_judges_once_the_first_keys_are_acknowledged(chunks: int, judged: bool):
    watch = AcceptanceWatch(0.5, planned=10 * WATCHED_KEYS, resent=frozenset())
    verdicts = [watch([f"k{c}-{n}" for n in range(50)], 0) for c in range(chunks)]
    assert isinstance(verdicts[-1], NotTakenError) is judged
    assert all(v is None for v in verdicts[:-1])


# --- max_wait: "backoff grows exponentially, with full jitter, up to retry.max_wait" -------


def test_the_backoff_never_waits_past_max_wait() -> None:
    slept: list[float] = []

    def call() -> None:
        raise RetriableApiError("PUT /x", 503)

    config = RetryConfig(max_attempts=40, initial_wait=10.0, max_wait=2.5)
    policy = retry_policy(config, deadline=1e18, sleep=slept.append)
    with pytest.raises(RetriableApiError):
        for attempt in policy:
            with attempt:
                call()
    assert len(slept) == 39 and max(slept) <= 2.5
    assert max(slept) > 1.0  # the jitter draws up to the cap: not a zero wait every time
