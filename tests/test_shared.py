from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.config import Job
from sync.core.shared import conflicts


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
