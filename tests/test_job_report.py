"""A job's report, built once from what its phases reached (sync/job/report.py): each
value's figures land in their fields, and the status and exit code are decided there."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import make_job, np6_client
from sync.config import Job, load_job
from sync.console.progress import NullProgress
from sync.core.fold import fold_array
from sync.core.keys import KEY_TYPE, collect_keys, distinct
from sync.core.plan import Holding, make_plan
from sync.emulator import Emulator
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


def _given(
    tmp_path: Path,
    job_file: dict[str, Any] | None = None,
    connection: Connection | None = None,
    **options: bool,
) -> Given:
    job = load_job(
        make_job(
            tmp_path,
            targets={"identify_by": "id", "columns": ["target_id"]},
            sync={"max_removed_ratio": 1.0, "chunk_size": 7},
            **(job_file or {}),
        )
    )
    return Given(
        job,
        RunOptions(**options),
        decide(facts_of(job)),
        store_for(job),
        connection or Connection(lambda: pytest.fail("the report makes no call")),
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
    planned_only = report_of(_given(tmp_path, dry_run=True), at)
    assert (planned_only.status, planned_only.phase, planned_only.exit_code) == (
        "planned",
        "done",
        0,
    )


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


def test_the_plans_figures_what_it_would_cost_and_its_deferred_removals(tmp_path: Path) -> None:
    given = _given(tmp_path, {"normalization": {"fields": {"34": ["FRA"]}}})
    assert given.job.segment_id is not None
    planned = _planned(given.job, keep=90)  # 10 leave, by id: one DELETE each
    plan = planned.plan
    pending = pa.table({"key": HELD[:3], "since": ["2026-12-03", "2026-11-30", "2026-12-01"]})
    plan = replace(plan, send=pa.array(HELD[:15], KEY_TYPE), pending=pending, lookups=4)
    report = report_of(given, Reached(given.route, "plan", planned=replace(planned, plan=plan)))
    assert (report.name, report.segment_id, report.duration_s) == (
        given.job.name,
        given.job.segment_id,
        0.0,
    )
    assert report.planned_requests == Requests(put=3, delete=10, post=1, get=4)  # 15 in 7s
    assert report.removal_costs == {
        name: {"requests": cost.requests, "incomplete_requests": cost.incomplete_requests}
        for name, cost in plan.costs.items()
    }
    assert set(report.removal_costs) >= {"reload", "per_target"}
    assert (report.pending_removals, report.oldest_pending_removal) == (3, "2026-11-30")
    # Nothing to change: no normalization either, and nothing deferred.
    unchanged = _planned(given.job, keep=100)
    report = report_of(given, Reached(given.route, "plan", planned=unchanged))
    assert report.action == "none"
    assert report.planned_requests == Requests()
    assert (report.pending_removals, report.oldest_pending_removal) == (0, None)


def test_the_requests_are_the_clients_counts(tmp_path: Path, emulator: Emulator) -> None:
    client = np6_client(emulator)
    given = _given(tmp_path, connection=Connection(lambda: client))
    emulator.inject("503")  # one retry
    given.np6().add_targets(1234, ["a@example.com"])
    given.np6().describe_segment(1234)
    at = Reached(given.route, "send", changing=True)
    report = report_of(given, at)
    assert report.requests == Requests(put=1, delete=0, post=0, get=1, retries=1)
    assert report.lowest_concurrency == client.gate.lowest
    assert (report.retry_wait_s, report.rate_limit_wait_s) == (
        client.stats.retry_wait_s,
        client.stats.rate_limit_wait_s,
    )


def test_a_client_that_made_no_look_up_counts_none(tmp_path: Path, emulator: Emulator) -> None:
    client = np6_client(emulator)
    given = _given(tmp_path, connection=Connection(lambda: client))
    given.np6().add_targets(1234, ["a@example.com"])
    report = report_of(given, Reached(given.route, "send", changing=True))
    assert report.requests == Requests(put=1, delete=0, post=0, get=0, retries=0)
