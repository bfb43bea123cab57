"""Files that hold keys or personal data: owner-only, in private folders, never written
through a link (docs/settings.md, "Files that hold personal data")."""

from __future__ import annotations

import json
import os
import stat
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import SEGMENT, emails, make_job, write_csv
from sync.config import load_job
from sync.core.keys import KEY_TYPE
from sync.core.plan import PENDING_SCHEMA
from sync.emulator import Emulator
from sync.state.local import StateStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_rejects_and_history_are_owner_only_in_a_private_folder(
    tmp_path: Path, cli: Any, emulator: Emulator
) -> None:
    write_csv(tmp_path / "list.csv", [*emails(0, 20), [""]])
    job = make_job(tmp_path, sync={"max_rejected_ratio": 0.5})

    assert cli("run", job).code == 0

    folder = tmp_path / "state"
    assert mode(folder) == 0o700
    written = sorted(p.name for p in folder.iterdir())
    assert written == [
        "list.parquet",
        "list.parquet.history.jsonl",
        "list.parquet.lock",
        "list.parquet.seal.json",
        "list.rejects.csv",
    ]
    assert all(mode(folder / name) == 0o600 for name in written)


def test_files_an_older_version_left_readable_are_tightened(
    tmp_path: Path, cli: Any, emulator: Emulator
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    job = make_job(tmp_path)
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    for name in ("list.parquet.lock", "list.parquet.history.jsonl"):
        (folder / name).write_text("")
        os.chmod(folder / name, 0o644)

    assert cli("run", job).code == 0

    assert {p.name: mode(p) for p in folder.iterdir()} == {
        "list.parquet": 0o600,
        "list.parquet.lock": 0o600,
        "list.parquet.history.jsonl": 0o600,
        "list.parquet.seal.json": 0o600,
    }


@pytest.mark.parametrize("name", ["list.parquet.lock", "list.parquet.journal"])
def test_a_link_where_the_lock_or_journal_goes_is_refused_and_its_target_untouched(
    tmp_path: Path, cli: Any, emulator: Emulator, name: str
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    job = make_job(tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / name).symlink_to(precious)

    result = cli("run", job, "--report-json", tmp_path / "report.json")

    assert result.code == 2, result.out + result.err
    assert "is a symbolic link" in result.out + result.err
    assert precious.read_text() == "keep me\n"
    assert emulator.members(SEGMENT) == set()  # nothing was sent
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["jobs"][0]["status"] == "failed"


def test_a_rejects_link_is_replaced_not_written_through(
    tmp_path: Path, cli: Any, emulator: Emulator
) -> None:
    write_csv(tmp_path / "list.csv", [*emails(0, 20), [""]])
    job = make_job(tmp_path, sync={"max_rejected_ratio": 0.5})
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (tmp_path / "state").mkdir()
    rejects = tmp_path / "state" / "list.rejects.csv"
    rejects.symlink_to(precious)

    assert cli("run", job).code == 0

    assert precious.read_text() == "keep me\n"
    assert not rejects.is_symlink() and mode(rejects) == 0o600
    assert "empty email" in rejects.read_text()


def test_a_deferred_removal_dated_in_the_future_comes_due_as_if_dated_today(
    tmp_path: Path, cli: Any, emulator: Emulator
) -> None:
    """A clock that was wrong once must not keep a removal waiting for ever."""
    write_csv(tmp_path / "list.csv", emails(1, 10))
    rules = {"removals": "defer", "defer_removals_days": 0, "defer_removals_ratio": 0.5}
    job = make_job(tmp_path, sync=rules)
    keys = [f"user{n}@example.com" for n in range(10)]
    loaded = load_job(job)
    store = StateStore(loaded.state_path, SEGMENT, loaded.targets.definition())
    future = pa.Table.from_pylist([{"key": keys[0], "since": "2999-01-01"}], PENDING_SCHEMA)
    store.save(pa.array(keys, KEY_TYPE), future)
    emulator.set_members(SEGMENT, keys)  # what the state says the segment holds

    result = cli("run", job, "--report-json", tmp_path / "report.json")

    assert result.code == 0, result.out + result.err
    report = json.loads((tmp_path / "report.json").read_text())["jobs"][0]
    assert report["action"] == "update", report  # due removals go the cheapest way
    assert f"waits since {date.today().isoformat()} (0 days)" in report["reason"]
    assert report["pending_removals"] == 0
    assert emulator.members(SEGMENT) == set(keys[1:])
