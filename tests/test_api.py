"""The Python API against the emulator: DataFrames, a dry run, errors with exit codes."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import yaml

import sync
from conftest import API_KEY, SEGMENT, write_csv
from sync.emulator import Emulator
from sync.errors import ConfigError, SourceError, UsageError


def _job(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "frame",
        "segment_id": SEGMENT,
        "targets": {"columns": ["email"]},
        "sync": {"max_rejected_ratio": 1.0, "max_removed_ratio": 1.0},
        **overrides,
    }


@pytest.fixture
def quick(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Settings that reach the emulator at once; the state goes to the test's folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NP6_API_KEY", raising=False)
    return {"base_url": emulator.url, "max_requests_per_second": 10_000}


def test_pandas_columns_follow_the_parquet_rules(emulator: Emulator, quick) -> None:
    frame = pd.DataFrame(
        {
            "email": pd.Series(["a@x.com", None, "nan", float("nan"), "e@x.com"], dtype=object),
            "tier": pd.Series(["gold", "gold", "gold", "gold", pd.NA], dtype="string"),
            "code": pd.array([1, 2, None, 40_000_000_000, 5], dtype="Int64"),
        }
    )
    handlers, term = list(logging.getLogger().handlers), signal.getsignal(signal.SIGTERM)
    report = sync.run(
        _job(source={"where": "tier = 'gold'"}), frame, api_key=API_KEY, settings=quick
    )
    assert (logging.getLogger().handlers, signal.getsignal(signal.SIGTERM)) == (handlers, term)
    assert isinstance(report, sync.RunReport) and report.exit_code == 0
    (job,) = report.jobs
    assert (job.status, job.rows_read, job.rows_filtered, job.rows_rejected) == (
        "succeeded",
        5,
        1,
        2,
    )
    assert job.rejects_by_reason == {"missing email": 2}  # None and NaN; "nan" is a value
    assert emulator.members(SEGMENT) == {"a@x.com", "nan"}

    by_code = sync.run(
        _job(targets={"columns": ["code"]}),
        frame,
        api_key=API_KEY,
        settings=quick,
        full_refresh=True,
    )
    assert by_code.jobs[0].status == "succeeded"
    assert emulator.members(SEGMENT) == {"1", "2", "40000000000", "5"}  # never 1.0


def test_a_polars_frame_fanned_out(emulator: Emulator, quick) -> None:
    frame = pl.DataFrame(
        {
            "email": ["a@x.com", "b@x.com", "c@x.com", None, "e@x.com"],
            "tier": ["gold", "silver", "gold", "gold", "bronze"],
            "score": [1.0, 2.5, None, 4.0, 5.0],
        }
    )
    job = _job(segment_by={"column": "tier", "segments": {"gold": SEGMENT, "silver": 99}})
    del job["segment_id"]
    report = sync.run(job, frame, api_key=API_KEY, settings=quick)
    assert [(j.name, j.status, j.keys, j.rows_unmapped) for j in report.jobs] == [
        ("frame.gold", "succeeded", 2, 1),
        ("frame.silver", "succeeded", 1, 1),
    ]
    assert emulator.members(SEGMENT) == {"a@x.com", "c@x.com"}
    assert emulator.members(99) == {"b@x.com"}
    emulator.set_members(SEGMENT, [])
    scores = sync.run(_job(targets={"columns": ["score"]}), frame, api_key=API_KEY, settings=quick)
    assert scores.jobs[0].rows_rejected == 1  # a polars null
    assert emulator.members(SEGMENT) == {"1", "2.5", "4", "5"}


def test_an_arrow_table_and_a_dry_run_need_no_key(emulator: Emulator, quick) -> None:
    table = pa.table({"email": ["a@x.com", "b@x.com"]})
    report = sync.plan(_job(), table, settings=quick)
    assert [(j.status, j.action, j.added) for j in report.jobs] == [("planned", "append", 2)]
    assert report.to_dict()["jobs"][0]["added"] == 2
    assert emulator.calls == []


def test_a_job_file_and_a_path(emulator: Emulator, quick, tmp_path: Path) -> None:
    write_csv(tmp_path / "other.csv", [["z@x.com"]])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_job(source={"path": "missing.csv"})))
    report = sync.run(path, tmp_path / "other.csv", api_key=API_KEY, settings=quick)
    assert report.exit_code == 0
    assert emulator.members(SEGMENT) == {"z@x.com"}


def test_a_job_that_ran_and_failed_returns_its_report(emulator: Emulator, quick) -> None:
    report = sync.run(
        _job(segment_id=777), pa.table({"email": ["a@x.com"]}), api_key=API_KEY, settings=quick
    )
    assert report.exit_code == 2  # NP6 does not know the segment: found before sending
    assert report.jobs[0].status == "failed" and "777" in (report.jobs[0].error or "")


@pytest.mark.parametrize(
    ("job", "source", "error", "message"),
    [
        (
            _job(source={"where": "tier = = 'x'"}),
            pa.table({"email": ["a"]}),
            ConfigError,
            "does not parse",
        ),
        (_job(), pa.table({"mail": ["a"]}), SourceError, "column 'email' not found"),
        (
            _job(),
            pd.DataFrame({"email": ["a", 1.5, b"x"]}),
            SourceError,
            "cannot read the DataFrame",
        ),
        (_job(), [1, 2], UsageError, "source must be a path"),
        (_job(), Path("nosuch.csv"), SourceError, "file not found"),
    ],
)
def test_problems_before_sending_raise_with_their_exit_code(
    emulator: Emulator, quick, job, source, error, message
) -> None:
    with pytest.raises(error, match=message) as caught:
        sync.run(job, source, api_key=API_KEY, settings=quick)
    assert caught.value.exit_code == 2
    assert emulator.calls == []


def test_the_key_comes_from_the_environment_when_not_given(
    emulator: Emulator, quick, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pa.table({"email": ["a@x.com"]})
    with pytest.raises(UsageError, match="NP6_API_KEY") as caught:
        sync.run(_job(), table, settings=quick)
    assert caught.value.exit_code == 2
    monkeypatch.setenv("NP6_API_KEY", API_KEY)
    assert sync.run(_job(), table, settings=quick).exit_code == 0
    assert emulator.members(SEGMENT) == {"a@x.com"}


def test_unmapped_values_refused_raise_exit_3(emulator: Emulator, quick) -> None:
    job = _job(segment_by={"column": "tier", "segments": {"gold": SEGMENT}, "unmapped": "refuse"})
    del job["segment_id"]
    frame = pd.DataFrame({"email": ["a@x.com", "b@x.com"], "tier": ["gold", "tin"]})
    with pytest.raises(sync.Np6SyncError, match=r"1 row\(s\) hold a tier value that") as caught:
        sync.run(job, frame, api_key=API_KEY, settings=quick)
    assert caught.value.exit_code == 3
    assert emulator.calls == []


def test_a_report_is_frozen_and_replaced_whole() -> None:
    """docs/python-api.md: a script changes a copy of a job's report, never the report."""
    import dataclasses

    job = sync.JobReport("list", SEGMENT, status="succeeded")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = "failed"  # type: ignore[misc]
    assert dataclasses.replace(job, status="failed").status == "failed"
    assert job.status == "succeeded"
