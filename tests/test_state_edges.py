"""The state and its journal at their edges: removals replayed, deferred removals kept,
each record's fields, messages that name what they refuse, times in UTC."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_history import STARTED, job_report

from sync.core.keys import KEY_TYPE
from sync.core.plan import PENDING_SCHEMA
from sync.errors import HistoryError, LockedError, StateError
from sync.state.history import history_path
from sync.state.local import StateStore

DEFINITION = {"identify_by": "id", "columns": ["id"], "separator": "", "transforms": {}}


def store(tmp_path: Path, definition: dict | None = None) -> StateStore:
    return StateStore(tmp_path / "job.parquet", 7, definition or DEFINITION)


def keys(*values: str) -> pa.Array:
    return pa.array(values, KEY_TYPE)


def pending(**since: str) -> pa.Table:
    return pa.Table.from_pylist([{"key": k, "since": d} for k, d in since.items()], PENDING_SCHEMA)


def test_removals_replay_from_the_journal_and_leave_the_pending_list(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b", "c", "d"), pending(b="2026-03-01", c="2026-03-02"))
    with s.open_journal("update") as journal:
        journal.added(["e"])
        journal.removed(["b"])
        journal.removed(["a"])
    holding = s.load()
    assert holding.keys.to_pylist() == ["c", "d", "e"]
    assert holding.pending.to_pylist() == [{"key": "c", "since": "2026-03-02"}]
    assert holding.certain is True


def test_a_journal_with_only_its_begin_record_changes_nothing(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a"), pending(a="2026-03-01"))
    s.open_journal("append").close()
    holding = s.load()
    assert holding.keys.to_pylist() == ["a"] and holding.certain is True
    assert holding.pending.to_pylist() == [{"key": "a", "since": "2026-03-01"}]


def test_a_clear_left_unanswered_is_uncertain(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.open_journal("reload") as journal:
        journal.record({"event": "clearing"})
    assert s.load().certain is False


@pytest.mark.parametrize(
    ("saved", "loaded"),
    [
        pytest.param(None, [], id="none"),
        pytest.param(pending(), [], id="empty"),
        pytest.param(pending(b="2026-03-01"), [{"key": "b", "since": "2026-03-01"}], id="one"),
    ],
)
def test_the_pending_list_survives_a_save(tmp_path: Path, saved, loaded) -> None:  # type: ignore[no-untyped-def]
    s = store(tmp_path)
    s.save(keys("a", "b"), saved)
    holding = s.load()
    assert holding.pending.schema == PENDING_SCHEMA
    assert holding.pending.to_pylist() == loaded


def test_an_unknown_journal_event_is_named_with_its_line(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.open_journal("append") as journal:
        journal.record({"event": "bogus"})
    with pytest.raises(StateError) as error:
        s.load()
    assert str(error.value).startswith(f"{s.journal_path}: line 2: unknown event 'bogus'; ")
    assert "--full-refresh" in str(error.value)


def test_the_begin_record_names_the_run(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.open_journal("update").close()
    begin = json.loads(s.journal_path.read_bytes().splitlines()[0])
    at = begin.pop("at")
    assert begin == {
        "event": "begin",
        "version": 2,
        "segment_id": 7,
        "key_definition": DEFINITION,
        "action": "update",
    }
    assert at.endswith("+00:00")
    assert abs(datetime.fromisoformat(at).timestamp() - time.time()) < 3600


def test_a_state_with_a_missing_column_is_unreadable(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a"))
    table = pq.read_table(s.path)
    pq.write_table(table.drop(["pending_since"]), s.path)
    with pytest.raises(StateError) as error:
        s.load()
    assert str(error.value).startswith(f"{s.path}: unreadable state file (")


def test_another_key_definition_is_named_in_the_refusal(tmp_path: Path) -> None:
    store(tmp_path).save(keys("a"))
    other = {**DEFINITION, "separator": "|"}
    with pytest.raises(StateError) as error:
        store(tmp_path, other).load()
    assert str(error.value).startswith(
        f"{tmp_path / 'job.parquet'}: the state was built with another key definition "
        f"({DEFINITION}), the job now has {other}; "
    )


def test_info_reports_the_metadata(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b", "c"))
    info = s.info()
    assert info is not None
    assert (info.version, info.segment_id, info.key_definition, info.keys) == (2, 7, DEFINITION, 3)
    assert info.updated_at.endswith("+00:00")


@pytest.mark.parametrize("content", [b"not json", b""], ids=["not-json", "empty"])
def test_a_lock_whose_holder_cannot_be_read_is_still_reported(
    tmp_path: Path, content: bytes
) -> None:
    s = store(tmp_path)
    s.lock_path.write_bytes(content)
    fd = os.open(s.lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockedError) as error, s.lock("job"):
            pass
    finally:
        os.close(fd)
    assert str(error.value) == (
        f"job job is running elsewhere: pid ? on host ?, started ? (lock {s.lock_path})"
    )


def test_the_lock_file_names_pid_host_start_and_job(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.lock("newsletter"):
        holder = json.loads(s.lock_path.read_bytes())
    assert set(holder) == {"pid", "host", "started_at", "job"}
    assert (holder["pid"], holder["job"]) == (os.getpid(), "newsletter")


def test_a_set_aside_state_is_stamped_in_utc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A zone far from UTC, so that a local time would show.
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        s = store(tmp_path)
        s.save(keys("a"))
        s.open_journal("append").close()
        s.set_aside()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and not s.path.exists() and not s.journal_path.exists()
    stamps = {
        re.fullmatch(r"job\.parquet(\.journal)?\.set-aside-(\d{8}T\d{6}Z)", n)[2] for n in names
    }  # type: ignore[index]
    (stamp,) = stamps
    taken = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(taken.timestamp() - time.time()) < 3600


def test_a_state_damaged_past_its_first_row_group_fails_its_scan(tmp_path) -> None:
    from sync.state.scan import row_groups

    path = tmp_path / "state.parquet"
    keys = pa.table({"key": [f"user{n}@example.com|{n:08d}" for n in range(20_000)]})
    pq.write_table(keys, path, row_group_size=2_000, compression="zstd")
    assert sum(g.num_rows for g in row_groups(path, ["key"])) == 20_000
    groups = row_groups(path, ["key"])
    assert next(groups).num_rows == 2_000
    groups.close()  # a reader that stops early lets go of the file
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = bytes(400)  # a page in the middle, zeroed
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="unreadable state file"):
        for _ in row_groups(path, ["key"]):
            pass


def test_a_blank_line_in_the_journal_hides_none_of_the_steps_after_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    with s.open_journal("append") as journal:
        journal.added(["a"])
    with s.journal_path.open("ab") as f:
        f.write(b"\n")
    with s.open_journal("append") as journal:
        journal.added(["b"])
        journal.removed(["a"])
    assert s.load().keys.to_pylist() == ["b"]


def test_the_journal_is_the_file_the_store_names(tmp_path: Path) -> None:
    # Push's messages about a journal that cannot be written name this path.
    s = store(tmp_path)
    with s.open_journal("append") as journal:
        assert journal.path == s.journal_path


def test_the_state_file_is_compressed_with_zstd(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(keys("a", "b"), pending(a="2026-03-01"))
    meta = pq.ParquetFile(s.path).metadata.row_group(0)
    assert {meta.column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}


def test_the_store_keeps_the_run_history_beside_the_state(tmp_path: Path) -> None:
    s = store(tmp_path)
    for hour in range(3):
        s.append_history(
            job_report(added=hour),
            started_at=STARTED + timedelta(hours=hour),
            command=f"run #{hour}",
            finished_at=STARTED + timedelta(hours=hour, seconds=2),
        )
    assert history_path(s.path).exists()
    entries = s.read_history()
    assert [(e["added"], e["command"], e["job"]) for e in entries] == [
        (0, "run #0", "newsletter-fr"),
        (1, "run #1", "newsletter-fr"),
        (2, "run #2", "newsletter-fr"),
    ]
    assert (entries[0]["started_at"], entries[0]["finished_at"]) == (
        "2024-05-01T06:00:00.000Z",
        "2024-05-01T06:00:02.000Z",
    )
    assert [e["added"] for e in s.read_history(last=2)] == [1, 2]


def test_a_history_that_cannot_be_written_is_a_history_error_naming_its_file(
    tmp_path: Path,
) -> None:
    s = store(tmp_path)
    history_path(s.path).mkdir()  # a folder where the file goes
    with pytest.raises(HistoryError) as error:
        s.append_history(job_report(), started_at=STARTED, command="run")
    assert str(error.value).startswith(f"{history_path(s.path)}: ")


def test_a_state_saved_in_parts_holds_every_part_in_order(tmp_path) -> None:
    from sync.state.local import StateStore

    store = StateStore(tmp_path / "state.parquet", 7, {"columns": ["email"]})
    parts = (pa.array([f"k{n}" for n in range(start, start + 3)], KEY_TYPE) for start in (0, 3, 6))
    store.save(parts)
    assert store.load().keys.to_pylist() == [f"k{n}" for n in range(9)]
    assert pq.ParquetFile(store.path).metadata.num_row_groups == 3  # written as they came


def test_every_scheme_a_state_may_use_has_a_home() -> None:
    from sync.config import STATE_SCHEMES
    from sync.state.store import _HOMES

    assert {scheme for scheme in _HOMES if scheme is not None} == set(STATE_SCHEMES)
