"""The one orchestrator: the jobs of one run, each along its route, whoever asked.

The command line (``run``, ``plan``, ``--parallel``), the Python API (``sync.run``,
``sync.plan``) and the demo all call ``run_entries``: they only say what they were handed
(``Entry``: a job and, for a fan-out or a DataFrame, its one shared read) and how to run
(``Request``), and render the ``RunReport`` it returns. Here, for every job alike: the
route (``sync.job.route``), a URL source downloaded, the seal tried, the run, the
read-back asked for, and the history line.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sync.console.logs import current_job
from sync.console.progress import NullProgress, Progress
from sync.errors import Np6SyncError, as_error
from sync.job.quick import quick_run
from sync.job.route import Route, decide, facts_of
from sync.report.model import JobReport, RunReport

if TYPE_CHECKING:
    from sync.config import Job, Settings
    from sync.job.fanout import SharedSource
    from sync.np6.client import NP6Client

# pyarrow, polars and requests are imported only by a job that runs in full: a job
# answered from its seal (sync/job/quick.py) finishes before they would have loaded.

log = logging.getLogger("np6sync")


@dataclass(frozen=True)
class Entry:
    """One job of the run as a door loaded it: its file (for messages), the job or the
    error that stops it, and the one read its fan-out or DataFrame shares."""

    path: str
    job: Job | Np6SyncError
    shared: SharedSource | None = None


@dataclass(frozen=True)
class Request:
    """How every job of one run is run."""

    settings: Settings
    connect: Callable[[], NP6Client]
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Callable[[str], Progress] = lambda name: NullProgress()
    dry_run: bool = False
    full_refresh: bool = False
    force: bool = False
    verify: bool = False  # read each segment back after a run that succeeded
    parallel: int = 1  # jobs side by side (a fan-out's segments stay in order)


@dataclass(frozen=True)
class Ran:
    report: RunReport
    jobs: dict[str, Job]  # the jobs that ran, by name (for the metrics' last success)


def run_entries(entries: Sequence[Entry], request: Request) -> Ran:
    """Run every entry; a fan-out's segments (one shared read) run in order, as one task."""
    groups: list[list[Entry]] = []
    for entry in entries:
        shared = entry.shared
        if groups and shared is not None and shared is groups[-1][-1].shared:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    tasks = [functools.partial(_group, request, group) for group in groups]
    if request.parallel > 1:
        from sync.job.parallel import in_parallel

        done = [one for ran in in_parallel(tasks, request.parallel) for one in ran]
    else:
        done = []
        for task in tasks:
            if request.stop.is_set():
                break
            done += task()
    report = RunReport([job_report for job_report, _ in done])
    return Ran(report, {job.name: job for _, job in done if job is not None})


def _group(request: Request, group: list[Entry]) -> list[tuple[JobReport, Job | None]]:
    """The jobs of one group in order (a fan-out's segments, or one job), until a stop."""
    done = []
    for index, entry in enumerate(group):
        one = _one(request, entry, segments=len(group))
        if one is None:
            break
        report, job = one
        shared = entry.shared
        if shared is not None:  # a fan-out's segment: its unmapped rows
            report = replace(report, rows_unmapped=shared.unmapped)
        done.append((report, job))
        later = group[index + 1 :]
        if shared is not None and all(other.shared is not shared for other in later):
            shared.release()  # after its last segment, the source's columns go
    return done


def _one(request: Request, entry: Entry, segments: int) -> tuple[JobReport, Job | None] | None:
    """Run, verify and record one job; every failure is in its report."""
    if request.stop.is_set():
        return None  # a stop keeps the jobs not yet begun from beginning
    job = entry.job
    if isinstance(job, Np6SyncError):
        from sync.config import job_identity

        return JobReport(*job_identity(entry.path)).fail(job, "job"), None
    # Side by side, every log line of the job names it (sync/console/logs.py).
    token = current_job.set(job.name) if request.parallel > 1 else None
    try:
        started_at = datetime.now(UTC)
        route = route_of(job, entry.shared, request, segments)
        log.debug("route: %s (%s)", route.name, route.reason, extra={"job": job.name})
        job_report = _downloaded_then_run(job, route, entry.shared, request)
        if request.verify and job_report.exit_code == 0:
            job_report = _verified(job, job_report, request.connect)
        if not request.dry_run:
            record_history(job, job_report, started_at, request)
    except Exception as failure:  # a bug in one job must not take the others down
        job_report = JobReport(job.name, job.segment_id).fail(as_error(failure, "finish the job"))
    finally:
        if token is not None:
            current_job.reset(token)
    return job_report, job


def route_of(job: Job, shared: SharedSource | None, request: Request, segments: int) -> Route:
    """The job's route, from what the door handed in (``sync.job.route`` decides)."""
    facts = facts_of(
        job,
        frame=shared is not None and shared.frame,
        segments=segments,
        fan_out=shared is not None and not shared.frame,
        full_refresh=request.full_refresh,
        dry_run=request.dry_run,
    )
    return decide(facts)


def _downloaded_then_run(
    job: Job, route: Route, shared: SharedSource | None, request: Request
) -> JobReport:
    """A URL source is downloaded once, then proven by its seal or read from there."""
    if not route.download:
        return _run(job, route, shared, request, None)
    from sync.read.remote import downloaded

    assert job.source_url is not None, "the route downloads URL sources only"
    try:
        with downloaded(job.source_url) as local:
            return _run(job, route, shared, request, local)
    except Np6SyncError as error:
        log.error("%s", error, extra={"job": job.name})
        return JobReport(job.name, job.segment_id).fail(error, "read")


def _run(
    job: Job, route: Route, shared: SharedSource | None, request: Request, local: Path | None
) -> JobReport:
    """The job answered from its seal when that proves nothing changed, else run in full."""
    media_type = request.settings.unicity_media_type
    account = request.settings.base_url.rstrip("/")
    if route.seal:
        source = local or job.source_path
        quick = quick_run(job, media_type=media_type, source=source, account=account)
        if quick is not None:
            return replace(quick, route_reason=f"{quick.route_reason}; {route.reason}")
    from sync.job.context import RunOptions
    from sync.job.run import run_job

    release_memory_promptly()
    options = RunOptions(
        dry_run=request.dry_run,
        full_refresh=request.full_refresh,
        force=request.force,
        media_type=media_type,
        downloaded=local,
        route=route,
        account=account,
    )
    return run_job(
        job,
        options,
        request.connect,
        concurrency=request.settings.concurrency,
        stop=request.stop,
        progress=request.progress(job.name),
        shared=shared,
    )


def record_history(job: Job, report: JobReport, started_at: datetime, request: Request) -> None:
    """One line per run beside the state; a full disk must not fail a sync that worked."""
    flags = [
        f for f, on in (("full-refresh", request.full_refresh), ("force", request.force)) if on
    ]
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


def _verified(job: Job, report: JobReport, connect: Callable[[], NP6Client]) -> JobReport:
    """The report, failed when the segment read back is not what the run left."""
    from sync.job.source import source_keys
    from sync.verify.listing import comparison_text, verify_job

    client = connect()
    try:
        result = verify_job(job, client, source_keys)
    except Exception as failure:  # the edge of the read-back: its failure is the job's
        return report.fail(as_error(failure, "read the segment back"), "verify")
    finally:
        client.close()
    if result.before.equal:
        return report
    from sync.errors import EXIT_FAILED

    error = comparison_text(result.before, result.listing)
    return replace(
        report,
        status="failed",
        exit_code=EXIT_FAILED,
        error=error,
        phase="verify",
        error_kind="different",
    )


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
