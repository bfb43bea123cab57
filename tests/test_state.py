from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sync.core.keys import KEY_TYPE
from sync.core.plan import Holding
from sync.errors import LockedError, StateError
from sync.state.local import StateStore

DEFINITION = {"identify_by": "unicity", "columns": ["email"], "separator": "", "transforms": {}}


def store(tmp_path: Path, segment: int = 7, definition: dict | None = None) -> StateStore:
    return StateStore(tmp_path / "state" / "job.parquet", segment, definition or DEFINITION)


def keys(*values: str) -> pa.Array:
    return pa.array(values, KEY_TYPE)


def test_no_state_is_an_empty_segment(tmp_path: Path) -> None:
    holding = store(tmp_path).load()
    assert holding.keys.to_pylist() == [] and holding.certain


def test_save_then_load(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b"))
    assert sorted(s.load().keys.to_pylist()) == ["a", "b"]
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
    info = s.info()
    assert info is not None and (info.version, info.segment_id, info.keys) == (2, 7, 2)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        pytest.param(
            {"segment": 8}, "the state is for segment 7, the job names segment 8", id="segment"
        ),
        pytest.param(
            {"definition": {**DEFINITION, "separator": "|"}}, "another key definition", id="keys"
        ),
    ],
)
def test_a_foreign_state_is_refused(tmp_path: Path, other: dict, message: str) -> None:
    store(tmp_path).save(keys("a"))
    with pytest.raises(StateError, match=message) as error:
        store(tmp_path, other.get("segment", 7), other.get("definition")).load()
    assert "--full-refresh" in str(error.value)


def test_an_unknown_version_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    meta = {"version": 99, "segment_id": 7, "key_definition": DEFINITION}
    schema = pa.schema([("key", pa.string())], metadata={b"np6sync": json.dumps(meta)})
    pq.write_table(pa.table({"key": ["a"]}, schema=schema), s.path)
    with pytest.raises(StateError, match="state format version 99"):
        s.load()


@pytest.mark.parametrize(
    "content",
    [pytest.param(b"", id="empty"), pytest.param(b"PAR1garbage", id="garbage")],
)
def test_an_unreadable_state_is_refused_not_read_as_empty(tmp_path: Path, content: bytes) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    s.path.write_bytes(content)
    with pytest.raises(StateError, match="unreadable state file"):
        s.load()


def test_a_parquet_file_without_metadata_is_not_a_state(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.path.parent.mkdir()
    pq.write_table(pa.table({"key": ["a"]}), s.path)
    with pytest.raises(StateError, match="not an np6-sync state file"):
        s.load()


def test_journal_adds_to_the_state_until_saved(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a"))
    with s.open_journal("append") as journal:
        journal.added(["b", "c"])
        journal.added(["c", "d"])
    assert stat.S_IMODE(os.stat(s.journal_path).st_mode) == 0o600
    assert sorted(s.load().keys.to_pylist()) == ["a", "b", "c", "d"]
    s.save(s.load().keys)
    assert not s.journal_path.exists()
    assert sorted(s.load().keys.to_pylist()) == ["a", "b", "c", "d"]


def test_a_cleared_segment_forgets_the_old_state(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b"))
    with s.open_journal("reload") as journal:
        journal.record({"event": "clearing"})
        journal.record({"event": "cleared"})
        journal.added(["c"])
    holding = s.load()
    assert holding.keys.to_pylist() == ["c"] and holding.certain


def test_a_clear_without_answer_leaves_the_segment_uncertain(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a"))
    with s.open_journal("reload") as journal:
        journal.record({"event": "clearing"})
    assert not s.load().certain


def test_a_torn_last_journal_line_is_ignored(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.open_journal("append") as journal:
        journal.added(["a"])
    with s.journal_path.open("ab") as f:
        f.write(b'{"event": "added", "keys": ["b"')
    assert s.load().keys.to_pylist() == ["a"]


@pytest.mark.parametrize(
    "tail", [b'{"event": "added", "keys": ["b"', b"x" * 70_000], ids=["short", "long"]
)
def test_a_run_after_a_torn_line_appends_after_the_last_whole_one(
    tmp_path: Path, tail: bytes
) -> None:
    """A full disk tore the last record: the next run's journal must not follow it."""
    s = store(tmp_path)
    with s.open_journal("append") as journal:
        journal.added(["a"])
    with s.journal_path.open("ab") as f:
        f.write(tail)
    with s.open_journal("append") as journal:
        journal.added(["c"])
    assert s.load().keys.to_pylist() == ["a", "c"]


def test_a_damaged_journal_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.journal_path.parent.mkdir()
    s.journal_path.write_bytes(b"{not json\n" + b'{"event": "added", "keys": ["a"]}\n')
    with pytest.raises(StateError, match="line 1 is damaged"):
        s.load()


def test_a_journal_of_another_segment_is_refused(tmp_path: Path) -> None:
    with store(tmp_path, segment=8).open_journal("append") as journal:
        journal.added(["a"])
    with pytest.raises(StateError, match="segment 8"):
        store(tmp_path).load()


def test_leftovers_of_an_interrupted_write_are_cleaned(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a"))
    leftover = s.path.with_name(f".{s.path.name}.tmp-123-456")
    leftover.write_bytes(b"half a file")
    assert s.load().keys.to_pylist() == ["a"]
    s.clean_leftovers()
    assert not leftover.exists()


def test_the_lock_names_its_holder(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.lock("job"), pytest.raises(LockedError) as error, store(tmp_path).lock("job"):
        pass
    message = str(error.value)
    assert f"pid {os.getpid()}" in message
    assert socket.gethostname() in message
    assert "started 20" in message
    with s.lock("job"):  # released when the holder leaves
        pass


def test_a_version_1_state_still_loads(tmp_path: Path) -> None:
    s = store(tmp_path)
    meta = {"version": 1, "segment_id": 7, "key_definition": DEFINITION, "updated_at": "x"}
    schema = pa.schema(
        [("key", KEY_TYPE), ("pending_since", pa.string())],
        metadata={b"np6sync": json.dumps(meta)},
    )
    s.path.parent.mkdir()
    table = pa.Table.from_arrays([keys("a", "b"), pa.nulls(2, pa.string())], schema=schema)
    pq.write_table(table, s.path)
    holding = s.load()
    assert sorted(holding.keys.to_pylist()) == ["a", "b"] and len(holding.ids) == 0
    s.save(holding.keys)
    assert s.info() is not None and s.info().version == 2  # type: ignore[union-attr]


def learned(holding: Holding) -> dict[str, list[str]]:
    return dict(zip(holding.ids["key"].to_pylist(), holding.ids["ids"].to_pylist(), strict=True))


def test_learned_ids_are_kept_for_the_keys_the_segment_holds(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b", "c"))
    with s.open_journal("update") as journal:
        journal.looked_up("a", ["00000001"])
        journal.looked_up("b", ["00000002", "00000003"])
        journal.removed(["a"])
        journal.looked_up("c", ["00000004"])
    holding = s.load()
    known = learned(holding)
    assert known == {"b": ["00000002", "00000003"], "c": ["00000004"]}
    s.save(holding.keys, holding.pending, holding.ids)
    again = s.load()
    assert learned(again) == known
