"""Sources and states on object storage, against a real S3 server (moto) on loopback."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import (
    SEGMENT,
    emails,
    make_job,
    run_job,
    run_process,
    settings_file,
    wait_for,
    write_csv,
)
from sync.emulator import Emulator
from sync.errors import LockedError
from sync.state.s3 import RemoteStateStore

BUCKET = "np6-sync-test"
FAKE_AWS_KEY = "fake-secret-key-7d2b41c9"


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    fs: Any  # an s3fs filesystem talking to it


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto in server mode: a real HTTP S3 endpoint in a subprocess on a loopback port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "fake-access-key",
        "AWS_SECRET_ACCESS_KEY": FAKE_AWS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        # botocore's standard variable: s3fs (and any AWS SDK) sends requests there.
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        _wait_until_up(endpoint, server, log)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            patch.delenv("AWS_PROFILE", raising=False)
            import fsspec

            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir(BUCKET)
            yield S3Server(endpoint, env, fs)
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass
class Remote:
    """A folder of the test bucket, private to one test."""

    prefix: str
    env: dict[str, str]
    fs: Any

    def url(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self.url(name), data)

    def put_csv(self, name: str, rows: list[list[str]], folder: Path) -> str:
        local = write_csv(folder / "upload" / name, rows)
        self.put(name, local.read_bytes())
        return self.url(name)

    def names(self) -> set[str]:
        self.fs.invalidate_cache()
        return {
            p.removeprefix(self.prefix.removeprefix("s3://")) for p in self.fs.find(self.prefix)
        }

    def journaled_keys(self, state: str) -> set[str]:
        keys: set[str] = set()
        for name in sorted(n for n in self.names() if n.startswith(state + ".journal/")):
            for line in self.fs.cat_file(self.url(name)).splitlines():
                event = json.loads(line)
                if event["event"] == "added":
                    keys.update(event["keys"])
        return keys


@pytest.fixture
def remote(s3_server: S3Server, env: dict[str, str]) -> Remote:
    prefix = f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}/"
    return Remote(prefix, {**env, **s3_server.env}, s3_server.fs)


def remote_job(folder: Path, remote: Remote, **overrides: Any) -> Path:
    return make_job(
        folder,
        source={"path": remote.url("in/list.csv")},
        state={"path": remote.url("state/list.parquet")},
        **overrides,
    )


def emails_set(start: int, stop: int) -> set[str]:
    return {f"user{n}@example.com" for n in range(start, stop)}


def puts_answered(emulator: Emulator) -> int:
    return sum(1 for c in emulator.calls if c.method == "PUT" and c.status == 200)


def start_run(job: Path, config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "run", str(job), "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_source_and_state_on_s3_first_load_rerun_additions_removals(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    # reload_cost_factor 1: removals take the cheaper way, here a reload (P#9's default 5
    # would remove the 5 one by one).
    job = remote_job(tmp_path, remote, sync={"reload_cost_factor": 1})
    steps = [
        ((0, 300), "succeeded", 300),  # first load
        ((0, 300), "no_changes", 0),  # the same file: nothing sent
        ((0, 340), "succeeded", 40),  # additions: only they are sent
        ((5, 340), "succeeded", 335),  # removals: clear and reload
    ]
    for (start, stop), status, sent in steps:
        remote.put_csv("in/list.csv", [*emails(start, stop), [""]], tmp_path)
        emulator.reset_calls()
        result = cli("run", job, "--config", config)
        assert result.code == 0, result.out + result.err
        assert status in result.out
        assert emulator.members(SEGMENT) == emails_set(start, stop)
        assert sum(len(c.targets) for c in emulator.calls if c.method == "PUT") == sent
        assert remote.names() == {
            "in/list.csv",
            "state/list.parquet",
            "state/list.parquet.history.jsonl",
            "state/list.rejects.csv",  # the row without email, beside the state
        }

    planned = cli("plan", job, "--config", config, "--detailed-exitcode")
    assert planned.code == 0, planned.out + planned.err  # a dry run reads the remote state

    # Nothing of a job with a remote state is written beside its job file by a run.
    assert not (tmp_path / "state").exists()
    shown = cli("state", "show", job)
    assert shown.code == 0, shown.err
    assert remote.url("state/list.parquet") in shown.out
    assert "keys        335" in shown.out
    assert "last run" in shown.out and "succeeded" in shown.out
    history = remote.fs.cat_file(remote.url("state/list.parquet.history.jsonl")).splitlines()
    assert [json.loads(line)["status"] for line in history] == [s for _, s, _ in steps]


def test_a_second_concurrent_run_exits_4_naming_the_holder(
    tmp_path: Path, remote: Remote, emulator: Emulator
) -> None:
    config = settings_file(tmp_path, concurrency=1)
    job = remote_job(tmp_path, remote, sync={"chunk_size": 10})
    remote.put_csv("in/list.csv", emails(0, 600), tmp_path)
    emulator.latency_s = 0.02

    first = start_run(job, config, remote.env)
    try:
        wait_for(lambda: puts_answered(emulator) >= 1)
        # Keep the first run pushing, however slowly the second one starts on a busy
        # machine: each of its PUTs now takes a second until the second run has ended.
        emulator.latency_s = 1.0
        second = run_process(["run", job, "--config", config], remote.env)
        emulator.latency_s = 0.0
    finally:
        out, err = first.communicate(timeout=60)
    assert second.returncode == 4, second.stdout + second.stderr
    message = second.stdout + second.stderr
    assert f"pid {first.pid} on host {socket.gethostname()}" in message
    assert remote.url("state/list.parquet.lock") in message
    assert first.returncode == 0, out + err
    assert emulator.members(SEGMENT) == emails_set(0, 600)
    assert "state/list.parquet.lock" not in remote.names()  # released


@pytest.mark.parametrize(
    ("before", "source"),
    [
        pytest.param(None, (0, 4000), id="first-load"),
        pytest.param((0, 1000), (50, 4000), id="reload"),
    ],
)
def test_a_run_killed_mid_push_is_finished_by_the_next_from_remote_state(
    tmp_path: Path,
    remote: Remote,
    cli: Any,
    emulator: Emulator,
    before: tuple[int, int] | None,
    source: tuple[int, int],
) -> None:
    config = settings_file(tmp_path)
    job = remote_job(tmp_path, remote, sync={"chunk_size": 10, "max_removed_ratio": 1.0})
    if before is not None:
        remote.put_csv("in/list.csv", emails(*before), tmp_path)
        assert cli("run", job, "--config", config).code == 0
    remote.put_csv("in/list.csv", emails(*source), tmp_path)
    emulator.latency_s = 0.01
    emulator.reset_calls()

    # The run keeps a local copy of its journal (keys: personal data) in the temporary folder.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**remote.env, "TMPDIR": str(scratch)}
    process = start_run(job, config, env)
    # Kill once a journal segment with acknowledged chunks is on S3, mid-push.
    wait_for(lambda: remote.journaled_keys("state/list.parquet") or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before the kill"
    wait_for(lambda: emulator.idle)  # what was in flight has landed
    emulator.latency_s = 0.0
    acknowledged = remote.journaled_keys("state/list.parquet")
    assert acknowledged and "state/list.parquet.lock" in remote.names()
    assert list(scratch.iterdir()), "the killed run left no local copy to clean"

    emulator.reset_calls()
    resumed = run_process(["run", job, "--config", config], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "took over the lock" in resumed.stderr
    assert emulator.members(SEGMENT) == emails_set(*source)
    resent = [t for c in emulator.calls if c.method == "PUT" for t in c.targets]
    assert not acknowledged & set(resent)  # what the remote journal holds is not sent again
    assert len(resent) == len(set(resent))
    assert not list(scratch.iterdir())  # the next run removed the killed run's local copies
    assert remote.names() == {
        "in/list.csv",
        "state/list.parquet",
        "state/list.parquet.history.jsonl",
    }
    again = cli("run", job, "--config", config)
    assert again.code == 0 and "no_changes" in again.out


def test_an_expired_lock_is_taken_over(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    job = remote_job(tmp_path, remote)
    remote.put_csv("in/list.csv", emails(0, 100), tmp_path)
    holder = {"pid": 4242, "host": "elsewhere", "started_at": "2026-01-01T00:00:00+00:00"}
    # The server's clock counts whole seconds: an age is known to within one second.
    remote.put("state/list.parquet.lock", json.dumps({**holder, "lease_s": 2.0}).encode())
    written = time.monotonic()

    refused = cli("run", job, "--config", config)
    assert refused.code == 4
    assert "pid 4242 on host elsewhere, started 2026-01-01" in refused.out + refused.err
    assert emulator.calls == []

    time.sleep(max(0.0, written + 2.1 - time.monotonic()))  # the lease runs out
    taken = cli("run", job, "--config", config)
    assert taken.code == 0, taken.out + taken.err
    assert emulator.members(SEGMENT) == emails_set(0, 100)
    assert "state/list.parquet.lock" not in remote.names()


def test_the_holder_renews_its_lease_while_it_runs(remote: Remote) -> None:
    definition = {"identify_by": "unicity", "columns": ["email"]}
    url = remote.url("state/list.parquet")
    holder = RemoteStateStore(url, SEGMENT, definition, lease_s=1.2)
    other = RemoteStateStore(url, SEGMENT, definition, lease_s=1.2)
    with holder.lock("list"):
        time.sleep(2.6)  # twice the lease: only the renewals keep it
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"), other.lock("list"):
            pass
    with other.lock("list"):
        assert "state/list.parquet.lock" in remote.names()


def test_a_missing_remote_source_exits_2_naming_it_and_sends_nothing(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    job = remote_job(tmp_path, remote)
    result = cli("run", job, "--config", config)
    assert result.code == 2
    assert f"{remote.url('in/list.csv')}: cannot download: not found" in result.out
    assert emulator.calls == []
    # No state and no lock; the history records the failed run, as it does locally.
    assert remote.names() == {"state/list.parquet.history.jsonl"}
    assert FAKE_AWS_KEY not in result.out + result.err


def test_a_state_on_a_read_only_or_unsupported_url_is_a_config_error(
    tmp_path: Path, cli: Any
) -> None:
    job = make_job(tmp_path, state={"path": "https://example.com/list.parquet"})
    result = cli("run", job)
    assert result.code == 2
    assert "state.path: https:// is read-only" in result.out + result.err
    job = make_job(tmp_path, state={"path": "gs://bucket/list.parquet"})
    assert "state on gs:// is not supported yet" in cli("run", job).out
    job = make_job(tmp_path, source={"path": "ftp://host/list.csv"})
    assert "source.path: ftp:// is not supported" in cli("run", job).out
    job = make_job(tmp_path, rejects={"path": "gs://bucket/list.rejects.csv"})
    assert "rejects.path: rejects on gs:// are not supported" in cli("run", job).out


def test_rejects_go_where_rejects_path_says_and_go_away_without_rejects(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    # A local state, the rejects on S3.
    url = remote.url("out/list.rejects.csv")
    job = make_job(tmp_path, rejects={"path": url})
    for rows, rejected in (([*emails(0, 30), [""]], True), (emails(0, 30), False)):
        write_csv(tmp_path / "list.csv", rows)
        report = run_job(cli, job, config)
        assert report["rejects_file"] == (url if rejected else None)
        assert ("out/list.rejects.csv" in remote.names()) is rejected
        if rejected:
            assert remote.fs.cat_file(url).decode().splitlines()[1:] == ['32,"empty email",""']
        assert not (tmp_path / "state" / "list.rejects.csv").exists()
    assert (tmp_path / "state" / "list.parquet").is_file()

    # A remote state, the rejects in a local folder (relative to the job file).
    folder = tmp_path / "remote-state"
    folder.mkdir()
    remote.put_csv("in/list.csv", [*emails(0, 30), [""]], tmp_path)
    # (Another segment: the first is filled, and a new state on it would be refused, P#8.)
    job = remote_job(folder, remote, segment_id=99, rejects={"path": "rejected/list.csv"})
    report = run_job(cli, job, config)
    assert report["rejects_file"] == str(folder / "rejected" / "list.csv")

    assert (folder / "rejected" / "list.csv").is_file()
    assert "state/list.rejects.csv" not in remote.names()
    assert emulator.members(SEGMENT) == emails_set(0, 30)


def test_a_missing_backend_names_the_extra_to_install(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed")
    job = make_job(tmp_path, source={"path": "gs://bucket/list.csv"})
    result = cli("validate", job)
    assert result.code == 2
    assert "gs:// needs `pip install np6-sync[gcs]`" in result.err


def test_verify_and_repair_with_a_remote_state_list_locally(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    ids = [f"{n:08d}" for n in range(200)]
    job = remote_job(tmp_path, remote, targets={"identify_by": "id", "columns": ["target_id"]})
    remote.put("in/list.csv", ("target_id\n" + "\n".join(ids) + "\n").encode())
    assert cli("run", job, "--verify").code == 0

    emulator.set_members(SEGMENT, [*ids[3:], "ZZZZZZZ1"])
    result = cli("verify", job, "--repair")
    assert result.code == 0, result.out + result.err
    assert "3 missing, 1 extra" in result.out
    assert '"ZZZZZZZ1","extra"' in (tmp_path / "state" / "list.verify.csv").read_text()
    assert emulator.members(SEGMENT) == set(ids)
    emulator.reset_calls()
    assert "no_changes" in cli("run", job).out
    assert remote.names() == {
        "in/list.csv",
        "state/list.parquet",
        "state/list.parquet.history.jsonl",
    }


def test_a_bad_remote_state_stops_the_job_and_full_refresh_sets_it_aside(
    tmp_path: Path, remote: Remote, cli: Any, emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    job = remote_job(tmp_path, remote)
    remote.put_csv("in/list.csv", emails(0, 50), tmp_path)
    remote.put("state/list.parquet", b"garbage")
    result = cli("run", job, "--config", config)
    assert result.code == 2
    assert f"{remote.url('state/list.parquet')}: unreadable state file" in result.out
    assert emulator.calls == []

    rebuilt = cli("run", job, "--config", config, "--full-refresh")
    assert rebuilt.code == 0, rebuilt.out + rebuilt.err
    assert emulator.members(SEGMENT) == emails_set(0, 50)
    aside = [n for n in remote.names() if n.startswith("state/list.parquet.set-aside-")]
    assert len(aside) == 1 and remote.fs.cat_file(remote.url(aside[0])) == b"garbage"
    assert "no_changes" in cli("run", job, "--config", config).out


@pytest.fixture
def downloads() -> list[str]:
    """The paths the ``web`` server was asked for, in order."""
    return []


@pytest.fixture
def web(tmp_path: Path, downloads: list[str]) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on loopback serving a folder (https:// goes the same way)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            downloads.append(self.path)
            super().do_GET()

    handler = functools.partial(Quiet, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
        server.shutdown()
        thread.join()


def test_a_source_over_http_is_read_and_a_missing_one_named_without_its_query(
    tmp_path: Path, web: tuple[str, Path], cli: Any, emulator: Emulator
) -> None:
    base, folder = web
    (folder / "list.csv.gz").write_bytes(
        gzip.compress(b"email\n" + b"".join(f"u{n}@example.com\n".encode() for n in range(80)))
    )
    config = settings_file(tmp_path)
    job = make_job(tmp_path, source={"path": f"{base}/list.csv.gz?token=s3cr3t-t0ken-99"})
    result = cli("run", job, "--config", config)
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == {f"u{n}@example.com" for n in range(80)}

    emulator.reset_calls()
    job = make_job(tmp_path, source={"path": f"{base}/gone.csv?token=s3cr3t-t0ken-99"})
    missing = cli("run", job, "--config", config)
    assert missing.code == 2
    assert f"{base}/gone.csv: cannot download: not found" in missing.out
    assert "s3cr3t" not in missing.out + missing.err
    assert emulator.calls == []


def test_a_source_over_http_is_downloaded_once_and_its_bytes_decide(
    tmp_path: Path,
    web: tuple[str, Path],
    downloads: list[str],
    cli: Any,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, folder = web
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))

    def publish(letter: str) -> None:  # the same size whatever the letter
        lines = [f"{letter}{n:03d}@example.com" for n in range(80)]
        (folder / "list.csv").write_text("email\n" + "\n".join(lines) + "\n")

    def run() -> dict[str, Any]:
        result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json")
        assert result.code == 0, result.out + result.err
        return json.loads((tmp_path / "r.json").read_text())["jobs"][0]

    config = settings_file(tmp_path)
    job = make_job(tmp_path, source={"path": f"{base}/list.csv?sig=abc"})
    publish("a")
    assert run()["status"] == "succeeded" and len(downloads) == 1
    emulator.reset_calls()
    sealed = run()  # the same bytes: answered from the seal, once downloaded
    assert (sealed["status"], list(sealed["phase_s"])) == ("no_changes", ["check"])
    assert sealed["keys"] == 80 and emulator.calls == [] and len(downloads) == 2

    publish("b")  # other bytes, the same size: read again, from the one download
    changed = run()
    assert (changed["added"], changed["removed"], len(downloads)) == (80, 80, 3)
    assert emulator.members(SEGMENT) == {f"b{n:03d}@example.com" for n in range(80)}
    assert list(temporary.iterdir()) == []  # no copy of the list is left behind


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(endpoint: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto exited: {log.read_text()[-2000:]}")
        try:
            requests.get(endpoint + "/moto-api/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("moto did not start in 30 s")
