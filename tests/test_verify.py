"""The read-back's figures and words, one by one: id mode against the source and the
state (sync/verify/listing.py), unicity mode by the ids the state knows
(sync/verify/ids.py)."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job, np6_client, write_csv
from sync.config import Job
from sync.core.keys import KEY_TYPE
from sync.core.plan import IDS_SCHEMA
from sync.emulator import Emulator
from sync.errors import StorageError, UsageError
from sync.job.fanout import load_job_file
from sync.job.source import source_keys
from sync.state.store import store_for
from sync.verify.ids import IdComparison, verify_by_ids
from sync.verify.listing import verify_job


@pytest.mark.parametrize(
    ("unmatched", "unknown", "extra"), [(0, 0, 0), (3, 1, 2), (2, 2, 0), (1, 5, 0)]
)
def test_each_key_of_unknown_id_may_explain_one_unmatched_id(
    unmatched: int, unknown: int, extra: int
) -> None:
    comparison = IdComparison(segment=9, keys=10, missing=0, unknown=unknown, unmatched=unmatched)
    assert comparison.extra_at_least == extra
    assert comparison.equal is (extra == 0)


def test_the_share_checked_must_reach_nine_in_ten() -> None:
    def compared(keys: int, unknown: int) -> IdComparison:
        return IdComparison(segment=keys, keys=keys, missing=0, unknown=unknown, unmatched=0)

    assert compared(10, 1).enough_checked and not compared(10, 2).enough_checked
    assert compared(0, 0).enough_checked  # no key: nothing to check
    assert compared(10, 1).checked == 9
    assert compared(10, 1).checked_text() == "checked 9 of 10 keys (90%)"
    assert compared(0, 0).checked_text() == "checked 0 of 0 keys"


# id mode: the segment against the source and the state, through the command line.

IDS = [f"{n:08d}" for n in range(20)]


def id_job(folder: Path, **sync: object) -> Path:
    return make_job(
        folder,
        targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"max_removed_ratio": 0.5, **sync},
    )


def filled(tmp_path: Path, cli: Any, ids: list[str], **sync: object) -> Path:
    job = id_job(tmp_path, **sync)
    write_csv(tmp_path / "list.csv", [[i] for i in ids], header=["target_id"])
    assert cli("run", job).code == 0
    return job


def listing(tmp_path: Path) -> list[list[str]]:
    with (tmp_path / "state" / "list.verify.csv").open(newline="") as f:
        return list(csv.reader(f))


def test_the_state_follows_the_segment_and_says_by_how_much_it_differed(
    tmp_path: Path, emulator: Emulator, cli: Any
) -> None:
    job = filled(tmp_path, cli, IDS[:10])
    emulator.set_members(SEGMENT, [*IDS[2:10], "ZZZZZZZ1"])
    result = cli("verify", job)
    assert result.code == 1
    state = tmp_path / "state"
    assert result.out.splitlines() == [
        "list: before: the segment holds 9 targets: 2 missing, 1 extra (listed in "
        f"{state / 'list.verify.csv'})",
        "list: the state differed from the segment on 3 targets; it now follows the segment",
        "list: DIFFERENT",
    ]
    assert listing(tmp_path) == [
        ["target", "problem"],
        [IDS[0], "missing"],
        [IDS[1], "missing"],
        ["ZZZZZZZ1", "extra"],
    ]
    held = pq.read_table(state / "list.parquet", columns=["key"])["key"].to_pylist()
    assert sorted(held) == sorted([*IDS[2:10], "ZZZZZZZ1"])
    again = cli("verify", job)  # the state is the segment now: no drift is left
    assert "the state differed" not in again.out and again.code == 1


def test_an_equal_segment_leaves_no_listing(tmp_path: Path, emulator: Emulator, cli: Any) -> None:
    job = filled(tmp_path, cli, IDS[:10])
    emulator.set_members(SEGMENT, IDS[:9])
    assert cli("verify", job).code == 1
    assert (tmp_path / "state" / "list.verify.csv").exists()
    emulator.set_members(SEGMENT, IDS[:10])
    result = cli("verify", job)
    assert result.code == 0
    assert result.out.splitlines() == [
        "list: before: the segment holds 10 targets: 0 missing, 0 extra",
        "list: the state differed from the segment on 1 targets; it now follows the segment",
        "list: equal",
    ]
    assert not (tmp_path / "state" / "list.verify.csv").exists()


@pytest.mark.parametrize(
    ("extra", "force", "refused"),
    [
        pytest.param(4, False, False, id="at-the-ratio"),
        pytest.param(5, False, True, id="over-the-ratio"),
        pytest.param(5, True, False, id="forced"),
    ],
)
def test_a_repair_removes_at_most_the_ratio_unless_forced(
    tmp_path: Path, emulator: Emulator, cli: Any, extra: int, force: bool, refused: bool
) -> None:
    job = filled(tmp_path, cli, IDS[:4])
    others = [f"Z{n:07d}" for n in range(extra)]
    emulator.set_members(SEGMENT, [*IDS[:4], *others])
    segment = 4 + extra
    result = cli("verify", job, "--repair", *(["--force"] if force else []))
    if refused:
        assert result.code == 3, result.out + result.err
        assert (
            f"the repair would remove {extra} of the segment's {segment} targets "
            f"({extra / segment:.1%}), more than sync.max_removed_ratio (50.0%); check the "
            "source, or pass --force"
        ) in result.err
        assert emulator.members(SEGMENT) != set(IDS[:4])
    else:
        assert result.code == 0, result.out + result.err
        assert "after repair: the segment holds 4 targets: 0 missing, 0 extra" in result.out
        assert emulator.members(SEGMENT) == set(IDS[:4])


# Unicity mode: the segment's contact ids against the ids the state knows for its keys.


class Listing:
    """A client whose segment lists ``members``."""

    def __init__(self, members: list[str]) -> None:
        self.members = members

    def list_targets(self, segment_id: int) -> list[str]:
        assert segment_id == SEGMENT
        return self.members


def unicity_state(tmp_path: Path, keys: list[str], ids: dict[str, list[str]]) -> Job:
    job = load_job_file(make_job(tmp_path))[0][0]
    known = pa.table(
        {"key": pa.array(list(ids), KEY_TYPE), "ids": pa.array(list(ids.values()))},
        schema=IDS_SCHEMA,
    )
    store_for(job).save(pa.array(keys, KEY_TYPE), ids=known)
    return job


def test_a_key_is_present_when_one_of_its_ids_is(tmp_path: Path) -> None:
    keys = [f"k{n}" for n in range(5)]
    job = unicity_state(tmp_path, keys, {"k0": ["A", "B"], "k1": ["C"], "k2": ["D"]})
    compared = verify_by_ids(job, Listing(["B", "D", "X", "Y", "Z"]))
    assert compared == IdComparison(segment=5, keys=5, missing=1, unknown=2, unmatched=3)
    assert compared.text() == (
        "checked 3 of 5 keys (60%): the segment holds 5 ids; the state knows the ids of 3 "
        "of its 5 keys: 1 missing, 3 segment id(s) the state does not know (at least 1 "
        "extra), 2 key(s) whose contact id the state does not know"
    )


def test_with_no_id_known_nothing_is_missing(tmp_path: Path) -> None:
    job = unicity_state(tmp_path, ["k0", "k1"], {})
    compared = verify_by_ids(job, Listing(["A"]))
    assert compared == IdComparison(segment=1, keys=2, missing=0, unknown=2, unmatched=1)


def test_a_repair_in_unicity_mode_is_refused(tmp_path: Path) -> None:
    job = unicity_state(tmp_path, ["k0"], {"k0": ["A"]})
    with pytest.raises(UsageError) as refused:
        verify_by_ids(job, Listing(["A"]), repair=True)
    assert str(refused.value) == (
        "verify --repair needs targets.identify_by: id (job list): in unicity mode a run "
        "corrects the segment (np6-sync run --full-refresh reloads it)"
    )


def test_an_empty_segment_misses_every_key_whose_id_is_known(tmp_path: Path) -> None:
    job = unicity_state(tmp_path, ["k0", "k1"], {"k0": ["A"]})
    compared = verify_by_ids(job, Listing([]))
    assert compared == IdComparison(segment=0, keys=2, missing=1, unknown=1, unmatched=0)


def test_a_state_that_cannot_be_read_back_says_what_failed(tmp_path: Path) -> None:
    job = unicity_state(tmp_path, ["k0"], {"k0": ["A"]})
    lock = job.state_path.with_name(job.state_path.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()  # a folder where the job's lock file goes
    with pytest.raises(StorageError, match=r"^cannot read back the segment beside its state: "):
        verify_by_ids(job, Listing(["A"]))


def test_run_verify_reports_a_difference_and_repairs_nothing(
    tmp_path: Path, emulator: Emulator, cli: Any
) -> None:
    job = filled(tmp_path, cli, IDS[:10])
    emulator.set_members(SEGMENT, IDS[:9])
    result = cli("run", job, "--verify", "--report-json", tmp_path / "r.json")
    assert result.code == 1
    assert emulator.members(SEGMENT) == set(IDS[:9])  # told, not repaired


def test_run_verify_of_a_job_in_unicity_mode_says_it_needs_ids(
    tmp_path: Path, emulator: Emulator, cli: Any
) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [["a@example.com"]])
    report = tmp_path / "r.json"
    assert cli("run", job, "--verify", "--report-json", report).code == 2
    error = json.loads(report.read_text())["jobs"][0]["error"]
    assert error.startswith("verify needs targets.identify_by: id: NP6 lists a segment's ")


@pytest.mark.parametrize(
    ("blocked", "what"),
    [
        pytest.param("list.parquet.lock", "read back the segment beside its state", id="lock"),
        pytest.param("list.verify.csv", "write the listing of differences", id="listing"),
    ],
)
def test_a_read_back_that_cannot_use_its_files_says_which(
    tmp_path: Path, emulator: Emulator, cli: Any, blocked: str, what: str
) -> None:
    job_file = filled(tmp_path, cli, IDS[:10])
    emulator.set_members(SEGMENT, IDS[:9])
    path = tmp_path / "state" / blocked
    path.unlink(missing_ok=True)
    path.mkdir()  # a folder where the file goes
    job = load_job_file(job_file)[0][0]
    client = np6_client(emulator)
    with pytest.raises(StorageError) as error:
        verify_job(job, client, source_keys)
    client.close()
    assert str(error.value).startswith(f"cannot {what}: ")


def test_a_repair_stopped_before_it_sends_changes_nothing(
    tmp_path: Path, emulator: Emulator, cli: Any
) -> None:
    job = load_job_file(filled(tmp_path, cli, IDS[:10]))[0][0]
    emulator.set_members(SEGMENT, IDS[:9])
    stop = threading.Event()
    stop.set()
    client = np6_client(emulator)
    result = verify_job(job, client, source_keys, repair=True, stop=stop)
    client.close()
    assert emulator.members(SEGMENT) == set(IDS[:9])
    assert result.after is not None and len(result.after.missing) == 1


def test_an_empty_segment_misses_every_key_of_the_source(
    tmp_path: Path, emulator: Emulator, cli: Any
) -> None:
    job = filled(tmp_path, cli, IDS[:3])
    emulator.set_members(SEGMENT, [])
    result = cli("verify", job)
    assert result.code == 1
    assert "the segment holds 0 targets: 3 missing, 0 extra" in result.out
