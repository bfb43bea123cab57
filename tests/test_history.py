from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync import __version__
from sync.report.model import JobReport, Requests
from sync.state.history import append_history, history_path, read_history

STARTED = datetime(2024, 5, 1, 6, 0, 0, tzinfo=UTC)


def job_report(**changes: object) -> JobReport:
    fields: dict[str, object] = {
        "segment_id": 1234,
        "status": "succeeded",
        "action": "append",
        "rows_read": 1000,
        "rows_rejected": 2,
        "keys": 998,
        "added": 40,
        "removed": 0,
        "targets_sent": 40,
        "targets_accepted": 39,
        "requests": Requests(put=1, retries=1),
        "duration_s": 1.23456,
    }
    return JobReport("newsletter-fr", **{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "newsletter-fr.parquet"


def test_the_history_lives_beside_the_state(state: Path) -> None:
    assert history_path(state) == state.parent / "newsletter-fr.parquet.history.jsonl"


def test_append_writes_one_line_with_the_run(state: Path) -> None:
    append_history(
        state,
        job_report(),
        started_at=STARTED,
        command="run --full-refresh",
        finished_at=STARTED + timedelta(seconds=2),
    )

    (line,) = history_path(state).read_text().splitlines()
    assert json.loads(line) == {
        "started_at": "2024-05-01T06:00:00.000Z",
        "finished_at": "2024-05-01T06:00:02.000Z",
        "job": "newsletter-fr",
        "segment_id": 1234,
        "command": "run --full-refresh",
        "status": "succeeded",
        "action": "append",
        "rows_read": 1000,
        "keys": 998,
        "added": 40,
        "removed": 0,
        "targets_sent": 40,
        "targets_accepted": 39,
        "requests": {"put": 1, "delete": 0, "post": 0, "retries": 1},
        "duration_s": 1.235,
        "error": None,
        "exit_code": 0,
        "version": __version__,
    }


def test_times_are_written_in_utc(state: Path) -> None:
    paris = timezone(timedelta(hours=2))
    append_history(
        state, job_report(), started_at=datetime(2024, 5, 1, 8, 0, tzinfo=paris), command="run"
    )

    (entry,) = read_history(state)
    assert entry["started_at"] == "2024-05-01T06:00:00.000Z"
    finished = datetime.fromisoformat(entry["finished_at"])
    assert abs(datetime.now(UTC) - finished) < timedelta(minutes=1)


def test_each_run_appends_and_the_file_is_private(state: Path) -> None:
    append_history(state, job_report(), started_at=STARTED, command="run")
    failed = job_report(status="failed", error="PUT: 503", exit_code=1)
    append_history(state, failed, started_at=STARTED + timedelta(hours=1), command="run")

    entries = read_history(state)
    assert [e["status"] for e in entries] == ["succeeded", "failed"]
    assert entries[1]["error"] == "PUT: 503"
    assert entries[1]["exit_code"] == 1
    assert stat.S_IMODE(history_path(state).stat().st_mode) == 0o600


def test_read_history_keeps_the_last_runs(state: Path) -> None:
    for hour in range(5):
        append_history(
            state, job_report(added=hour), started_at=STARTED + timedelta(hours=hour), command="run"
        )

    assert [e["added"] for e in read_history(state, last=2)] == [3, 4]
    assert [e["added"] for e in read_history(state, last=10)] == [0, 1, 2, 3, 4]
    assert read_history(state, last=0) == []
    with pytest.raises(ValueError, match="last"):
        read_history(state, last=-1)


def test_read_history_without_a_file(state: Path) -> None:
    assert read_history(state) == []


def test_a_torn_last_line_is_skipped(state: Path) -> None:
    append_history(state, job_report(), started_at=STARTED, command="run")
    with history_path(state).open("a") as f:
        f.write('{"started_at": "2024-05-01T07:00:00.000Z", "comm')  # killed mid-write

    assert [e["started_at"] for e in read_history(state)] == ["2024-05-01T06:00:00.000Z"]


def test_the_run_after_a_torn_line_is_not_lost(state: Path) -> None:
    append_history(state, job_report(), started_at=STARTED, command="run")
    with history_path(state).open("a") as f:
        f.write('{"started_at": "2024-05-01T07:00')
    append_history(state, job_report(), started_at=STARTED + timedelta(hours=2), command="run")

    assert [e["started_at"] for e in read_history(state)] == [
        "2024-05-01T06:00:00.000Z",
        "2024-05-01T08:00:00.000Z",
    ]
