"""The quick path: an unchanged file is answered from the state's seal, and any doubt
reads the file again. Through the real CLI against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SEGMENT, make_job, run_process, settings_file, write_csv
from conftest import run_job as run
from sync.emulator import Emulator
from sync.state.seal import file_digest, seal_path

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
