"""End to end: a job stopped or failed between its phases reports what the phases before
it found, as it did when they wrote into the report as they went (the rows once read, the
plan once planned, what the preflight said once NP6 was checked)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import SEGMENT, emails, make_job, settings_file, write_csv
from sync.errors import EXIT_FAILED, EXIT_USAGE, StateError

STOPPED = "stopped by a signal before anything was sent"


def signalled_after(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str, *, call: int = 1
) -> None:
    """SIGTERM, as the command line receives it, once ``module.name``'s ``call``-th call
    returns."""
    real = getattr(module, name)
    calls = []

    def then_a_signal(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(module, name, then_a_signal)


def failing_after(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str, error: Exception, *, call: int = 1
) -> None:
    real = getattr(cls, name)
    calls = []

    def fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(cls, name, fails)


@pytest.fixture
def run(cli, tmp_path: Path) -> Callable[..., dict[str, Any]]:  # type: ignore[no-untyped-def]
    config = settings_file(tmp_path)

    def run(job: Path, *extra: str, code: int = 0) -> dict[str, Any]:
        path = tmp_path / "report.json"
        result = cli("run", job, "--config", config, "--report-json", path, *extra)
        assert result.code == code, result.out + result.err
        got: dict[str, Any] = json.loads(path.read_text())["jobs"][0]
        return got

    return run


def test_a_stop_once_the_source_is_read_reports_its_rows(tmp_path, emulator, run, monkeypatch):
    import sync.job.run

    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [*emails(0, 40), [""]])
    signalled_after(monkeypatch, sync.job.run, "collect_job_keys")
    got = run(job, code=EXIT_FAILED)
    assert STOPPED in got["error"] and got["phase"] == "read"
    assert (got["rows_read"], got["rows_rejected"]) == (41, 1)
    assert got["rejects_by_reason"] == {"empty email": 1}
    assert emulator.calls == []


def test_a_stop_once_planned_reports_the_plan(tmp_path, emulator, run, monkeypatch) -> None:
    import sync.job.run

    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 40))
    assert run(job)["status"] == "succeeded"
    write_csv(tmp_path / "list.csv", emails(5, 50))
    emulator.reset_calls()
    signalled_after(monkeypatch, sync.job.run, "make_plan")
    got = run(job, code=EXIT_FAILED)
    assert STOPPED in got["error"] and got["phase"] == "plan"
    assert (got["rows_read"], got["keys"]) == (45, 45)
    assert (got["action"], got["added"], got["removed"]) == ("reload", 10, 5)
    assert got["reason"] and got["planned_requests"]["put"] == 1
    assert got["removal_costs"]
    assert emulator.calls == []


def test_a_stop_after_the_preflight_keeps_what_it_said(tmp_path, emulator, run, monkeypatch):
    import sync.verify.preflight

    # Append mode, no state, a segment already holding targets: the preflight says so.
    emulator.set_members(SEGMENT, {"someone@example.com"})
    job = make_job(tmp_path, sync={"mode": "append"})
    write_csv(tmp_path / "list.csv", emails(0, 40))
    signalled_after(monkeypatch, sync.verify.preflight, "preflight")
    got = run(job, code=EXIT_FAILED)
    assert STOPPED in got["error"] and got["phase"] == "preflight"
    [notice] = got["notices"]
    assert "np6-sync has no state for it" in notice
    assert emulator.members(SEGMENT) == {"someone@example.com"}


def test_a_journal_that_cannot_be_opened_keeps_what_the_preflight_said(
    tmp_path, emulator, run, monkeypatch
) -> None:
    from sync.state.local import StateStore

    emulator.set_members(SEGMENT, {"someone@example.com"})
    job = make_job(tmp_path, sync={"mode": "append"})
    write_csv(tmp_path / "list.csv", emails(0, 40))
    failing_after(monkeypatch, StateStore, "open_journal", StateError("the disk is full"))
    got = run(job, code=EXIT_USAGE)
    assert "the disk is full" in got["error"] and got["phase"] == "preflight"
    assert ["np6-sync has no state for it" in notice for notice in got["notices"]] == [True]


def test_a_read_back_that_fails_fails_the_job(tmp_path, emulator, run, monkeypatch) -> None:
    """--verify after a run that worked: the read-back's failure replaces the report."""
    import sync.verify.listing

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the segment cannot be read back")

    monkeypatch.setattr(sync.verify.listing, "verify_job", unreachable)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 40))
    got = run(job, "--verify", code=EXIT_USAGE)
    assert (got["status"], got["phase"], got["action"], got["targets_sent"]) == (
        "failed",
        "verify",
        "append",
        40,
    )
    assert "the segment cannot be read back" in got["error"]
