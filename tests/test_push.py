from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SEGMENT, np6_client
from sync.config import SyncConfig
from sync.core.keys import KEY_TYPE
from sync.core.plan import Holding, make_plan
from sync.emulator import Emulator
from sync.send.push import _chunks, push
from sync.state.local import StateStore


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=4), max_size=300), st.integers(1, 50))
def test_chunking_loses_and_repeats_nothing(keys: list[str], size: int) -> None:
    chunks = list(_chunks(pa.array(keys, KEY_TYPE), size))
    assert [k for chunk in chunks for k in chunk] == keys
    assert all(1 <= len(chunk) <= size for chunk in chunks)
    assert len(chunks) == -(-len(keys) // size)


def keys(start: int, stop: int) -> pa.Array:
    return pa.array([f"k{n}" for n in range(start, stop)], KEY_TYPE)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})


def test_every_acknowledged_chunk_is_journaled(emulator: Emulator, store: StateStore) -> None:
    plan = make_plan(Holding.empty(), keys(0, 333), SyncConfig())
    np6 = np6_client(emulator, attempts=5, concurrency=4)
    with store.open_journal(plan.action) as journal:
        result = push(plan, np6, journal, segment_id=SEGMENT, chunk_size=50, concurrency=4)
    np6.close()
    assert result.error is None
    assert (result.targets_sent, result.targets_accepted, result.chunks_acknowledged) == (
        333,
        333,
        7,
    )
    assert set(store.load().keys.to_pylist()) == emulator.members(SEGMENT)


def test_a_fatal_error_stops_sending_and_keeps_what_was_acknowledged(
    emulator: Emulator, store: StateStore
) -> None:
    plan = make_plan(Holding.empty(), keys(0, 1000), SyncConfig())
    np6 = np6_client(emulator, attempts=5, concurrency=4)
    calls = {"n": 0}
    original = np6.add_targets

    def add_then_fail(segment_id: int, targets, unicity: bool = True) -> int:
        calls["n"] += 1
        if calls["n"] == 5:
            return original(99999, targets)  # an unknown segment: 404, fatal
        return original(segment_id, targets)

    np6.add_targets = add_then_fail  # type: ignore[method-assign]
    with store.open_journal(plan.action) as journal:
        result = push(plan, np6, journal, segment_id=SEGMENT, chunk_size=50, concurrency=2)
    np6.close()
    assert result.error is not None and result.error.status == 404
    assert result.targets_sent < 1000
    assert set(store.load().keys.to_pylist()) == emulator.members(SEGMENT)


def test_a_stop_request_sends_no_new_chunk(emulator: Emulator, store: StateStore) -> None:
    stop = threading.Event()
    stop.set()
    plan = make_plan(Holding.empty(), keys(0, 500), SyncConfig())
    np6 = np6_client(emulator, attempts=5, concurrency=4)
    with store.open_journal(plan.action) as journal:
        result = push(
            plan, np6, journal, segment_id=SEGMENT, chunk_size=50, concurrency=2, stop=stop
        )
    np6.close()
    assert result.interrupted and result.targets_sent == 0
    assert emulator.calls == []


def test_a_reload_records_the_clear_before_and_after(emulator: Emulator, store: StateStore) -> None:
    emulator.set_members(SEGMENT, ["old1", "old2"])
    plan = make_plan(
        Holding(keys(0, 0).cast(KEY_TYPE)), keys(0, 10), SyncConfig(), full_refresh=True
    )
    np6 = np6_client(emulator, attempts=5, concurrency=4)
    with store.open_journal(plan.action) as journal:
        push(plan, np6, journal, segment_id=SEGMENT, chunk_size=50, concurrency=2)
    np6.close()
    lines = store.journal_path.read_bytes().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[:4] == ["begin", "clearing", "cleared", "added"]
    assert emulator.members(SEGMENT) == {f"k{n}" for n in range(10)}
