"""One job, top to bottom: read, key, plan, check, push, save, report."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sync.config import Job
from sync.console.progress import NullProgress, Progress
from sync.core.hashing import first_distinct, isin
from sync.core.keys import KeySet, build_keys, collect_keys, concat, distinct
from sync.core.plan import Holding, Plan, check_safeguards, make_plan
from sync.errors import EXIT_FAILED, EXIT_REFUSED, Np6SyncError, StateError
from sync.read.sources import SourceSpec, SourceTable, read_source
from sync.report.model import JobReport, Requests
from sync.state.files import atomic_write
from sync.state.store import Store, store_for

if TYPE_CHECKING:
    from sync.np6.client import NP6Client
    from sync.push import PushResult
    from sync.state.local import Journal

log = logging.getLogger("np6sync.run")


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    full_refresh: bool = False
    force: bool = False


def run_job(
    job: Job,
    options: RunOptions,
    connect: Callable[[], NP6Client],
    *,
    concurrency: int = 4,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> JobReport:
    """Sync one job. Never raises for the job's own failures: the report carries them."""
    report = JobReport(job.name, job.segment_id)
    timer = PhaseTimer(report.phase_s)
    started = time.monotonic()
    client: NP6Client | None = None
    try:
        store = store_for(job)
        # Lock first: a second run must stop at once, not after reading a large file.
        with contextlib.nullcontext() if options.dry_run else store.lock(job.name):
            with timer("read"):
                source = _read_source(job)
            with timer("keys"):
                collected = collect_keys(source.table, job.targets, source.first_row)
                del source  # the source's columns are not needed any more: free them first
                keyset = distinct(collected)
                del collected
            _count_keys(report, keyset)
            with timer("state_read"):
                holding = _load_holding(store, options)
            with timer("diff"):
                plan = make_plan(
                    holding,
                    keyset.keys,
                    job.sync,
                    by_id=job.targets.identify_by == "id",
                    full_refresh=options.full_refresh,
                )
            _count_plan(report, plan, job)
            log.info(
                "plan: %s (%s)",
                plan.action,
                plan.reason,
                extra={
                    "job": job.name,
                    "phase": "plan",
                    "counts": {
                        "rows": keyset.rows_read,
                        "rejected": keyset.rows_rejected,
                        "keys": len(keyset.keys),
                        "added": plan.added,
                        "removed": plan.removed,
                    },
                },
            )
            if not options.dry_run:
                store.clean_leftovers()
                report.rejects_file = _write_rejects(job, keyset)
            report.refusals = [] if options.force else check_safeguards(plan, keyset, job.sync)
            if report.refusals:
                report.status, report.exit_code = "refused", EXIT_REFUSED
            elif options.dry_run:
                report.status = "planned"
            elif plan.action == "none":
                if store.has_journal() or plan.pending_changed:
                    with timer("state_write"):
                        # Folds what an interrupted run left; records deferred removals.
                        store.save(holding.keys, plan.pending)
                report.status = "no_changes"
            else:
                if not holding.known:
                    store.set_aside()
                client = connect()
                _apply(
                    job, holding, plan, store, client, report, concurrency, stop, progress, timer
                )
    except Np6SyncError as error:
        report.status, report.exit_code, report.error = "failed", error.exit_code, str(error)
        if error.exit_code == EXIT_REFUSED:
            report.status = "refused"
        request_id = getattr(error, "request_id", None)
        log.error("%s", error, extra={"job": job.name, "request_id": request_id})
    finally:
        if client is not None:
            _count_requests(report, client)
            client.close()
        report.duration_s = time.monotonic() - started
    log.info(
        "%s: %s",
        report.status,
        report.action,
        extra={
            "job": job.name,
            "phase": "done",
            "counts": {"sent": report.targets_sent, "accepted": report.targets_accepted},
            "duration_s": round(report.duration_s, 3),
        },
    )
    return report


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


def load_keys(job: Job) -> KeySet:
    source = _read_source(job)
    return build_keys(source.table, job.targets, source.first_row)


def _read_source(job: Job) -> SourceTable:
    if job.source_url is None:
        return read_source(_source_spec(job), job.targets.columns)
    from sync.read.remote import read_remote_source

    return read_remote_source(job.source_url, _source_spec(job), job.targets.columns)


def _source_spec(job: Job) -> SourceSpec:
    return SourceSpec(
        path=job.source_path,
        format=job.source_format,
        delimiter=job.source_delimiter,
        encoding=job.source.encoding,
    )


class PhaseTimer:
    """Adds the seconds spent in each phase to ``phases`` (the report's phase_s)."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.phases[phase] = round(self.phases.get(phase, 0.0) + elapsed, 4)


def _apply(
    job: Job,
    holding: Holding,
    plan: Plan,
    store: Store,
    client: NP6Client,
    report: JobReport,
    concurrency: int,
    stop: threading.Event | None,
    progress: Progress | None,
    timer: PhaseTimer,
) -> None:
    result = None
    with store.open_journal(plan.action) as journal:
        try:
            with timer("push"):
                result = push_plan(job, plan, client, journal, concurrency, stop, progress)
        finally:
            # Whatever happened, the state becomes exactly what NP6 acknowledged: the plan
            # applied, when every step was, else the journal's record of each step.
            with timer("state_write"):
                if result is not None and result.error is None and not result.interrupted:
                    store.save(_applied(holding, plan), plan.pending)
                else:
                    after = store.load()
                    # A clear that NP6 may or may not have done must stay on record in the
                    # journal, so that the next run reloads instead of trusting old keys.
                    if after.certain:
                        pending = plan.pending if plan.pending_changed else after.pending
                        store.save(after.keys, pending)
    report.targets_sent = result.targets_sent
    report.targets_accepted = result.targets_accepted
    report.targets_removed = result.targets_removed
    if result.error is not None:
        raise result.error
    if result.interrupted:
        report.status, report.exit_code = "failed", EXIT_FAILED
        report.error = (
            f"stopped by a signal after {result.targets_sent:,} of {len(plan.send):,} "
            "targets; the state holds what NP6 acknowledged and the next run goes on from there"
        )
        return
    if job.normalization is not None:
        client.normalize(job.segment_id, job.normalization.fields)
    report.status = "succeeded"


def push_plan(
    job: Job,
    plan: Plan,
    client: NP6Client,
    journal: Journal,
    concurrency: int,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Carry out ``plan`` for ``job``, journaling each acknowledged step."""
    from sync.push import push  # not needed by `validate`, which must start quickly

    return push(
        plan,
        client,
        journal,
        segment_id=job.segment_id,
        chunk_size=job.sync.chunk_size,
        concurrency=concurrency,
        unicity=job.targets.identify_by == "unicity",
        stop=stop,
        progress=progress or NullProgress(),
    )


def _applied(holding: Holding, plan: Plan) -> pa.Array:
    """What the segment holds once every step of ``plan`` was acknowledged."""
    if plan.clears:
        return plan.send
    keys = holding.keys
    if len(plan.remove):
        keys = pc.filter(keys, pc.invert(isin(keys, plan.remove)))
    if len(plan.send):
        keys = concat(keys, plan.send)
        if not holding.certain:  # every key was sent again, whatever the state held
            keys = first_distinct(keys)
    return keys


def _load_holding(store: Store, options: RunOptions) -> Holding:
    try:
        return store.load()
    except StateError:
        if not options.full_refresh:
            raise
        # A full refresh clears the segment anyway: the old state is not needed.
        return Holding(Holding.empty().keys, known=False)


def _count_keys(report: JobReport, keyset: KeySet) -> None:
    report.rows_read = keyset.rows_read
    report.rows_rejected = keyset.rows_rejected
    report.duplicate_keys = keyset.duplicate_keys
    report.keys = len(keyset.keys)
    report.rejects_by_reason = keyset.rejects_by_reason


def _count_plan(report: JobReport, plan: Plan, job: Job) -> None:
    report.action = plan.action
    report.added, report.removed, report.reason = plan.added, plan.removed, plan.reason
    changes = plan.action != "none"
    report.planned_requests = Requests(
        put=plan.put_requests(job.sync.chunk_size),
        delete=int(plan.clears) + len(plan.remove),
        post=int(changes and job.normalization is not None),
    )
    report.removal_costs = {
        name: {"requests": cost.requests, "incomplete_requests": cost.incomplete_requests}
        for name, cost in plan.costs.items()
    }
    report.pending_removals = len(plan.pending)
    if len(plan.pending):
        report.oldest_pending_removal = pc.min(plan.pending["since"]).as_py()


def _count_requests(report: JobReport, client: NP6Client) -> None:
    stats = client.stats
    report.requests = Requests(
        put=stats.calls.get("put", 0),
        delete=stats.calls.get("delete", 0),
        post=stats.calls.get("post", 0),
        retries=stats.retries,
    )
    report.retry_wait_s = stats.retry_wait_s
    report.rate_limit_wait_s = stats.rate_limit_wait_s
    report.lowest_concurrency = client.gate.lowest


def _write_rejects(job: Job, keyset: KeySet) -> str | None:
    """Rejected rows go to ``<state folder>/<job>.rejects.csv``; no rejects, no file."""
    path = job.state_path.with_name(f"{job.name}.rejects.csv")
    if not keyset.rows_rejected:
        path.unlink(missing_ok=True)
        return None
    with atomic_write(path) as f:
        pacsv.write_csv(keyset.rejected, f)
    return str(path)
