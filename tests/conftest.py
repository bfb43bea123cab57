"""Shared builders: an emulator on a loopback port, job files, sources, the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync.cli import main
from sync.emulator import Emulator

API_KEY = "test-key-5f1c9a"
SEGMENT = 1234
FIRST_JOB_SEGMENT = 4321  # README's first job (the shipped jobs/ example has 1234)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(API_KEY, segments=[SEGMENT, 99, FIRST_JOB_SEGMENT]) as server:
        yield server


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with chosen settings (``Emulator``'s arguments); all stop after the test."""
    started: list[Emulator] = []

    def start(*args: Any, **settings: Any) -> Emulator:
        server = Emulator(*args, **settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a run needs to reach the emulator."""
    monkeypatch.setenv("NP6_API_KEY", API_KEY)
    monkeypatch.setenv("NP6_BASE_URL", emulator.url)
    return {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": emulator.url}


def write_csv(
    path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = ("email",), delimiter=","
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def emails(start: int, stop: int) -> list[list[str]]:
    return [[f"user{n}@example.com"] for n in range(start, stop)]


def make_job(folder: Path, **overrides: Any) -> Path:
    """A job file in ``folder``; nested keys merge over the defaults."""
    job: dict[str, Any] = {
        "name": "list",
        "segment_id": SEGMENT,
        "source": {"path": "list.csv"},
        "targets": {"columns": ["email"]},
        "sync": {"max_removed_ratio": 1.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    path = folder / f"{job['name']}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """Run the real command line in-process against the emulator, from a working
    directory of its own (the repository's config/np6.yaml must not leak in)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_job(cli, job: Path, config: Path, *extra: str, code: int = 0) -> dict[str, Any]:
    """``run`` of one job through the in-process command line: its report."""
    report = job.with_name("report.json")
    result = cli("run", job, "--config", config, "--report-json", report, *extra)
    assert result.code == code, result.out + result.err
    job_report: dict[str, Any] = json.loads(report.read_text())["jobs"][0]
    return job_report


def run_process(args: Sequence[str | Path], env: dict[str, str], **kwargs: Any):
    """Run the CLI as a real subprocess (for kills, locks and signals)."""
    return subprocess.run(
        [sys.executable, "-m", "sync", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def state_snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a state folder, byte for byte, but the lock (who ran last) and the
    run history (which records every run by design)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.endswith((".lock", ".history.jsonl"))
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A settings file with quick retries, in the test's folder."""
    return settings_file(tmp_path)


def settings_file(folder: Path, **overrides: Any) -> Path:
    """Settings with quick retries, so the tests never wait long."""
    settings = {
        "concurrency": 2,
        "max_requests_per_second": 10_000,
        "retry": {"initial_wait": 0.001, "max_wait": 0.01, "max_attempts": 30},
        **overrides,
    }
    path = folder / "np6.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def np6_client(emulator: Emulator, key: str = API_KEY, attempts: int = 3, **settings: Any):
    """A client of the emulator whose retries never sleep."""
    from sync.config import RetryConfig, Settings
    from sync.np6.client import ClientStats, NP6Client, make_session, retry_policy

    config = Settings(base_url=emulator.url, **settings)
    stats = ClientStats()
    return NP6Client(
        make_session(config, key),
        config,
        key,
        policy=lambda: retry_policy(
            RetryConfig(max_attempts=attempts), 1e18, stats=stats, sleep=lambda s: None
        ),
        stats=stats,
    )


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Until ``condition()`` holds (a poll, never a fixed sleep); AssertionError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def _clock_in_sql() -> bool:
    import polars as pl

    try:
        pl.sql_expr("CURRENT_DATE")
    except pl.exceptions.PolarsError:
        return False
    return True


# Whether this polars's SQL knows CURRENT_DATE and NOW() (polars 2 does, 1.x does not):
# where it does not, a condition on the clock is refused when the job loads (exit 2), and
# the tests of such conditions check that instead.
CLOCK_IN_SQL = _clock_in_sql()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A thread a test left behind that would keep the interpreter from exiting (a
    non-daemon one, such as an executor's worker): named with where it stands, and the
    session fails, rather than hanging after its last test."""
    left = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon
    ]
    for thread in left:
        thread.join(timeout=5)
    stuck = [thread for thread in left if thread.is_alive()]
    if not stuck:
        return
    frames = sys._current_frames()
    for thread in stuck:
        stack = "".join(traceback.format_stack(frames[thread.ident])) if thread.ident else ""
        sys.stderr.write(f"\na thread left running: {thread.name}\n{stack}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
