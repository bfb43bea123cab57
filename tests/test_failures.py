"""End to end: failures from outside (a read-only or full disk, a stop signal, a bad job
file, a wrong option) end one job with a clear message and the documented exit code; the
report is written and the next job runs."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from conftest import (
    API_KEY,
    SEGMENT,
    emails,
    make_job,
    run_process,
    settings_file,
    state_snapshot,
    write_csv,
)
from sync.emulator import Emulator
from sync.errors import EXIT_FAILED, StorageError, SyncError, as_error, translated

OTHER_SEGMENT = 99


def emails_set(start: int, stop: int) -> set[str]:
    return {f"user{n}@example.com" for n in range(start, stop)}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount small tmpfs folders (root only): real disks that are full or read-only."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command here")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "np6sync-test", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)


def remount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)


def two_jobs(tmp_path: Path, state: Path, **first_sync: int) -> tuple[Path, Path]:
    """``first`` keeps its state in ``state``; ``second`` (another segment) beside it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_job(
        tmp_path / "a",
        name="first",
        state={"path": str(state / "first.parquet")},
        sync={"max_removed_ratio": 1.0, **first_sync},
    )
    second = make_job(tmp_path / "b", name="second", segment_id=OTHER_SEGMENT)
    write_csv(tmp_path / "b" / "list.csv", emails(0, 30))
    return first, second


def report_of(path: Path) -> dict[str, dict[str, object]]:
    return {job["name"]: job for job in json.loads(path.read_text())["jobs"]}


def test_a_read_only_state_folder_is_exit_2_and_nothing_is_sent(
    tmp_path: Path, tmpfs, cli, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    folder = tmpfs("state", "size=4m,mode=0700")
    first, second = two_jobs(tmp_path, folder)
    write_csv(tmp_path / "a" / "list.csv", emails(0, 50))
    assert cli("run", first, "--config", config).code == 0
    remount(folder, "ro")
    before = state_snapshot(folder)
    emulator.reset_calls()

    write_csv(tmp_path / "a" / "list.csv", emails(0, 80))
    report = tmp_path / "report.json"
    result = cli("run", first, second, "--config", config, "--report-json", report)

    assert result.code == 2, result.out + result.err
    assert "Traceback" not in result.err
    assert all(call.segment_id != SEGMENT for call in emulator.calls)  # nothing sent
    assert emulator.members(SEGMENT) == emails_set(0, 50)
    assert state_snapshot(folder) == before
    jobs = report_of(report)
    assert jobs["first"]["status"] == "failed"
    assert jobs["first"]["exit_code"] == 2
    assert re.search(r"cannot take the job's lock: .*Read-only file system", str(jobs["first"]))
    assert jobs["second"]["status"] == "succeeded"  # the next job still ran
    assert emulator.members(OTHER_SEGMENT) == emails_set(0, 30)


def test_a_disk_that_fills_up_mid_push_stops_the_sending_and_a_rerun_finishes(
    tmp_path: Path, tmpfs, cli, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    folder = tmpfs("state", "size=64k,mode=0700")
    # 400 chunks of 50 keys: the journal (one line per acknowledged chunk, ~1.3 KB each)
    # outgrows 64 KB after about fifty of them.
    first, second = two_jobs(tmp_path, folder, chunk_size=50)
    write_csv(tmp_path / "a" / "list.csv", emails(0, 20_000))
    report = tmp_path / "report.json"

    result = cli("run", first, second, "--config", config, "--report-json", report)

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err, result.err
    jobs = report_of(report)
    assert jobs["first"]["status"] == "failed"
    assert "No space left on device" in str(jobs["first"]["error"])
    assert jobs["second"]["status"] == "succeeded"
    puts = [c for c in emulator.calls if c.method == "PUT" and c.segment_id == SEGMENT]
    # Whole lines only: the disk may have taken part of the last one.
    journal = (folder / "first.parquet.journal").read_bytes().split(b"\n")[:-1]
    journaled = sum(1 for line in journal if line.startswith(b'{"event":"added"'))
    # The sending stops at once: beyond the chunks journaled whole, only the one the disk
    # took part of, the one it refused, and the one other in flight (concurrency 2).
    assert 0 < journaled < len(puts) <= journaled + 3
    assert len(puts) < 400

    remount(folder, "size=16m")
    again = cli("run", first, "--config", config)
    assert again.code == 0, again.out + again.err
    assert emulator.members(SEGMENT) == emails_set(0, 20_000)


@pytest.fixture
def slow_source() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """A CSV over HTTP on loopback whose second half waits for ``release``: a run is
    reading the source between ``reading`` and ``release``."""
    body = ("email\n" + "".join(f"new{n}@example.com\n" for n in range(2000))).encode()
    reading, release = threading.Event(), threading.Event()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

        def do_GET(self) -> None:
            self.do_HEAD()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            reading.set()
            release.wait(30)
            self.wfile.write(body[len(body) // 2 :])

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/list.csv", reading, release
        finally:
            release.set()
            server.shutdown()


def test_sigterm_while_the_source_is_read_sends_nothing(
    tmp_path: Path, env: dict[str, str], emulator: Emulator, slow_source
) -> None:
    url, reading, release = slow_source
    config = settings_file(tmp_path)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 100))
    assert run_process(["run", job, "--config", config], env).returncode == 0
    before = state_snapshot(tmp_path / "state")
    emulator.reset_calls()

    # The same job, its source now the slow URL, and a reload that would clear the segment.
    make_job(tmp_path, source={"path": url})
    command = [sys.executable, "-m", "sync", "run", str(job), "--config", str(config)]
    with subprocess.Popen(
        [*command, "--full-refresh"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert reading.wait(60)  # the run is reading the source
        process.send_signal(signal.SIGTERM)
        release.set()
        out, err = process.communicate(timeout=60)
    text = out.decode() + err.decode()
    assert process.returncode == EXIT_FAILED, text
    assert "stopped by a signal before anything was sent" in text
    assert emulator.calls == []  # no clear: the segment stays whole
    assert emulator.members(SEGMENT) == emails_set(0, 100)
    assert state_snapshot(tmp_path / "state") == before


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["verify"], id="verify"),
        pytest.param(["state", "show"], id="state-show"),
        pytest.param(["state", "import", "--from-segment"], id="state-import"),
        pytest.param(["validate"], id="validate"),
    ],
)
def test_every_command_goes_on_past_a_broken_job_file(
    tmp_path: Path, cli, emulator: Emulator, command: list[str]
) -> None:
    config = settings_file(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    job = make_job(tmp_path, targets={"identify_by": "id", "columns": ["id"]})
    write_csv(tmp_path / "list.csv", [["1"], ["2"]], header=("id",))
    emulator.set_members(SEGMENT, ["1", "2"])
    extra = [] if command == ["state", "show"] or command == ["validate"] else ["--config"]
    result = cli(*command, broken, job, *extra, *([config] if extra else []))
    assert result.code == 2, result.out + result.err
    assert "broken.yaml" in result.err
    assert "list" in result.out  # the good job after it still ran
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], 2, id="pending"),
        pytest.param(["--no-such-option"], 1, id="usage"),
        pytest.param(["missing.yaml"], 1, id="missing-job"),
        pytest.param(["--config", "missing.yaml"], 1, id="missing-settings"),
    ],
)
def test_plan_detailed_exitcode_is_1_for_every_failure(
    tmp_path: Path, cli, args: list[str], expected: int
) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 10))
    assert cli("plan", job, "--detailed-exitcode", *args).code == expected


def test_plan_detailed_exitcode_is_1_for_a_missing_source_and_a_refusal(tmp_path: Path, cli):
    job = make_job(tmp_path)
    assert cli("plan", job, "--detailed-exitcode").code == 1  # no list.csv
    write_csv(tmp_path / "list.csv", [])  # header only: refused by a safeguard
    assert cli("plan", job).code == 3
    assert cli("plan", job, "--detailed-exitcode").code == 1


def test_the_emulator_command_takes_its_options(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "sync", "emulator", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    for option in ("--port", "--key", "--latency-ms", "--faults"):
        assert option in shown.stdout
    key = "emulator-cli-key-3a9"
    command = [sys.executable, "-m", "sync", "emulator", "--port", "0", "--key", key]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        line = p.stdout.readline()
        match = re.fullmatch(r"NP6 emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = f"{match[1]}/segments/3/targets"
        with requests.Session() as http:
            assert http.put(url, json=["a"], headers={"X-Key": key}).json() == 1
            assert http.put(url, json=["a"], headers={"X-Key": API_KEY}).status_code == 401
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=10)
    assert p.returncode == 0


def test_foreign_failures_become_errors_of_the_tree() -> None:
    no_space = r"cannot save the state: No space left on device \(/x/y\)"
    with pytest.raises(StorageError, match=no_space), translated("save the state"):
        raise OSError(28, "No space left on device", "/x/y")
    bug = as_error(KeyError("k"), "run")
    assert isinstance(bug, SyncError) and bug.exit_code == EXIT_FAILED
    assert "unexpected KeyError" in str(bug) and "please report it" in str(bug)
    assert isinstance(bug.__cause__, KeyError)


def test_an_unexpected_exception_fails_its_job_naming_its_type(tmp_path: Path) -> None:
    from sync.config import load_job
    from sync.job.context import RunOptions
    from sync.job.run import run_job

    write_csv(tmp_path / "list.csv", emails(0, 10))
    job = load_job(make_job(tmp_path))

    def broken_connector():
        raise RuntimeError("a bug in a connector")

    report = run_job(job, RunOptions(), broken_connector)
    assert report.status == "failed"
    assert report.exit_code == EXIT_FAILED
    assert report.error is not None
    assert "unexpected RuntimeError: a bug in a connector" in report.error
    assert "please report it" in report.error
