"""Where users run it: terminals and log collectors, CI plans and summaries, many jobs."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from conftest import SEGMENT, emails, make_job, run_process, write_csv
from sync.emulator import Emulator


def read_all(fd: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=timeout)
    return b"".join(chunks)


def test_a_terminal_shows_progress(tmp_path: Path, env: dict[str, str], emulator: Emulator) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 500))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "run", str(job)],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    try:
        screen = read_all(leader, process).decode(errors="replace")
    finally:
        os.close(leader)
    assert process.returncode == 0, screen
    assert "push [########################] 500/500" in screen
    assert "/s" in screen and "elapsed" in screen
    assert "succeeded" in screen
    assert '{"ts"' not in screen  # people get text, not JSON


def test_without_a_terminal_logs_are_one_json_object_per_line(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 120))
    emulator.inject("503")
    config = tmp_path / "fast.yaml"
    config.write_text("retry: {initial_wait: 0.01, max_wait: 0.02}\n")
    result = run_process(["run", job, "--config", config], env)
    lines = result.stderr.splitlines()
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    plan = next(r for r in records if r.get("phase") == "plan")
    assert plan["job"] == "list" and plan["counts"]["added"] == 120
    retry = next(r for r in records if r.get("phase") == "retry")
    assert retry["request_id"] and "HTTP 503" in retry["msg"]
    assert any(r.get("phase") == "done" for r in records)


def test_plan_detailed_exitcode_and_markdown_summary(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, monkeypatch
) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 120))
    github = tmp_path / "github-summary.md"
    github.write_text("earlier step\n")
    env = {**env, "GITHUB_STEP_SUMMARY": str(github)}
    summary = tmp_path / "summary.md"

    pending = run_process(["plan", job, "--detailed-exitcode", "--summary-md", summary], env)
    assert pending.returncode == 2, pending.stdout + pending.stderr
    text = summary.read_text()
    assert "## np6-sync: 1 job, 1 planned" in text
    assert "| list | 1234 | planned | append |" in text
    assert "| 120 |" in text
    assert github.read_text().startswith("earlier step\n\n## np6-sync")
    assert emulator.calls == []

    assert run_process(["run", job], env).returncode == 0
    settled = run_process(["plan", job, "--detailed-exitcode"], env)
    assert settled.returncode == 0
    assert run_process(["plan", job], env).returncode == 0


def test_many_jobs_run_on_past_a_broken_one(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, cli
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first = make_job(tmp_path / "a", name="a")
    write_csv(tmp_path / "a" / "list.csv", emails(0, 10))
    broken = make_job(tmp_path, name="broken", segment_id=98, source={"path": "missing.csv"})
    last = make_job(tmp_path / "b", name="b", segment_id=99)
    write_csv(tmp_path / "b" / "list.csv", emails(100, 130))
    result = cli("run", first, broken, last, "--report-json", tmp_path / "r.json")
    assert result.code == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert [j["status"] for j in report["jobs"]] == ["succeeded", "failed", "succeeded"]
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(10)}
    assert len(emulator.members(99)) == 30
    assert "missing.csv" in result.out


def test_a_run_started_with_its_output_closed_exits_with_its_own_code(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    """Some schedulers start jobs with stdout or stderr closed: Python then has no stream
    to flush, and the console script must still leave with the run's code."""
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 30))
    for closed in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "sync", "run", str(job)],
            env=env,
            cwd=tmp_path,
            preexec_fn=lambda fd=closed: os.close(fd),
            timeout=60,
        )
        assert done.returncode == 0
    assert emulator.members(SEGMENT) == {e for [e] in emails(0, 30)}
    missing = make_job(tmp_path, name="gone", source={"path": "missing.csv"})
    failed = subprocess.run(
        [sys.executable, "-m", "sync", "run", str(missing)],
        env=env,
        cwd=tmp_path,
        preexec_fn=lambda: os.close(1),
        timeout=60,
    )
    assert failed.returncode == 2
