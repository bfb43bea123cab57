"""`run --parallel N`: jobs side by side, one shared rate limit, reports in order."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import API_KEY, emails, make_job, settings_file, write_csv
from sync.cli import main

SEGMENTS = [501, 502, 503, 504, 505]


def jobs(tmp_path: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for number, (segment, size) in enumerate(zip(SEGMENTS, sizes, strict=False)):
        name = f"job{number}"
        write_csv(tmp_path / f"{name}.csv", emails(number * 1000, number * 1000 + size))
        paths.append(
            make_job(
                tmp_path,
                name=name,
                segment_id=segment,
                source={"path": f"{name}.csv"},
                sync={"chunk_size": 10},
            )
        )
    return paths


def run(tmp_path: Path, monkeypatch, emulator, *args: str | Path) -> int:
    monkeypatch.setenv("NP6_API_KEY", API_KEY)
    monkeypatch.setenv("NP6_BASE_URL", emulator.url)
    monkeypatch.chdir(tmp_path)
    return main([str(a) for a in args])


def test_parallel_jobs_share_one_rate_limit(tmp_path, start_emulator, monkeypatch) -> None:
    emulator = start_emulator(API_KEY, segments=SEGMENTS, latency_s=0.02)
    config = settings_file(tmp_path, concurrency=8, max_requests_per_second=10)
    paths = jobs(tmp_path, [60, 60, 60, 60])
    code = run(
        tmp_path, monkeypatch, emulator, "run", *paths, "--config", config, "--parallel", "4"
    )
    assert code == 0
    assert sum(c.method == "PUT" for c in emulator.calls) == 24
    starts = sorted(c.at for c in emulator.calls)  # every call counts: the preflight's too
    # NP6 counts arrivals: in any second, no more than the one limit of the account.
    for start in starts:
        assert sum(1 for s in starts if start <= s < start + 1.0) <= 10
    for number, segment in enumerate(SEGMENTS[:4]):
        held = emulator.members(segment)
        assert held == {f"user{n}@example.com" for n in range(number * 1000, number * 1000 + 60)}


def test_reports_keep_the_order_given_and_a_failure_stops_no_other(
    tmp_path, start_emulator, monkeypatch, capsys
) -> None:
    emulator = start_emulator(API_KEY, segments=SEGMENTS)
    config = settings_file(tmp_path)
    paths = jobs(tmp_path, [300, 5, 200, 1, 100])
    (tmp_path / "job1.csv").unlink()  # job1 fails: its source is gone
    report = tmp_path / "report.json"
    code = run(
        tmp_path,
        monkeypatch,
        emulator,
        "run",
        *paths,
        "--config",
        config,
        "--parallel",
        "3",
        "--report-json",
        report,
        "--log-format",
        "json",
    )
    written = json.loads(report.read_text())
    assert [job["name"] for job in written["jobs"]] == [f"job{n}" for n in range(5)]
    codes = [job["exit_code"] for job in written["jobs"]]
    assert codes[1] != 0 and codes[:1] + codes[2:] == [0, 0, 0, 0]
    assert code == written["exit_code"] == max(codes)
    assert len(emulator.members(SEGMENTS[4])) == 100
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    assert lines and all(line.get("job", "").startswith("job") for line in lines)
