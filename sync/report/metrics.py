"""The run report as Prometheus series, the way batch jobs are watched. Pure.

Every series is a gauge of the job's last run, labelled with the job and its segment
once each: in a textfile as labels, in a push by the group (the Pushgateway adds the
grouping key's labels to every series it holds, so the series carry none of their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from sync.report.model import JobReport

PREFIX = "np6sync_"
LABELS = ("job", "segment")
SUCCESS = ("succeeded", "no_changes")


@dataclass(frozen=True)
class Series:
    name: str
    help: str


# Each series, in the order docs/operations.md lists them; the values come from ``_values``.
SERIES = (
    Series("last_run_timestamp_seconds", "When the last run ended (Unix time)"),
    Series(
        "last_success_timestamp_seconds",
        "When the last run that succeeded or found nothing to do ended (0: never)",
    ),
    Series("exit_code", "The exit code of the last run (0 ok, 1 failed, 2 input, 3 refused)"),
    Series("duration_seconds", "How long the last run took"),
    Series("rows_read", "Rows read from the source"),
    Series("rows_rejected", "Rows rejected (no usable key)"),
    Series("keys", "Distinct keys in the source"),
    Series("targets_added", "Targets the plan added"),
    Series("targets_removed", "Targets the plan removed"),
    Series("requests", "Requests sent to NP6, by method"),
    Series("retries", "Requests retried"),
    Series("rate_limit_wait_seconds", "Seconds spent waiting on NP6's rate limit"),
    Series("pending_removals", "Deferred removals still in the segment"),
    Series(
        "last_run_info",
        "1, labelled with the last run's status, the phase it reached and, when it failed, "
        "its reason (error_kind in the JSON report)",
    ),
)
INFO_LABELS = ("status", "phase", "reason")
METHODS = ("put", "delete", "post")


@dataclass(frozen=True)
class JobRun:
    """One job's report, when it ended, and the newest success the history knows of:
    Unix time, 0 when no run succeeded yet, None when the history could not be read
    (then the series is left out rather than made up)."""

    report: JobReport
    finished_at: datetime
    last_success: float | None


def segment_label(report: JobReport) -> str:
    """The segment id; empty only when the job file did not tell it."""
    return "" if report.segment_id is None else str(report.segment_id)


def registry_for(runs: Sequence[JobRun], *, grouped: bool = False) -> CollectorRegistry:
    """The jobs' series in one registry: a textfile holds every job, labelled with it; a
    push one job, whose group (``grouped``) gives the job and segment labels."""
    registry = CollectorRegistry()
    own = () if grouped else LABELS
    extra = {"requests": ("method",), "last_run_info": INFO_LABELS}
    gauges = {
        s.name: Gauge(PREFIX + s.name, s.help, (*own, *extra.get(s.name, ())), registry=registry)
        for s in SERIES
    }
    for run in runs:
        report = run.report
        labels = {} if grouped else {"job": report.name, "segment": segment_label(report)}
        for name, value in _values(run).items():
            gauge = gauges[name]
            (gauge.labels(**labels) if labels else gauge).set(value)
        for method in METHODS:
            count = getattr(report.requests, method)
            gauges["requests"].labels(**labels, method=method).set(count)
        info = {
            "status": report.status,
            "phase": report.phase_reached(),
            "reason": report.error_kind or "",
        }
        gauges["last_run_info"].labels(**labels, **info).set(1)
    return registry


def _values(run: JobRun) -> dict[str, float]:
    report = run.report
    last_success = run.last_success
    if report.status in SUCCESS:
        # This run, whether or not the history could record it.
        last_success = run.finished_at.timestamp()
    values = {
        "last_run_timestamp_seconds": run.finished_at.timestamp(),
        "exit_code": report.exit_code,
        "duration_seconds": report.duration_s,
        "rows_read": report.rows_read,
        "rows_rejected": report.rows_rejected,
        "keys": report.keys,
        "targets_added": report.added,
        "targets_removed": report.removed,
        "retries": report.requests.retries,
        "rate_limit_wait_seconds": report.rate_limit_wait_s,
        "pending_removals": report.pending_removals,
    }
    if last_success is not None:
        values["last_success_timestamp_seconds"] = last_success
    return {name: float(value) for name, value in values.items()}
