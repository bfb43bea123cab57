"""`np6-sync run` and `np6-sync plan`: each job's segment made equal to its source (or,
for plan, what that would take)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sync.commands.common import (
    StopOnSignals,
    config_path,
    connector,
    is_stdout,
    job_identity,
    load_jobs,
    report_failure,
    stdout_outputs,
)
from sync.config import Job, Settings, load_settings
from sync.console.logs import current_job, is_terminal, resolve_format, say
from sync.console.progress import Board, Progress, make_progress
from sync.errors import EXIT_FAILED, Np6SyncError, as_error, translated
from sync.fanout import Reader, SharedSource
from sync.quick import quick_run
from sync.report.markdown import write_summary
from sync.report.model import JobReport, RunReport
from sync.report.table import render_table

if TYPE_CHECKING:
    from sync.np6.client import NP6Client

# pyarrow, polars and requests are imported only by a job that runs in full: a job
# answered from its seal (sync/quick.py) finishes before they would have loaded.

log = logging.getLogger("np6sync")
Entry = tuple[str, Job | Np6SyncError, Reader]


@dataclass(frozen=True)
class _Jobs:
    """What every job of one `run` shares."""

    args: argparse.Namespace
    settings: Settings
    connect: Callable[[], NP6Client]
    stop: threading.Event
    progress: Callable[[str], Progress]

    @property
    def parallel(self) -> int:
        return int(getattr(self.args, "parallel", 1) or 1)


def run(args: argparse.Namespace) -> int:
    phase = "settings"
    try:
        settings = load_settings(config_path(args.config))
        phase = "key"
        connect = connector(settings, needed=not args.dry_run)
        phase = "job"
        entries = load_jobs(args.jobs, segment=getattr(args, "segment", None))
    except Np6SyncError as error:
        return _failed_before_jobs(args, error, phase)
    with StopOnSignals() as stop:
        jobs = _Jobs(args, settings, connect, stop, _progress_for(args))
        # A fan-out's segments share one read source: they run in order, as one task.
        groups: list[list[Entry]] = []
        for entry in entries:
            if groups and isinstance(entry[2], SharedSource) and entry[2] is groups[-1][-1][2]:
                groups[-1].append(entry)
            else:
                groups.append([entry])
        tasks = [functools.partial(_group, jobs, group) for group in groups]
        if jobs.parallel > 1:
            from sync.commands.parallel import in_parallel

            done = [one for ran in in_parallel(tasks, jobs.parallel) for one in ran]
        else:
            done = []
            for task in tasks:
                if stop.is_set():
                    break
                done += task()
    report = RunReport([job_report for job_report, _ in done])
    ran = {job.name: job for _, job in done if job is not None}
    return _write_reports(report, args, ran)


def _failed_before_jobs(args: argparse.Namespace, error: Np6SyncError, phase: str) -> int:
    """The settings, the key or the job list failed: no job ran, yet each job file still
    gets its report and metrics, with its name and segment when the file tells them."""
    report_failure("", error)
    failed = [JobReport(*job_identity(path)).fail(error, phase) for path in args.jobs]
    return _write_reports(RunReport(failed), args, {})


def _group(jobs: _Jobs, group: list[Entry]) -> list[tuple[JobReport, Job | None]]:
    """The jobs of one group in order (a fan-out's segments, or one job), until a stop."""
    done = []
    for index, (path, job, read) in enumerate(group):
        one = _one(jobs, path, job, read)
        if one is None:
            break
        done.append(one)
        _segment_done(read, one[0], group[index + 1 : index + 2])
    return done


def _segment_done(read: Reader, report: JobReport, following: Sequence[Entry]) -> None:
    """A fan-out's segment: its count of unmapped rows; after the last, the source goes."""
    if isinstance(read, SharedSource):
        report.rows_unmapped = read.unmapped
        if not any(other is read for _, _, other in following):
            read.release()


def _one(
    jobs: _Jobs, path: str, job: Job | Np6SyncError, read: Reader
) -> tuple[JobReport, Job | None] | None:
    """Run, verify and record one job; every failure is in its report."""
    if jobs.stop.is_set():
        return None  # a stop keeps the jobs not yet begun from beginning
    if isinstance(job, Np6SyncError):
        return JobReport(*job_identity(path)).fail(job, "job"), None
    # Side by side, every log line of the job names it (sync/console/logs.py).
    token = current_job.set(job.name) if jobs.parallel > 1 else None
    try:
        started_at = datetime.now(UTC)
        job_report = _run_one(job, jobs, read)
        if jobs.args.verify and job_report.exit_code == 0:
            _verify_after_run(job, job_report, jobs.connect)
        if not jobs.args.dry_run:
            _record_history(job, job_report, started_at, jobs.args)
    except Exception as failure:  # a bug in one job must not take the others down
        job_report = JobReport(job.name, job.segment_id).fail(as_error(failure, "finish the job"))
    finally:
        if token is not None:
            current_job.reset(token)
    return job_report, job


def _progress_for(args: argparse.Namespace) -> Callable[[str], Progress]:
    """Each job's progress: side by side on a terminal, one line per running job."""
    parallel = int(getattr(args, "parallel", 1) or 1)
    terminal = is_terminal(sys.stderr) and resolve_format(args.log_format, sys.stderr) == "text"
    if parallel > 1 and terminal and not args.quiet:
        return Board(sys.stderr).line
    return lambda job: make_progress(sys.stderr, args.log_format, quiet=args.quiet)


def _run_one(job: Job, jobs: _Jobs, read: Reader) -> JobReport:
    """A URL source is downloaded once, then proven by its seal or read from there."""
    if job.source_url is None or job.state_url is not None or isinstance(read, SharedSource):
        return _run_from(job, jobs, read, None)
    from sync.read.remote import downloaded

    try:
        with downloaded(job.source_url) as local:
            return _run_from(job, jobs, read, local)
    except Np6SyncError as error:
        log.error("%s", error, extra={"job": job.name})
        return JobReport(job.name, job.segment_id).fail(error, "read")


def _run_from(job: Job, jobs: _Jobs, read: Reader, local: Path | None) -> JobReport:
    """The job answered from its seal when that proves nothing changed, else run in full."""
    args, settings = jobs.args, jobs.settings
    media_type = settings.unicity_media_type
    if not args.dry_run and not isinstance(read, SharedSource):  # a fan-out is never sealed
        quick = quick_run(
            job, full_refresh=args.full_refresh, media_type=media_type, downloaded=local
        )
        if quick is not None:
            return quick
    from sync.runner import RunOptions, run_job

    release_memory_promptly()
    flags = {"dry_run": args.dry_run, "full_refresh": args.full_refresh, "force": args.force}
    options = RunOptions(**flags, media_type=media_type, downloaded=local)
    return run_job(
        job,
        options,
        jobs.connect,
        concurrency=settings.concurrency,
        stop=jobs.stop,
        progress=jobs.progress(job.name),
        read=read,
    )


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

    table = render_table(report)
    if stdout_outputs(args):  # stdout holds a report: the table is for the person, on stderr
        say(table)
    else:
        print(table)
    publish_metrics(args, report.jobs, jobs)
    code = report.exit_code
    if args.report_json:
        code = max(code, _write_report_json(report, args.report_json))
    try:
        write_summary(report, args.summary_md, os.environ)
    except OSError as error:
        log.warning("the Markdown summary was not written: %s", error)
    if args.plan_only and args.detailed_exitcode:
        if code:
            return EXIT_FAILED
        return 2 if any(job.action != "none" for job in report.jobs) else 0
    return code


def _write_report_json(report: RunReport, path: Path) -> int:
    """The report as JSON in ``path`` (``-``: stdout); the exit code a failure adds."""
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    if is_stdout(path):
        sys.stdout.write(text)
        return 0
    try:
        with translated("write the report"):
            path.write_text(text)
    except Np6SyncError as error:
        report_failure(str(path), error)
        return error.exit_code
    return 0


def _record_history(
    job: Job, report: JobReport, started_at: datetime, args: argparse.Namespace
) -> None:
    """One line per run beside the state; a full disk must not fail a sync that worked."""
    flags = [f for f, on in (("full-refresh", args.full_refresh), ("force", args.force)) if on]
    command = " ".join(["run", *(f"--{f}" for f in flags)])
    try:
        if job.state_url is None:  # beside a local state, without loading its pyarrow reader
            from sync.state.history import append_history

            append_history(job.state_path, report, started_at=started_at, command=command)
        else:
            from sync.state.store import store_for

            store_for(job).append_history(report, started_at=started_at, command=command)
    except (OSError, Np6SyncError) as error:
        log.warning("the run history was not written: %s", error, extra={"job": job.name})


def _verify_after_run(job: Job, report: JobReport, connect: Callable[[], NP6Client]) -> None:
    from sync.commands.verify import comparison_text
    from sync.verify import verify_job

    client = connect()
    try:
        result = verify_job(job, client)
    except Exception as failure:
        report.fail(as_error(failure, "read the segment back"), "verify")
        return
    finally:
        client.close()
    if not result.before.equal:
        report.status, report.exit_code = "failed", EXIT_FAILED
        report.error = comparison_text(result.before, result.listing)
        report.phase, report.error_kind = "verify", "different"


_released = threading.Lock()


def release_memory_promptly() -> None:
    """Use jemalloc, returning freed memory at once, for Arrow's buffers.

    Arrow's default pool (mimalloc) keeps freed memory in the heap of the thread that
    allocated it, so what the CSV reader's threads freed is not reused for the state and
    the diff: at ten million rows that makes a peak of ~2.9 GiB instead of ~2.0 GiB.
    ARROW_DEFAULT_MEMORY_POOL, when set, still decides.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    with _released:  # once, before the first job's reader allocates: jobs run side by side
        _use_jemalloc()


@functools.cache
def _use_jemalloc() -> None:
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pass  # a pyarrow built without jemalloc keeps its default
