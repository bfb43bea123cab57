"""One export fanned out into several segments, through the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

import sync.job.source
from conftest import API_KEY, make_job, settings_file, write_csv
from sync.config import Job
from sync.emulator import Emulator
from sync.errors import ConfigError, StorageError
from sync.job.fanout import SharedSource, load_job_file
from sync.read.sources import SourceTable

GOLD, SILVER, BRONZE, FRA_OPTIN, BEL, OPTIN = 201, 202, 203, 204, 205, 206
HEADER = ("email", "tier", "country", "optin")
TIERS = ["gold", "silver", "bronze", "", "platinum"]  # the last two map to no segment


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(API_KEY, segments=[GOLD, SILVER, BRONZE, FRA_OPTIN, BEL, OPTIN]) as server:
        yield server


def _rows(count: int) -> list[list[str]]:
    return [
        [f"user{n}@example.com", TIERS[n % 5], ["FRA", "BEL", "DEU"][n % 3], "YN"[n % 7 == 0]]
        for n in range(count)
    ]


def _share(rows: list[list[str]], keep) -> set[str]:
    return {row[0] for row in rows if keep(row)}


def _job(folder: Path, name: str, **body: object) -> Path:
    job = {
        "name": name,
        "source": {"path": "crm.csv"},
        "targets": {"columns": ["email"]},
        "sync": {"max_removed_ratio": 1.0},
        **body,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


BY_COLUMN = {
    "segment_by": {"column": "tier", "segments": {"gold": GOLD, "silver": SILVER, "bronze": BRONZE}}
}
BY_CONDITION = {
    "segments": [
        {"name": "fra-optin", "segment_id": FRA_OPTIN, "where": "country = 'FRA' AND optin = 'Y'"},
        {"name": "bel", "segment_id": BEL, "where": "country = 'BEL'"},
        {"name": "optin", "segment_id": OPTIN, "where": "optin = 'Y'"},  # overlaps the first
    ]
}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The columns of every read of a source file."""
    seen: list[list[str]] = []
    real = sync.job.source.read_source

    def counted(spec, columns):
        seen.append(list(columns))
        return real(spec, columns)

    monkeypatch.setattr(sync.job.source, "read_source", counted)
    return seen


def _expected(rows: list[list[str]]) -> dict[int, set[str]]:
    return {
        GOLD: _share(rows, lambda r: r[1] == "gold"),
        SILVER: _share(rows, lambda r: r[1] == "silver"),
        BRONZE: _share(rows, lambda r: r[1] == "bronze"),
        FRA_OPTIN: _share(rows, lambda r: r[2] == "FRA" and r[3] == "Y"),
        BEL: _share(rows, lambda r: r[2] == "BEL"),
        OPTIN: _share(rows, lambda r: r[3] == "Y"),
    }


def test_one_export_fans_out_read_once(cli, emulator, reads, tmp_path: Path) -> None:
    rows = _rows(50_000)
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    by_column = _job(tmp_path, "tiers", **BY_COLUMN)
    by_condition = _job(tmp_path, "markets", **BY_CONDITION)

    config = settings_file(tmp_path, concurrency=4)
    result = cli(
        "run", by_column, by_condition, "--config", config, "--report-json", tmp_path / "r.json"
    )
    assert result.code == 0, result.err
    assert len(reads) == 2  # once per job file, not once per segment
    assert reads[0] == ["email", "tier"]
    assert reads[1] == ["email", "country", "optin"]
    expected = _expected(rows)
    for segment, members in expected.items():
        assert emulator.members(segment) == members, segment
    report = json.loads((tmp_path / "r.json").read_text())
    lines = {job["name"]: job for job in report["jobs"]}
    assert list(lines) == [
        "tiers.gold",
        "tiers.silver",
        "tiers.bronze",
        "fra-optin",
        "bel",
        "optin",
    ]
    assert lines["tiers.gold"]["rows_unmapped"] == 20_000
    assert lines["tiers.gold"]["rows_filtered"] == 40_000
    assert lines["bel"]["keys"] == len(expected[BEL])
    assert (tmp_path / "state" / "tiers.gold.parquet").is_file()

    # A few rows change: only those targets are sent, only to their segments.
    rows[3][1] = "gold"  # was "" (unmapped)
    rows[4][1] = "silver"  # was "platinum" (unmapped)
    rows.append(["new@example.com", "bronze", "DEU", "N"])
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    emulator.reset_calls()
    reads.clear()
    result = cli("run", by_column, by_condition, "--config", config)
    assert result.code == 0, result.err
    assert len(reads) == 2
    sent = {(c.segment_id, t) for c in emulator.calls if c.method == "PUT" for t in c.targets or ()}
    assert sent == {
        (GOLD, "user3@example.com"),
        (SILVER, "user4@example.com"),
        (BRONZE, "new@example.com"),
    }
    assert {c.method for c in emulator.calls} <= {"GET", "PUT"}  # GET: the preflight
    for segment, members in _expected(rows).items():
        assert emulator.members(segment) == members, segment


def test_plan_and_summary_show_one_line_per_segment(cli, emulator, tmp_path: Path) -> None:
    rows = _rows(100)
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    job = _job(tmp_path, "tiers", **BY_COLUMN)
    result = cli("plan", job, "--summary-md", tmp_path / "s.md")
    assert result.code == 0, result.err
    summary = (tmp_path / "s.md").read_text()
    for name in ("tiers.gold", "tiers.silver", "tiers.bronze"):
        assert name in result.out
        assert name in summary
    assert emulator.calls == []


def test_state_and_validate_take_a_segment_by_name(cli, emulator, tmp_path: Path) -> None:
    write_csv(tmp_path / "crm.csv", _rows(100), header=HEADER)
    job = _job(tmp_path, "markets", **BY_CONDITION)
    assert cli("run", job).code == 0
    shown = cli("state", "show", job, "--segment", "bel")
    assert shown.code == 0, shown.err
    assert shown.out.startswith("bel: ") and "fra-optin" not in shown.out
    checked = cli("validate", job, "--segment", "fra-optin")
    assert checked.code == 0, checked.err
    assert "job fra-optin -> segment 204" in checked.out and "job bel" not in checked.out
    missing = cli("state", "show", job, "--segment", "nosuch")
    assert missing.code == 2
    assert "no job or segment is named 'nosuch'" in missing.err


def test_unmapped_values_refused_when_the_job_says(cli, emulator, tmp_path: Path) -> None:
    write_csv(tmp_path / "crm.csv", _rows(100), header=HEADER)
    by = {**BY_COLUMN["segment_by"], "unmapped": "refuse"}
    result = cli("run", _job(tmp_path, "tiers", segment_by=by))
    assert result.code == 3
    assert (
        "40 row(s) hold a tier value that segment_by.segments does not map"
        in result.out + result.err
    )
    assert emulator.calls == []


def test_one_segment_failing_does_not_stop_the_others(cli, emulator, tmp_path: Path) -> None:
    rows = _rows(100)
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    body = {
        "segments": [
            *BY_CONDITION["segments"][:2],
            {"name": "x", "segment_id": 999, "where": "optin = 'Y'"},
        ]
    }
    result = cli("run", _job(tmp_path, "markets", **body), "--report-json", tmp_path / "r.json")
    assert result.code == 2  # NP6 does not know segment 999
    report = json.loads((tmp_path / "r.json").read_text())
    assert [j["status"] for j in report["jobs"]] == ["succeeded", "succeeded", "failed"]
    assert emulator.members(BEL) == _expected(rows)[BEL]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"segments": [{"name": "a", "segment_id": 1, "where": "country = = 'FRA'"}]},
            "segments[0].where: does not parse",
        ),
        (
            {"segments": [{"name": "a", "segment_id": 1}, {"name": "a", "segment_id": 2}]},
            "its own name",
        ),
        ({**BY_COLUMN, **BY_CONDITION}, "either segments or segment_by"),
        ({"segment_by": {"column": "tier", "segments": {"a b": 1}}}, "cannot name a segment"),
    ],
)
def test_a_bad_fan_out_exits_2(cli, emulator, tmp_path: Path, body: dict, problem: str) -> None:
    write_csv(tmp_path / "crm.csv", _rows(10), header=HEADER)
    result = cli("run", _job(tmp_path, "bad", **body))
    assert result.code == 2
    assert problem in result.out + result.err
    assert emulator.calls == []


def test_each_segment_may_name_columns_the_others_do_not(
    cli, emulator, reads, tmp_path: Path
) -> None:
    rows = _rows(100)
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    body = {"segments": BY_CONDITION["segments"][1:]}  # bel (country), then optin (optin)
    result = cli("run", _job(tmp_path, "markets", **body), "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert reads == [["email", "country", "optin"]]  # read once, with every segment's columns
    assert emulator.members(BEL) == _expected(rows)[BEL]
    assert emulator.members(OPTIN) == _expected(rows)[OPTIN]
    report = json.loads((tmp_path / "r.json").read_text())
    for line in report["jobs"]:  # no column maps rows to segments here: none is unmapped
        assert line["rows_unmapped"] == 0
        assert line["route_reason"].endswith("never sealed: its source is shared")


def test_a_segment_without_a_condition_takes_every_row(cli, emulator, tmp_path: Path) -> None:
    rows = _rows(30)
    write_csv(tmp_path / "crm.csv", rows, header=HEADER)
    body = {"segments": [{"name": "everyone", "segment_id": GOLD}, BY_CONDITION["segments"][1]]}
    result = cli("run", _job(tmp_path, "all", **body))
    assert result.code == 0, result.out + result.err
    assert emulator.members(GOLD) == {row[0] for row in rows}
    assert emulator.members(BEL) == _expected(rows)[BEL]


def test_a_column_whose_name_holds_a_double_quote_still_maps(cli, emulator, tmp_path: Path) -> None:
    rows = [[f"user{n}@example.com", TIERS[n % 3]] for n in range(30)]
    write_csv(tmp_path / "crm.csv", rows, header=("email", 'the "tier"'))
    by = {"column": 'the "tier"', "segments": {"gold": GOLD, "silver": SILVER}}
    result = cli("run", _job(tmp_path, "tiers", segment_by=by))
    assert result.code == 0, result.out + result.err
    assert emulator.members(GOLD) == {row[0] for row in rows if row[1] == "gold"}
    assert emulator.members(SILVER) == {row[0] for row in rows if row[1] == "silver"}


def _reader(table: pa.Table | None, calls: list[list[str]]):  # type: ignore[no-untyped-def]
    """A source read that records its columns, and fails when there is no ``table``."""

    def read(job: Job, columns: list[str]) -> SourceTable:
        calls.append(list(columns))
        if table is None:
            raise StorageError("cannot read crm.csv: the disk is gone")
        return SourceTable(table, 2, "crm.csv")

    return read


def test_a_failure_to_read_is_every_segment_s_failure_and_read_once(tmp_path: Path) -> None:
    jobs, shared = load_job_file(_job(tmp_path, "markets", **BY_CONDITION))
    assert shared is not None
    calls: list[list[str]] = []
    failing = SharedSource(shared.fan, jobs, _reader(None, calls))
    errors = []
    for job in jobs:
        with pytest.raises(StorageError) as error:
            failing(job)
        errors.append(error.value)
    assert calls == [["email", "country", "optin"]]  # once, for every segment
    assert errors[0] is errors[1] is errors[2]


def test_a_data_frame_shared_by_plain_jobs_is_read_once_as_it_is(tmp_path: Path) -> None:
    jobs, shared = load_job_file(make_job(tmp_path))
    assert shared is None
    table = pa.table({"email": ["a@example.com", "b@example.com"]})
    calls: list[list[str]] = []
    frame = SharedSource(None, jobs, _reader(table, calls), frame=True)
    assert frame(jobs[0]).table is table and frame(jobs[0]).table is table
    assert calls == [["email"]] and frame.unmapped == 0


def test_a_condition_that_fails_on_the_data_names_the_file(cli, emulator, tmp_path: Path) -> None:
    write_csv(tmp_path / "crm.csv", _rows(20), header=HEADER)
    source = {"path": "crm.csv", "where": "CAST(optin AS INT) = 1"}  # optin holds Y and N
    result = cli("run", _job(tmp_path, "tiers", source=source, **BY_COLUMN))
    assert result.code == 2, result.out + result.err
    assert f"{tmp_path / 'crm.csv'}: source.where 'CAST(optin AS INT) = 1': " in result.err
    assert emulator.calls == []


def test_a_missing_value_maps_to_no_segment(tmp_path: Path) -> None:
    jobs, shared = load_job_file(_job(tmp_path, "tiers", **BY_COLUMN))
    assert shared is not None
    tiers = ["gold", None, "platinum", "silver", None]
    table = pa.table({"email": [f"u{n}@example.com" for n in range(5)], "tier": tiers})
    source = SharedSource(shared.fan, jobs, _reader(table, []))
    source(jobs[0])
    assert source.unmapped == 3  # two missing, one platinum


@pytest.mark.parametrize("length", [100, 101])
def test_a_segment_named_after_a_value_holds_at_most_100_characters(
    tmp_path: Path, length: int
) -> None:
    value = "v" * (length - len("tiers."))
    body = {"segment_by": {"column": "tier", "segments": {value: GOLD}}}
    if length <= 100:
        jobs, _ = load_job_file(_job(tmp_path, "tiers", **body))
        assert [job.name for job in jobs] == [f"tiers.{value}"]
        return
    job = _job(tmp_path, "tiers", **body)
    with pytest.raises(ConfigError) as refused:
        load_job_file(job)
    assert str(refused.value).startswith(f"{job}: 1 problem(s):\n")  # the file is named
    assert f"the value {value!r} cannot name a segment ('tiers.{value}')" in str(refused.value)
