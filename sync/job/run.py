"""One job, top to bottom: lock, read, plan, prepare, check, change, report."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.config import Job
from sync.console.progress import NullProgress, Progress
from sync.core.fold import fold_array
from sync.core.hashing import import_beside
from sync.core.keys import KEY_TYPE, distinct
from sync.core.plan import Holding, check_safeguards, make_plan
from sync.errors import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_USAGE,
    KeyRefusedError,
    Np6SyncError,
    StateError,
    as_error,
    translated,
)
from sync.job.context import (
    JobRun,
    RunOptions,
    held,
    log_extra,
    mark_phase,
    not_stopped,
)
from sync.job.counts import count_keys, count_plan, count_requests, count_rows
from sync.job.fallback import Fallback, count_lookups, reload_instead
from sync.job.fold import fold_source
from sync.job.same_set import Checked, same_set, will_hash
from sync.job.sending import send, settle_push
from sync.job.source import collect_job_keys, read_downloaded, read_job_source
from sync.read.sources import SourceTable
from sync.report.model import JobReport
from sync.send.lookup import LookupUnavailable
from sync.state.rejects import write_rejects
from sync.state.scan import Scanned, scan_state
from sync.state.seal import job_shape, proof_beside, seal_run
from sync.state.store import Store, local_store, store_for

if TYPE_CHECKING:
    from sync.job.fanout import SharedSource
    from sync.np6.client import NP6Client

log = logging.getLogger("np6sync.run")


def run_job(
    job: Job,
    options: RunOptions,
    connect: Callable[[], NP6Client],
    *,
    concurrency: int = 4,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    shared: SharedSource | None = None,
) -> JobReport:
    """Sync one job along ``options.route``. Never raises: the report carries every
    failure, foreign ones too."""
    run = JobRun(
        job,
        options,
        connect,
        concurrency,
        stop or threading.Event(),
        progress or NullProgress(),
        JobReport(job.name, job.segment_id),
        shared=shared,
    )
    started = time.monotonic()
    error: Np6SyncError | None = None
    try:
        _phases(run)
    except Exception as failure:  # whatever it is, this job fails and the run goes on
        error = as_error(failure, "finish the job")
    finally:
        if run.client is not None:
            count_requests(run.report, run.client)
            run.client.close()
        run.report.duration_s = time.monotonic() - started
    _settle(run, error)
    return run.report


def _phases(run: JobRun) -> None:
    """The job, top to bottom; a stop signal ends it between phases, and before the
    first change at the latest."""
    run.store = store_for(run.job)
    mark_phase(run, "lock")
    with _locked(run):
        mark_phase(run, "read")
        _read(run)
        not_stopped(run)
        mark_phase(run, "plan")
        _plan(run)
        not_stopped(run)
        if not run.options.dry_run:
            _prepare(run)
        if _refused(run) or run.options.dry_run:
            return
        if run.plan.action == "none":
            mark_phase(run, "settle")
            _fold(run)
        else:
            pushed = send(run, run.plan.gathered(run.folded))
            count_lookups(run.report, pushed.lookups)
            if isinstance(pushed.error, LookupUnavailable):  # the account lacks the call
                mark_phase(run, "fallback")
                fallback = reload_instead(run.plan, pushed.error, _fallback_inputs(run))
                pushed = send(run, fallback)
            settle_push(run, pushed)  # its failure is the send's

        if run.proof is not None and not len(run.plan.pending):  # deferred removals: never
            options = run.options
            seal_run(run.job, options.media_type, run.proof, run.report, options.account)


def _fallback_inputs(run: JobRun) -> Fallback:
    """What the reload fallback needs: the file's keys read afresh (never a mask of the
    state as it was before the first push changed it), and the safeguards' inputs."""

    def source_keys() -> pa.Array:
        with run.timer("read"):
            return distinct(collect_job_keys(run.job, _source(run))).keys

    return Fallback(run.job, run.keyset, run.report, source_keys, force=run.options.force)


@contextlib.contextmanager
def _locked(run: JobRun) -> Iterator[None]:
    """First of all: a second run must stop at once, not after reading a large file."""
    if run.options.dry_run:
        yield
        return
    with contextlib.ExitStack() as held:
        with translated("take the job's lock"):
            held.enter_context(run.store.lock(run.job.name))
        yield


def _read(run: JobRun) -> None:
    if will_hash(run.job):
        import_beside()
    scanned = _scan(run)
    try:
        with run.timer("read"):
            downloaded = run.options.downloaded
            proof = proof_beside(run.job, sealed=run.route.seal, downloaded=downloaded)
            if scanned is not None:
                run.keyset, run.folded = fold_source(run.job, scanned, run.stop, run.progress)
                # Not the scan itself: its digests (16 bytes a key) are not needed any more.
                run.holding, run.reread = scanned.holding, scanned.keys
            else:
                source = _source(run)
            run.proof = proof()
    except Np6SyncError:
        not_stopped(run)  # pyarrow cancels a read at a signal: that is the stop, not the file
        raise
    if scanned is None:
        with run.timer("keys"):
            # Every valid key, duplicates too: the fold against the state finds them.
            run.keyset = collect_job_keys(run.job, source)
            del source  # the source's columns are not needed any more: free them
        count_rows(run.report, run.keyset)  # the keys are counted once folded
    else:
        count_keys(run.report, run.keyset)


def _source(run: JobRun) -> SourceTable:
    """The source read whole: what was handed in, the downloaded copy, or the job's file."""
    if run.shared is not None:
        return run.shared(run.job)
    if run.options.downloaded is not None:
        return read_downloaded(run.options.downloaded, run.job)
    return read_job_source(run.job)


def _scan(run: JobRun) -> Scanned | None:
    """The state's digests, when the route folds the source (sync.job.fold); None when
    the state must be read whole after all (none yet, or a journal to replay)."""
    if run.route.read != "folded":
        return None
    with run.timer("state_read"):
        return scan_state(local_store(run.job))


def _plan(run: JobRun) -> None:
    if run.folded is None:  # a source read whole, against a state read whole
        _fold_whole(run)
    with run.timer("diff"):
        run.plan = make_plan(
            run.holding,
            run.folded,
            run.job.sync,
            by_id=run.job.targets.identify_by == "id",
            lookups=run.job.sync.lookups,
            full_refresh=run.options.full_refresh,
        )
    count_plan(run.report, run.plan, run.job)
    keyset, plan = run.keyset, run.plan
    counts = {
        "rows": keyset.rows_read,
        "rejected": keyset.rows_rejected,
        "keys": keyset.distinct_keys,
        "added": plan.added,
        "removed": plan.removed,
    }
    extra = {"job": run.job.name, "phase": "plan", "counts": counts}
    log.info("plan: %s (%s)", plan.action, plan.reason, extra=extra)


def _fold_whole(run: JobRun) -> None:
    """The source's keys against the state's: not read when both hold the same keys."""
    with run.timer("diff"):
        same = Checked()
        if run.route.print:  # the print is trusted only for a state its seal vouches for
            shape = job_shape(run.job, run.options.media_type, run.options.account)
            same = same_set(local_store(run.job), run.keyset.keys, shape=shape)
    if same.folded is not None:
        run.report.route = "printed"
        run.report.route_reason = (
            f"the source's {same.folded.count:,} keys print as the state's: the state's "
            "keys were not read"
        )
        run.holding, run.folded, run.reread = Holding.empty(), same.folded, same.reread
    else:
        with run.timer("state_read"):
            run.holding = _load_holding(run.store, run.options)
        with run.timer("diff"):
            run.folded = fold_array(run.keyset.keys, run.holding.keys, digests=same.digests)
    run.keyset = replace(run.keyset, keys=pa.array([], KEY_TYPE), folded=run.folded.count)
    count_keys(run.report, run.keyset)


def _prepare(run: JobRun) -> None:
    with translated("remove the temporary files of an interrupted run"):
        run.store.clean_leftovers()
    with translated("write the rejects file"):
        run.report.rejects_file = write_rejects(run.job, run.keyset)


def _refused(run: JobRun) -> bool:
    refusals = [] if run.options.force else check_safeguards(run.plan, run.keyset, run.job.sync)
    run.report.refusals = refusals
    return bool(refusals)


def _fold(run: JobRun) -> None:
    """Nothing to send: fold what an interrupted run left, record deferred removals."""
    if run.store.has_journal() or run.plan.pending_changed:
        with run.timer("state_write"), translated("save the state"):
            run.store.save(held(run), run.plan.pending, run.holding.ids)


def _settle(run: JobRun, error: Np6SyncError | None) -> None:
    """The job's status and exit code: decided here, and only here."""
    report = run.report
    if error is not None:
        code = error.exit_code
        # The segment changed: the state holds what NP6 acknowledged. (A refused key
        # knows better: its client says whether any change had left before.)
        if run.sending and code == EXIT_USAGE and not isinstance(error, KeyRefusedError):
            code = EXIT_FAILED
        report.status = "refused" if code == EXIT_REFUSED else "failed"
        report.exit_code, report.error, report.failure = code, str(error), error
        report.error_kind = error.kind
        request_id = getattr(error, "request_id", None)
        log.error("%s", error, extra={**log_extra(run), "request_id": request_id})
        if error.__cause__ is not None:
            log.debug("the cause, for a report", exc_info=error.__cause__, extra=log_extra(run))
    elif report.refusals:
        report.status, report.exit_code = "refused", EXIT_REFUSED  # the plan was judged
    elif run.options.dry_run:
        report.status = "planned"
    elif run.pushed is None:
        report.status = "no_changes"
    else:
        report.status = "succeeded"
    if error is None and not report.refusals:
        report.phase = "done"
    counts = {"sent": report.targets_sent, "accepted": report.targets_accepted}
    done = {"phase": "done", "counts": counts, "duration_s": round(report.duration_s, 3)}
    log.info("%s: %s", report.status, report.action, extra={**log_extra(run), **done})


def _load_holding(store: Store, options: RunOptions) -> Holding:
    try:
        return store.load()
    except StateError:
        if not options.full_refresh:
            raise
        # A full refresh clears the segment anyway: the old state is not needed.
        return Holding(Holding.empty().keys, known=False)
