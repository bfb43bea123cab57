"""`np6-sync run` and `np6-sync plan`: each job's segment made equal to its source (or,
for plan, what that would take)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sync.commands.common import (
    StopOnSignals,
    config_path,
    connector,
    load_jobs,
    report_failure,
)
from sync.commands.verify import comparison_text
from sync.config import Job, load_settings
from sync.console.progress import make_progress
from sync.errors import EXIT_FAILED, Np6SyncError, as_error, translated
from sync.fanout import Reader
from sync.np6.client import NP6Client
from sync.report.markdown import write_summary
from sync.report.model import JobReport, RunReport
from sync.report.table import render_table
from sync.runner import RunOptions, run_job
from sync.state.store import store_for

log = logging.getLogger("np6sync")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config))
    release_memory_promptly()
    options = RunOptions(dry_run=args.dry_run, full_refresh=args.full_refresh, force=args.force)
    connect = connector(settings, needed=not args.dry_run)
    report = RunReport()
    loaded: dict[str, Job] = {}
    with StopOnSignals() as stop:
        entries = load_jobs(args.jobs, segment=getattr(args, "segment", None))
        for index, (path, job, read) in enumerate(entries):
            if stop.is_set():
                break
            if isinstance(job, Np6SyncError):
                report.jobs.append(
                    JobReport(Path(path).stem, error=str(job), exit_code=job.exit_code)
                )
                continue
            loaded[job.name] = job
            started_at = datetime.now(UTC)
            job_report = run_job(
                job,
                options,
                connect,
                concurrency=settings.concurrency,
                stop=stop,
                progress=make_progress(sys.stderr, args.log_format, quiet=args.quiet),
                read=read,
            )
            _segment_done(read, job_report, entries[index + 1 : index + 2])
            if args.verify and job_report.exit_code == 0:
                _verify_after_run(job, job_report, connect)
            report.jobs.append(job_report)
            if not options.dry_run:
                _record_history(job, job_report, started_at, args)
    return _write_reports(report, args, loaded)


def _segment_done(
    read: Reader, report: JobReport, following: Sequence[tuple[str, object, Reader]]
) -> None:
    """A fan-out's segment: its count of unmapped rows; after the last, the source goes."""
    from sync.fanout import SharedSource

    if isinstance(read, SharedSource):
        report.rows_unmapped = read.unmapped
        if not any(other is read for _, _, other in following):
            read.release()


def plan(args: argparse.Namespace) -> int:
    """`plan`; with --detailed-exitcode, as Terraform: 0 nothing to do, 2 changes pending,
    1 for every failure (usage, job, source, state, a safeguard's refusal)."""
    if not args.detailed_exitcode:
        return run(args)
    try:
        return run(args)
    except Exception as failure:
        report_failure("", as_error(failure, "plan"))
        return EXIT_FAILED


def _write_reports(report: RunReport, args: argparse.Namespace, jobs: dict[str, Job]) -> int:
    from sync.commands.metrics import publish_metrics

    print(render_table(report))
    publish_metrics(args, report.jobs, jobs)
    code = report.exit_code
    if args.report_json:
        try:
            with translated("write the report"):
                args.report_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except Np6SyncError as error:
            report_failure(str(args.report_json), error)
            code = max(code, error.exit_code)
    try:
        write_summary(report, args.summary_md, os.environ)
    except OSError as error:
        log.warning("the Markdown summary was not written: %s", error)
    if args.plan_only and args.detailed_exitcode:
        if code:
            return EXIT_FAILED
        return 2 if any(job.action != "none" for job in report.jobs) else 0
    return code


def _record_history(
    job: Job, report: JobReport, started_at: datetime, args: argparse.Namespace
) -> None:
    """One line per run beside the state; a full disk must not fail a sync that worked."""
    flags = [f for f, on in (("full-refresh", args.full_refresh), ("force", args.force)) if on]
    command = " ".join(["run", *(f"--{f}" for f in flags)])
    try:
        store_for(job).append_history(report, started_at=started_at, command=command)
    except (OSError, Np6SyncError) as error:
        log.warning("the run history was not written: %s", error, extra={"job": job.name})


def _verify_after_run(job: Job, report: JobReport, connect: Callable[[], NP6Client]) -> None:
    from sync.verify import verify_job

    client = connect()
    try:
        result = verify_job(job, client)
    except Exception as failure:
        error = as_error(failure, "read the segment back")
        report.status, report.exit_code, report.error = "failed", error.exit_code, str(error)
        return
    finally:
        client.close()
    if not result.before.equal:
        report.status, report.exit_code = "failed", EXIT_FAILED
        report.error = comparison_text(result.before, result.listing)


def release_memory_promptly() -> None:
    """Use jemalloc, returning freed memory at once, for Arrow's buffers.

    Arrow's default pool (mimalloc) keeps freed memory in the heap of the thread that
    allocated it, so what the CSV reader's threads freed is not reused for the state and
    the diff: at ten million rows that makes a peak of ~2.9 GiB instead of ~2.0 GiB.
    ARROW_DEFAULT_MEMORY_POOL, when set, still decides.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pass  # a pyarrow built without jemalloc keeps its default
