"""The Python API and the command line take one route (sync/job/runs.py): the same table of
jobs, run through both against two emulators, leaves the same segments and the same
reports, run after run (the seal included), and the same history."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

import sync
from conftest import API_KEY, SEGMENT, run_process, settings_file, write_csv
from sync.emulator import Emulator

SEGMENTS = [SEGMENT, 99, 100]
SETTINGS: dict[str, Any] = {
    "concurrency": 2,
    "max_requests_per_second": 10_000,
    "retry": {"initial_wait": 0.001, "max_wait": 0.01, "max_attempts": 30},
}
# What differs between two runs of the same work: clocks, and the folder each ran in.
VOLATILE = {"duration_s", "phase_s", "retry_wait_s", "rate_limit_wait_s", "rejects_file"}
VOLATILE |= {"lowest_concurrency"}

JOBS: dict[str, dict[str, Any]] = {
    "plain": {"name": "plain", "segment_id": SEGMENT},
    "where": {"name": "where", "segment_id": SEGMENT, "source": {"where": "tier = 'gold'"}},
    "fan-out": {
        "name": "fan",
        "segments": [
            {"name": "gold", "segment_id": 99, "where": "tier = 'gold'"},
            {"name": "tin", "segment_id": 100, "where": "tier = 'tin'"},
        ],
    },
}
STEPS = [
    [(f"u{n}@x.com", "gold" if n % 3 else "tin") for n in range(30)],
    [(f"u{n}@x.com", "gold" if n % 3 else "tin") for n in range(30)],  # unchanged: sealed
    [(f"u{n}@x.com", "gold" if n % 2 else "tin") for n in range(5, 40)],  # moves and leaves
]


def _job_file(folder: Path, spec: dict[str, Any]) -> Path:
    job = {
        "source": {"path": "list.csv", **spec.get("source", {})},
        "targets": {"columns": ["email"]},
        "sync": {"max_removed_ratio": 1.0, "max_rejected_ratio": 1.0},
        **{k: v for k, v in spec.items() if k != "source"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _comparable(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in job.items() if k not in VOLATILE} for job in report["jobs"]]


def _history(folder: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted((folder / "state").glob("*.history.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            lines.append({k: entry[k] for k in ("job", "status", "added", "removed")})
    return lines


@pytest.mark.parametrize("name", list(JOBS))
def test_the_api_and_the_cli_leave_the_same_segments_and_reports(
    name: str, tmp_path: Path, start_emulator: Callable[..., Emulator]
) -> None:
    by_cli, by_api = (start_emulator(API_KEY, segments=SEGMENTS) for _ in range(2))
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_job, api_job = _job_file(cli_dir, JOBS[name]), _job_file(api_dir, JOBS[name])
    config = settings_file(tmp_path, **SETTINGS)
    env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": by_cli.url}
    for step, rows in enumerate(STEPS):
        for folder in (cli_dir, api_dir):
            write_csv(folder / "list.csv", rows, header=("email", "tier"))
        out = tmp_path / f"cli-{step}.json"
        ran = run_process(["run", cli_job, "--config", config, "--report-json", out], env)
        assert ran.returncode == 0, ran.stderr
        report = sync.run(api_job, api_key=API_KEY, settings={**SETTINGS, "base_url": by_api.url})
        assert report.exit_code == 0
        assert _comparable(report.to_dict()) == _comparable(json.loads(out.read_text()))
        for segment in SEGMENTS:
            assert by_api.members(segment) == by_cli.members(segment), (step, segment)
    routes = [job.route for job in report.jobs]
    assert routes == (["shared", "shared"] if name == "fan-out" else ["whole"])
    assert _history(api_dir) == _history(cli_dir) and len(_history(api_dir)) >= len(STEPS)


def test_an_unchanged_file_is_answered_from_the_seal_through_the_api(
    tmp_path: Path, emulator: Emulator
) -> None:
    job = _job_file(tmp_path, JOBS["plain"])
    write_csv(tmp_path / "list.csv", STEPS[0], header=("email", "tier"))
    settings = {**SETTINGS, "base_url": emulator.url}
    assert sync.run(job, api_key=API_KEY, settings=settings).jobs[0].route == "whole"
    again = sync.run(job, api_key=API_KEY, settings=settings).jobs[0]
    assert (again.route, again.status) == ("sealed", "no_changes")
    # A path handed in is the job's own file too: sealed from its second run on (the
    # first, the job's shape changed: its source.path is spelled otherwise).
    for _ in range(2):
        by_path = sync.run(job, tmp_path / "list.csv", api_key=API_KEY, settings=settings)
    assert by_path.jobs[0].route == "sealed"
    frame = pa.table({"email": [row[0] for row in STEPS[0]]})
    for _ in range(2):
        framed = sync.run(job, frame, api_key=API_KEY, settings=settings)
    assert framed.jobs[0].route == "shared" and framed.jobs[0].status == "no_changes"


def test_the_api_takes_the_lock_before_it_reads(tmp_path: Path, emulator: Emulator) -> None:
    from sync.state.seal import job_lock

    job = _job_file(tmp_path, JOBS["plain"])
    write_csv(tmp_path / "list.csv", STEPS[0], header=("email", "tier"))
    settings = {**SETTINGS, "base_url": emulator.url}
    lock = tmp_path / "state" / "plain.parquet.lock"
    lock.parent.mkdir(parents=True)
    with job_lock(lock, "plain"):
        report = sync.run(job, api_key=API_KEY, settings=settings)
    assert report.exit_code == 4 and report.jobs[0].phase == "lock"
    assert emulator.calls == []


def test_the_api_writes_metrics_when_asked(tmp_path: Path, emulator: Emulator) -> None:
    job = _job_file(tmp_path, JOBS["plain"])
    write_csv(tmp_path / "list.csv", STEPS[0], header=("email", "tier"))
    metrics = tmp_path / "np6.prom"
    settings = {**SETTINGS, "base_url": emulator.url}
    sync.run(job, api_key=API_KEY, settings=settings, metrics_file=metrics)
    text = metrics.read_text()
    assert 'job="plain"' in text and "np6sync_" in text
