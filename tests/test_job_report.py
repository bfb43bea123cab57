"""A job's report, built once from what its phases reached (sync/job/report.py): each
value's figures land in their fields, and the status and exit code are decided there."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import make_job
from sync.config import Job, load_job
from sync.console.progress import NullProgress
from sync.core.fold import fold_array
from sync.core.keys import KEY_TYPE, collect_keys, distinct
from sync.core.plan import Holding, make_plan
from sync.errors import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_USAGE,
    KeyRefusedError,
    RetriableApiError,
    SourceError,
)
from sync.job.context import Connection, Given, Planned, Reached, Read, RunOptions, Sent
from sync.job.fallback import Reload
from sync.job.report import report_of
from sync.job.route import decide, facts_of
from sync.report.model import Requests
from sync.report.phases import PhaseTimer
from sync.send.lookup import LookupStats
from sync.send.push import PushResult
from sync.state.store import store_for

HELD = [f"{n:08d}" for n in range(100)]


def _given(tmp_path: Path, **options: bool) -> Given:
    job = load_job(
        make_job(
            tmp_path,
            targets={"identify_by": "id", "columns": ["target_id"]},
            sync={"max_removed_ratio": 1.0},
        )
    )
    return Given(
        job,
        RunOptions(**options),
        decide(facts_of(job)),
        store_for(job),
        Connection(lambda: pytest.fail("the report makes no call")),
        1,
        threading.Event(),
        NullProgress(),
        PhaseTimer({"read": 0.5}),
    )


def _planned(job: Job, keep: int) -> Planned:
    """The file keeps HELD's first ``keep`` ids, the state holds HELD: removals."""
    keyset = distinct(collect_keys(pa.table({"target_id": HELD[:keep]}), job.targets))
    holding = Holding(pa.array(HELD, KEY_TYPE))
    folded = fold_array(keyset.keys, holding.keys)
    plan = make_plan(holding, folded, job.sync, by_id=True)
    keyset = replace(keyset, keys=pa.array([], KEY_TYPE), folded=folded.count)
    return Planned(keyset, holding, folded, plan, "whole", "read whole")


def _looked(lookups: int, not_found: int) -> LookupStats:
    stats = LookupStats()
    stats.count(lookups=lookups, not_found=not_found, several=1, kept_by_twin=2)
    return stats


def test_a_job_that_failed_while_reading_has_its_rows_but_not_its_keys(tmp_path: Path) -> None:
    given = _given(tmp_path)
    keyset = collect_keys(pa.table({"target_id": [HELD[1], HELD[1], ""]}), given.job.targets)
    at = Reached(given.route, phase="plan", read=Read(keyset))
    report = report_of(given, at, error=SourceError("bad"), duration_s=1.25)
    assert (report.rows_read, report.rows_rejected, report.keys) == (3, 1, 0)
    assert (report.status, report.exit_code, report.phase) == ("failed", EXIT_USAGE, "plan")
    assert report.error == "bad" and report.error_kind == "source" and report.duration_s == 1.25
    assert report.phase_s == {"read": 0.5} and report.route == given.route.name
    # Folded as it was read: the keys are distinct, and counted.
    folded = replace(keyset, keys=keyset.keys[:1], folded=1)
    at = replace(at, read=Read(folded, folded=fold_array(keyset.keys[:1], pa.array([], KEY_TYPE))))
    report = report_of(given, at, error=SourceError("bad"))
    assert (report.keys, report.duplicate_keys) == (1, 1)
    # Folded by the state's print, then failed before the plan: the route it took.
    at = replace(at, read=replace(at.read, printed="the same print"))
    report = report_of(given, at, error=SourceError("bad"))
    assert (report.route, report.route_reason) == ("printed", "the same print")


def test_two_pushes_and_the_reload_that_replaced_the_first(tmp_path: Path) -> None:
    given = _given(tmp_path)
    planned = _planned(given.job, keep=90)
    reload = Reload(replace(planned.plan, action="reload", reason="instead"), "no look-ups")
    first = Sent(planned.plan, PushResult(3, 3, targets_removed=2, lookups=_looked(5, 1)))
    second = Sent(reload.plan, PushResult(90, 89))
    at = Reached(given.route, "settle", planned=planned, sent=(first, second), reload=reload)
    at = replace(at, notices=("b", "c"))
    report = report_of(given, at)
    assert (report.status, report.exit_code, report.phase) == ("succeeded", 0, "done")
    assert (report.action, report.reason, report.removed) == ("reload", "instead", 10)
    assert (report.targets_sent, report.targets_accepted, report.targets_removed) == (93, 92, 2)
    assert (report.lookups, report.lookups_not_found, report.lookups_several) == (5, 1, 1)
    assert report.lookups_kept_by_twin == 2 and report.lookup_fallback == "no look-ups"
    assert report.notices == ["b", "c"]  # what NP6 said around the last push
    assert (report.route, report.route_reason) == ("whole", "read whole")
    assert report.requests == Requests()  # no client was made


def test_a_refused_reload_keeps_the_plan_it_would_have_replaced(tmp_path: Path) -> None:
    given = _given(tmp_path)
    planned = _planned(given.job, keep=50)
    reload = Reload(replace(planned.plan, action="reload"), "no look-ups", ("too many",))
    at = Reached(given.route, "fallback", planned=planned, reload=reload, changing=True)
    report = report_of(given, at, error=reload.refused())
    assert (report.action, report.refusals) == (planned.plan.action, ["too many"])
    assert (report.status, report.exit_code, report.phase) == ("refused", EXIT_REFUSED, "fallback")


def test_the_status_follows_how_far_the_job_got(tmp_path: Path) -> None:
    given = _given(tmp_path)
    planned = _planned(given.job, keep=100)
    at = Reached(given.route, "settle", planned=planned, rejects_file="r.csv")
    report = report_of(given, at)
    assert (report.status, report.action, report.rejects_file) == ("no_changes", "none", "r.csv")
    judged = replace(at, phase="plan", refusals=("too few rows",))
    report = report_of(given, judged)
    assert (report.status, report.exit_code, report.phase) == ("refused", EXIT_REFUSED, "plan")
    assert report_of(_given(tmp_path, dry_run=True), at).status == "planned"


def test_a_usage_failure_once_changing_is_a_failed_run_but_a_refused_key_says_itself(
    tmp_path: Path,
) -> None:
    given = _given(tmp_path)
    before = Reached(given.route, "preflight")
    assert report_of(given, before, error=SourceError("x")).exit_code == EXIT_USAGE
    changing = replace(before, phase="send", changing=True)
    assert report_of(given, changing, error=SourceError("x")).exit_code == EXIT_FAILED
    assert (
        report_of(given, changing, error=KeyRefusedError("PUT /segments/1", 401)).exit_code
        == EXIT_USAGE
    )
    failed = report_of(given, changing, error=RetriableApiError("PUT /segments/1", 503))
    assert (failed.status, failed.exit_code, failed.phase) == ("failed", EXIT_FAILED, "send")
    assert failed.error == "PUT /segments/1: HTTP 503" and failed.error_kind == "api"
