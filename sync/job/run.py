"""One job, top to bottom: lock, read, plan, prepare, check, change, settle, report.

Each phase returns a frozen value; ``_journey`` hands them on, and yields where the job
got to (``Reached``) after each, so that a failure anywhere still leaves the report what
the phases before it found. The report is built once, at the end (sync.job.report).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.config import Job
from sync.console.progress import NullProgress, Progress
from sync.core.fold import fold_array
from sync.core.hashing import import_beside
from sync.core.keys import KEY_TYPE, distinct
from sync.core.plan import Holding, Plan, check_safeguards, make_plan
from sync.errors import Np6SyncError, StateError, as_error, translated
from sync.job.context import (
    Connection,
    Given,
    Planned,
    Reached,
    Read,
    RunOptions,
    log_extra,
    not_stopped,
)
from sync.job.fallback import Fallback, reload_instead
from sync.job.fold import fold_source
from sync.job.report import report_of
from sync.job.route import decide, facts_of
from sync.job.same_set import Checked, same_set, will_hash
from sync.job.sending import check_np6, open_journal, push, settle_push
from sync.job.source import collect_job_keys, read_downloaded, read_job_source
from sync.read.sources import SourceTable
from sync.report.model import JobReport
from sync.report.phases import PhaseTimer
from sync.send.lookup import LookupUnavailable
from sync.state.rejects import write_rejects
from sync.state.scan import scan_state
from sync.state.seal import job_shape, proof_beside, seal_run
from sync.state.store import Store, local_store, store_for

if TYPE_CHECKING:
    from sync.job.fanout import SharedSource
    from sync.np6.client import NP6Client

log = logging.getLogger("np6sync.run")
_NO_KEYS = pa.array([], KEY_TYPE)


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
    route = options.route or decide(
        facts_of(job, full_refresh=options.full_refresh, dry_run=options.dry_run)
    )
    given = Given(
        job,
        options,
        route,
        store_for(job),
        Connection(connect),
        concurrency,
        stop or threading.Event(),
        progress or NullProgress(),
        PhaseTimer({}),
        shared,
    )
    started = time.monotonic()
    at, error = Reached(route), None
    try:
        for at in _journey(given):  # noqa: B007 -- the last value is where the job got to
            pass
    except Exception as failure:  # whatever it is, this job fails and the run goes on
        error = as_error(failure, "finish the job")
    finally:
        given.np6.close()
    report = report_of(given, at, error=error, duration_s=time.monotonic() - started)
    _log_ending(given, report, error)
    return report


def _journey(given: Given) -> Iterator[Reached]:
    """The job's phases, in order; a stop signal ends it between phases, and before the
    first change at the latest."""
    at = Reached(given.route)
    yield at
    with _locked(given):
        yield (at := at.at("read"))
        read = _read(given)
        yield (at := replace(at, read=read))  # a stop now still reports the rows
        not_stopped(given)
        yield (at := at.at("plan"))
        if read.folded is None:  # a source read whole, against a state read whole
            read = _fold_whole(given, read)
            yield (at := replace(at, read=read))  # the source's keys are in the fold now
        planned = _plan(given, read)
        yield (at := replace(at, read=None, planned=planned))  # and the plan
        not_stopped(given)
        proof = read.proof
        del read
        if not given.options.dry_run:
            yield (at := replace(at, rejects_file=_prepare(given, planned)))
        yield (at := replace(at, refusals=_judged(given, planned)))
        if at.refusals or given.options.dry_run:
            return
        if planned.plan.action == "none":
            yield (at := at.at("settle"))
            _fold(given, planned)
        else:
            at = yield from _changes(given, at, planned)
        done = at.carried_out() or planned.plan
        if proof is not None and not len(done.pending):  # deferred removals: never sealed
            options = given.options
            report = report_of(given, at)
            seal_run(given.job, options.media_type, proof, report, options.account)


def _changes(given: Given, at: Reached, planned: Planned) -> Generator[Reached, None, Reached]:
    """The plan sent; when the account lacks the look-up or the per-target removal, the
    reload fallback, planned from its own inputs, sent instead."""
    at = yield from _change(given, at, planned.plan.gathered(planned.folded))
    sent = at.sent[-1]
    if isinstance(sent.pushed.error, LookupUnavailable):  # the account lacks the call
        yield (at := at.at("fallback"))
        reload = reload_instead(planned.plan, sent.pushed.error, _fallback_inputs(given, planned))
        yield (at := replace(at, reload=reload))
        if reload.refusals:
            raise reload.refused()
        at = yield from _change(given, at, reload.plan)
        sent = at.sent[-1]
    settle_push(given, sent)  # its failure is the send's
    return at


def _change(given: Given, at: Reached, plan: Plan) -> Generator[Reached, None, Reached]:
    """NP6 checked, the journal opened, ``plan`` pushed, what NP6 acknowledged saved."""
    planned = at.planned
    assert planned is not None, "a change follows a plan"
    yield (at := at.at("preflight"))
    checked = check_np6(given, planned, plan)
    yield (at := replace(at, notices=tuple(checked.notices)))  # kept whatever comes next
    # The last moment a stop leaves the segment and the state as they are.
    not_stopped(given, changed=at.changing)
    with open_journal(given, planned, plan) as journal:
        yield (at := replace(at, phase="send", changing=True))
        sent = push(given, planned, plan, journal, checked)
    # And what it said after the push (keys that match no contact).
    at = replace(at, sent=(*at.sent, sent), notices=tuple(checked.notices))
    yield at
    return at


def _fallback_inputs(given: Given, planned: Planned) -> Fallback:
    """What the reload fallback needs: the file's keys read afresh (never a mask of the
    state as it was before the first push changed it), and the safeguards' inputs."""

    def source_keys() -> pa.Array:
        with given.timer("read"):
            return distinct(collect_job_keys(given.job, _source(given))).keys

    return Fallback(given.job, planned.keyset, source_keys, force=given.options.force)


@contextlib.contextmanager
def _locked(given: Given) -> Iterator[None]:
    """First of all: a second run must stop at once, not after reading a large file."""
    if given.options.dry_run:
        yield
        return
    with contextlib.ExitStack() as held:
        with translated("take the job's lock"):
            held.enter_context(given.store.lock(given.job.name))
        yield


def _read(given: Given) -> Read:
    """The source's keys; on the folded route, folded against the state as it is read."""
    job = given.job
    if will_hash(job):
        import_beside()
    scanned = None
    if given.route.read == "folded":
        with given.timer("state_read"):
            scanned = scan_state(local_store(job))  # None: the state must be read whole
    try:
        with given.timer("read"):
            downloaded = given.options.downloaded
            proof = proof_beside(job, sealed=given.route.seal, downloaded=downloaded)
            if scanned is not None:
                keyset, folded = fold_source(job, scanned, given.stop, given.progress)
                # Not the scan itself: its digests (16 bytes a key) are not needed any more.
                return Read(keyset, proof(), folded, scanned.holding, scanned.keys)
            source = _source(given)
            proven = proof()
    except Np6SyncError:
        not_stopped(given)  # pyarrow cancels a read at a signal: that is the stop, not the file
        raise
    with given.timer("keys"):
        # Every valid key, duplicates too: the fold against the state finds them.
        return Read(collect_job_keys(job, source), proven)


def _source(given: Given) -> SourceTable:
    """The source read whole: what was handed in, the downloaded copy, or the job's file."""
    if given.shared is not None:
        return given.shared(given.job)
    if given.options.downloaded is not None:
        return read_downloaded(given.options.downloaded, given.job)
    return read_job_source(given.job)


def _plan(given: Given, read: Read) -> Planned:
    """The plan, from a source folded against the state."""
    job, route = given.job, given.route
    assert read.folded is not None and read.holding is not None, "a folded source"
    with given.timer("diff"):
        plan = make_plan(
            read.holding,
            read.folded,
            job.sync,
            by_id=job.targets.identify_by == "id",
            lookups=job.sync.lookups,
            full_refresh=given.options.full_refresh,
        )
    keyset = read.keyset
    counts = {
        "rows": keyset.rows_read,
        "rejected": keyset.rows_rejected,
        "keys": keyset.distinct_keys,
        "added": plan.added,
        "removed": plan.removed,
    }
    extra = {"job": job.name, "phase": "plan", "counts": counts}
    log.info("plan: %s (%s)", plan.action, plan.reason, extra=extra)
    name, reason = ("printed", read.printed) if read.printed else (route.name, route.reason)
    return Planned(keyset, read.holding, read.folded, plan, name, reason, read.reread)


def _fold_whole(given: Given, read: Read) -> Read:
    """The source's keys against the state's: not read when both hold the same keys.
    What it returns holds the keys in the fold only."""
    job, options = given.job, given.options
    keys = read.keyset.keys
    with given.timer("diff"):
        same = Checked()
        if given.route.print:  # the print is trusted only for a state its seal vouches for
            shape = job_shape(job, options.media_type, options.account)
            same = same_set(local_store(job), keys, shape=shape)
    if same.folded is not None:
        printed = (
            f"the source's {same.folded.count:,} keys print as the state's: the state's "
            "keys were not read"
        )
        keyset = replace(read.keyset, keys=_NO_KEYS, folded=same.folded.count)
        return Read(keyset, read.proof, same.folded, Holding.empty(), same.reread, printed)
    with given.timer("state_read"):
        holding = _load_holding(given.store, options)
    with given.timer("diff"):
        folded = fold_array(keys, holding.keys, digests=same.digests)
    keyset = replace(read.keyset, keys=_NO_KEYS, folded=folded.count)
    return Read(keyset, read.proof, folded, holding)


def _prepare(given: Given, planned: Planned) -> str | None:
    """Before anything is judged: an interrupted run's leftovers gone, the rejects written."""
    with translated("remove the temporary files of an interrupted run"):
        given.store.clean_leftovers()
    with translated("write the rejects file"):
        return write_rejects(given.job, planned.keyset)


def _judged(given: Given, planned: Planned) -> tuple[str, ...]:
    """What the safeguards find wrong with the plan (nothing under --force)."""
    if given.options.force:
        return ()
    return tuple(check_safeguards(planned.plan, planned.keyset, given.job.sync))


def _fold(given: Given, planned: Planned) -> None:
    """Nothing to send: fold what an interrupted run left, record deferred removals."""
    if given.store.has_journal() or planned.plan.pending_changed:
        with given.timer("state_write"), translated("save the state"):
            given.store.save(planned.held(), planned.plan.pending, planned.holding.ids)


def _log_ending(given: Given, report: JobReport, error: Np6SyncError | None) -> None:
    if error is not None:
        request_id = getattr(error, "request_id", None)
        log.error("%s", error, extra={**log_extra(given), "request_id": request_id})
        if error.__cause__ is not None:
            log.debug("the cause, for a report", exc_info=error.__cause__, extra=log_extra(given))
    counts = {"sent": report.targets_sent, "accepted": report.targets_accepted}
    done = {"phase": "done", "counts": counts, "duration_s": round(report.duration_s, 3)}
    log.info("%s: %s", report.status, report.action, extra={**log_extra(given), **done})


def _load_holding(store: Store, options: RunOptions) -> Holding:
    try:
        return store.load()
    except StateError:
        if not options.full_refresh:
            raise
        # A full refresh clears the segment anyway: the old state is not needed.
        return Holding(Holding.empty().keys, known=False)
