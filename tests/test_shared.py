from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import SEGMENT, emails, make_job, write_csv
from sync.config import Job
from sync.emulator import Emulator
from sync.job.conflicts import conflicts


def job(name: str, segment: int, mode: str = "auto", state: str | None = None) -> Job:
    data: dict[str, Any] = {
        "name": name,
        "segment_id": segment,
        "source": {"path": f"{name}.csv"},
        "targets": {"columns": ["email"]},
        "sync": {"mode": mode},
    }
    if state is not None:
        data["state"] = {"path": state}
    return Job.model_validate({**data, "base_dir": Path("/jobs")})


def named(*jobs: Job) -> list[tuple[Path, Job]]:
    return [(Path(f"{j.name}.yaml"), j) for j in jobs]


@pytest.mark.parametrize(
    ("jobs", "refused"),
    [
        pytest.param([job("a", 1), job("b", 2)], set(), id="apart"),
        pytest.param([job("a", 1), job("b", 1)], {0, 1}, id="one-segment"),
        pytest.param([job("a", 1, "append"), job("b", 1, "append")], set(), id="both-append"),
        pytest.param([job("a", 1, "append"), job("b", 1)], {0, 1}, id="one-removes"),
        pytest.param(
            [job("a", 1, "append", "s.parquet"), job("b", 1, "append", "s.parquet")],
            {0, 1},
            id="append-one-state",
        ),
        pytest.param(
            [job("a", 1, state="s.parquet"), job("b", 2, state="s.parquet")],
            {0, 1},
            id="one-state-two-segments",
        ),
        pytest.param(
            [job("a", 1), job("b", 2), job("c", 1)], {0, 2}, id="the-third-job-still-runs"
        ),
    ],
)
def test_conflicts(jobs: list[Job], refused: set[int]) -> None:
    assert set(conflicts(named(*jobs))) == refused


def test_the_message_names_the_other_job_file() -> None:
    found = conflicts(named(job("a", 7), job("b", 7)))
    assert "segment 7 is also synced by b.yaml" in found[0]
    assert "segment 7 is also synced by a.yaml" in found[1]


def test_run_refuses_jobs_on_one_segment_and_runs_the_others(
    tmp_path: Path, cli: Any, emulator: Emulator
) -> None:
    write_csv(tmp_path / "a.csv", emails(0, 5))
    write_csv(tmp_path / "b.csv", emails(5, 10))
    write_csv(tmp_path / "c.csv", emails(10, 15))
    first = make_job(tmp_path, name="a", source={"path": "a.csv"})
    second = make_job(tmp_path, name="b", source={"path": "b.csv"})
    other = make_job(tmp_path, name="c", segment_id=99, source={"path": "c.csv"})

    result = cli("run", first, other, second, "--report-json", tmp_path / "report.json")

    assert result.code == 2
    jobs = json.loads((tmp_path / "report.json").read_text())["jobs"]
    assert [(j["name"], j["exit_code"]) for j in jobs] == [("a", 2), ("c", 0), ("b", 2)]
    assert f"segment {SEGMENT} is also synced by {second}" in jobs[0]["error"]
    assert emulator.members(SEGMENT) == set()
    assert len(emulator.members(99)) == 5

    warned = cli("validate", first, second)
    assert warned.code == 0
    appending = make_job(tmp_path, name="b", source={"path": "b.csv"}, sync={"mode": "append"})
    make_job(tmp_path, name="a", source={"path": "a.csv"}, sync={"mode": "append"})
    assert cli("run", first, appending).code == 0
    assert len(emulator.members(SEGMENT)) == 10
