"""The quick path: an unchanged file is answered from the state's seal, and any doubt
reads the file again. Through the real CLI against the emulator."""

from __future__ import annotations

import functools
import http.server
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SEGMENT, make_job, run_process, settings_file, write_csv
from conftest import run_job as run
from sync.emulator import Emulator
from sync.errors import StorageError
from sync.job.fanout import load_job_file
from sync.report.model import JobReport
from sync.state.seal import (
    COUNTS,
    SourceProof,
    file_digest,
    job_shape,
    seal_path,
    seal_run,
    unchanged_counts,
    write_seal,
)

COUNTED = ("status", "action", "rows_read", "rows_rejected", "duplicate_keys", "keys")
COUNTED += ("added", "removed", "rejects_by_reason", "rejects_file", "exit_code", "rows_filtered")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return settings_file(tmp_path)


def rows() -> list[list[str]]:
    """Keys with a duplicate after the transforms and a rejected (empty) one."""
    return [[f"user{n}@example.com"] for n in range(60)] + [[" USER1@example.com"], [""]]


def job_file(tmp_path: Path, **overrides: object) -> Path:
    targets = {"columns": ["email"], "transforms": {"email": ["strip", "lower"]}}
    return make_job(tmp_path, targets=targets, **overrides)


def quick(report: dict) -> bool:
    """The quick path checks; a full run reads."""
    return "check" in report["phase_s"] and "read" not in report["phase_s"]


def test_an_unchanged_file_is_answered_from_the_seal_with_the_counts_of_a_full_read(
    tmp_path, emulator, cli, config
) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    first = run(cli, job, config)
    assert first["status"] == "succeeded" and not quick(first)
    assert seal_path(tmp_path / "state" / "list.parquet").exists()

    emulator.reset_calls()
    second = run(cli, job, config)
    assert quick(second)
    assert emulator.calls == []

    seal_path(tmp_path / "state" / "list.parquet").unlink()  # the same run, read in full
    full = run(cli, job, config)
    assert not quick(full)
    assert {k: second[k] for k in COUNTED} == {k: full[k] for k in COUNTED}
    assert full["rows_rejected"] == 1 and full["duplicate_keys"] == 1
    assert quick(run(cli, job, config))  # the full no-change run sealed it again


def test_a_file_changed_with_the_same_size_and_time_is_read_again(
    tmp_path, emulator, cli, config
) -> None:
    job = job_file(tmp_path)
    source = write_csv(tmp_path / "list.csv", rows())
    run(cli, job, config)
    before = os.stat(source)
    data = source.read_bytes().replace(b"user7@", b"user8@").replace(b"user59@", b"userXY@")
    assert len(data) == before.st_size
    source.write_bytes(data)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(source)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    report = run(cli, job, config)
    assert not quick(report)
    assert report["action"] != "none"
    assert "userxy@example.com" in emulator.members(SEGMENT)
    assert "user59@example.com" not in emulator.members(SEGMENT)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("transforms", id="key-transforms"),
        pytest.param("sync", id="job-sync-settings"),
        pytest.param("where", id="source-filter"),
        pytest.param("media_type", id="settings-media-type"),
        pytest.param("state", id="state-rewritten"),
        pytest.param("journal", id="journal-on-record"),
        pytest.param("full_refresh", id="full-refresh"),
    ],
)
def test_a_changed_job_state_or_setting_reads_the_file_again(
    tmp_path, emulator, cli, config, change
) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    run(cli, job, config)
    assert quick(run(cli, job, config))
    state = tmp_path / "state" / "list.parquet"
    extra: list[str] = []
    code = 0
    if change == "transforms":  # the state is then foreign: the full read says so
        code = 2
        job = make_job(tmp_path, targets={"columns": ["email"], "transforms": {"email": ["strip"]}})
    elif change == "where":
        job = job_file(tmp_path, source={"path": "list.csv", "where": "email <> 'nobody'"})
    elif change == "sync":
        job = job_file(tmp_path, sync={"max_removed_ratio": 0.9})
    elif change == "media_type":
        config = settings_file(tmp_path, unicity_media_type="application/vnd.mperf.v8.unicity")
    elif change == "state":
        state.write_bytes(state.read_bytes())  # the same keys, but not the state it sealed
    elif change == "journal":
        state.with_name(state.name + ".journal").write_text("")
    else:
        extra = ["--full-refresh"]
    report = run(cli, job, config, *extra, code=code)
    assert not quick(report)
    assert report["rows_read"] == len(rows())


def test_deferred_removals_are_never_sealed(tmp_path, emulator, cli, config) -> None:
    job = job_file(
        tmp_path, sync={"removals": "defer", "max_removed_ratio": 1.0, "defer_removals_ratio": 0.5}
    )
    write_csv(tmp_path / "list.csv", rows())
    run(cli, job, config)
    write_csv(tmp_path / "list.csv", rows()[1:])
    deferred = run(cli, job, config)
    assert deferred["pending_removals"] == 1
    assert not seal_path(tmp_path / "state" / "list.parquet").exists()
    assert not quick(run(cli, job, config))
    # Sent, and a removal still deferred: the run's plan carried out is not the source.
    write_csv(tmp_path / "list.csv", [*rows()[2:], ["new@example.com"]])
    sent = run(cli, job, config)
    assert (sent["status"], sent["targets_sent"], sent["pending_removals"]) == ("succeeded", 1, 1)
    assert not seal_path(tmp_path / "state" / "list.parquet").exists()


def test_the_quick_path_loads_neither_pyarrow_polars_nor_requests(
    tmp_path: Path, emulator: Emulator, env: dict[str, str], config: Path
) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    assert run_process(["run", job, "--config", config], env, cwd=tmp_path).returncode == 0
    assert "loaded: []" in _run_listing_modules(job, config, env, tmp_path)


def _run_listing_modules(job: Path, config: Path, env: dict[str, str], cwd: Path) -> str:
    """`run` in a fresh process, printing which heavy modules it loaded."""
    script = (
        "import sys\nfrom sync.cli import main\n"
        f"code = main(['run', {str(job)!r}, '--config', {str(config)!r}])\n"
        "heavy = sorted(m for m in ('pyarrow', 'polars', 'requests') if m in sys.modules)\n"
        "print('loaded:', heavy)\nsys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_full_read_with_nothing_to_send_loads_no_http_client(
    tmp_path: Path, emulator: Emulator, env: dict[str, str], config: Path
) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    assert run_process(["run", job, "--config", config], env, cwd=tmp_path).returncode == 0
    (tmp_path / "state" / "list.parquet.seal.json").unlink()  # read in full, this time
    out = _run_listing_modules(job, config, env, tmp_path)
    assert "loaded: ['pyarrow']" in out and "no_changes" in out  # small: no polars either


def test_the_digest_is_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)  # more than one read, and a partial last one
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()


# The seal's parts, one by one: a proof of a file that changed, a seal that does not
# speak for this job or state, a seal that cannot be saved.

FULL_COUNTS = dict.fromkeys(COUNTS, 0)


def proven(tmp_path: Path) -> SourceProof:
    source = write_csv(tmp_path / "list.csv", rows())
    proof = SourceProof.take(source)
    assert proof is not None and proof.still_valid()
    return proof


def test_a_proof_of_a_file_replaced_since_is_no_longer_valid(tmp_path: Path) -> None:
    proof = proven(tmp_path)
    write_csv(proof.path, rows()[1:])
    assert not proof.still_valid()
    assert SourceProof.take(proof.path, proof.identity) is None  # not the file it was


def test_there_is_no_proof_of_a_missing_file(tmp_path: Path) -> None:
    assert SourceProof.beside(tmp_path / "missing.csv")() is None
    assert SourceProof.take(tmp_path / "missing.csv") is None


def test_no_seal_is_written_for_a_file_replaced_while_it_was_read(tmp_path: Path) -> None:
    state = tmp_path / "state.parquet"
    state.write_bytes(b"the state")
    seal_path(state).write_text("{}")  # an older seal: it must not outlive the state
    proof = proven(tmp_path)
    write_csv(proof.path, rows()[1:])
    write_seal(state, "shape", proof, FULL_COUNTS)
    assert not seal_path(state).exists()


def test_a_seal_is_written_for_the_state_as_it_is_and_answers_for_it(tmp_path: Path) -> None:
    state = tmp_path / "state.parquet"
    state.write_bytes(b"the state")
    proof = proven(tmp_path)
    write_seal(state, "shape", proof, {**FULL_COUNTS, "keys": 61, "other": 1})
    seal = json.loads(seal_path(state).read_text())
    assert seal["counts"] == {**FULL_COUNTS, "keys": 61}  # only the counts a report needs
    assert unchanged_counts(state, "shape", proof.path) == seal["counts"]
    assert unchanged_counts(state, "another shape", proof.path) is None
    state.write_bytes(b"the state")  # rewritten: another file for the seal
    assert unchanged_counts(state, "shape", proof.path) is None


def seal_with(state: Path, **changes: object) -> Path:
    """A valid seal of ``state``, then ``changes`` made to its record."""
    state.write_bytes(b"the state")
    proof = proven(state.parent)
    write_seal(state, "shape", proof, FULL_COUNTS)
    assert unchanged_counts(state, "shape", proof.path) == FULL_COUNTS
    seal = json.loads(seal_path(state).read_text())
    seal.update(changes)
    seal_path(state).write_text(json.dumps(seal))
    return proof.path


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"seal_version": 2}, id="another-seal-version"),
        pytest.param({"counts": {n: 0 for n in COUNTS if n != "rejects_file"}}, id="a-count-gone"),
        pytest.param({"counts": [0] * len(COUNTS)}, id="counts-not-a-record"),
        pytest.param({"source_sha256": "0" * 64}, id="another-digest"),
    ],
)
def test_a_seal_of_another_version_or_with_counts_missing_answers_nothing(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    source = seal_with(tmp_path / "state.parquet", **changes)
    assert unchanged_counts(tmp_path / "state.parquet", "shape", source) is None


def test_a_seal_that_is_no_record_answers_nothing(tmp_path: Path) -> None:
    source = seal_with(tmp_path / "state.parquet")
    seal_path(tmp_path / "state.parquet").write_text("[1]")
    assert unchanged_counts(tmp_path / "state.parquet", "shape", source) is None


def test_a_seal_that_cannot_be_saved_says_so(tmp_path: Path) -> None:
    job = load_job_file(job_file(tmp_path))[0][0]
    job.state_path.parent.mkdir(parents=True)
    job.state_path.write_bytes(b"the state")
    seal_path(job.state_path).mkdir()  # a folder where the seal goes
    report = JobReport(job.name, job.segment_id, status="no_changes")
    with pytest.raises(StorageError, match=r"^cannot save the state's seal: "):
        seal_run(job, None, proven(tmp_path), report)


def test_a_run_with_a_media_type_is_answered_from_its_seal(tmp_path, emulator, cli) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    config = settings_file(tmp_path, unicity_media_type="application/vnd.mperf.v8.unicity")
    assert not quick(run(cli, job, config))
    assert quick(run(cli, job, config))


def test_the_shape_changes_with_what_may_change_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = load_job_file(job_file(tmp_path))[0][0]
    shape = job_shape(job, None)
    assert job_shape(job, None) == shape
    assert job_shape(job, "application/vnd.mperf.v8.unicity") != shape
    assert job_shape(job, None, "https://staging.example") != shape
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    assert job_shape(load_job_file(job_file(moved))[0][0], None) != shape  # another file
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    assert job_shape(job, None) != shape
    monkeypatch.delenv("TZ")
    real = importlib.metadata.version
    for library in ("pyarrow", "polars", "sqlglot"):
        with monkeypatch.context() as patched:
            patched.setattr(
                importlib.metadata,
                "version",
                lambda name, library=library: "0.0.1" if name == library else real(name),
            )
            assert job_shape(job, None) != shape, library


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on loopback serving a folder."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
        server.shutdown()
        thread.join()


def test_a_source_over_http_is_answered_from_the_seal_of_its_download(
    tmp_path, emulator, cli, config, web
) -> None:
    """The proof is of the downloaded copy: the job's own path is a URL, no file."""
    base, folder = web
    write_csv(folder / "list.csv", rows())
    job = job_file(tmp_path, source={"path": f"{base}/list.csv"})
    assert not quick(run(cli, job, config))
    assert quick(run(cli, job, config))


def test_a_full_refresh_is_never_sealed(tmp_path, emulator, cli, config) -> None:
    job = job_file(tmp_path)
    write_csv(tmp_path / "list.csv", rows())
    run(cli, job, config)
    assert seal_path(tmp_path / "state" / "list.parquet").exists()
    refreshed = run(cli, job, config, "--full-refresh")
    assert "never sealed: a full refresh rebuilds everything" in refreshed["route_reason"]
    assert not seal_path(tmp_path / "state" / "list.parquet").exists()
    assert not quick(run(cli, job, config))  # read in full, then sealed again
    assert quick(run(cli, job, config))
