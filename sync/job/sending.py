"""The phase that changes the segment: NP6 checked, the journal opened, the plan pushed,
and the state made exactly what NP6 acknowledged."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sync.core.plan import Plan, applied
from sync.errors import Np6SyncError, StoppedError, translated
from sync.job.context import JobRun, held, log_extra, mark_phase, not_stopped

if TYPE_CHECKING:  # requests loads with the first job that sends, not with the run's code
    from sync.send.push import PushResult


log = logging.getLogger("np6sync.run")


def send(run: JobRun, plan: Plan) -> PushResult:
    """Check NP6, open the journal, push ``plan``, and save what NP6 acknowledged."""
    # Only a run that changes the segment needs the client's side: requests and the rest.
    from sync.send.push import push_plan
    from sync.verify.preflight import preflight

    run.plan = plan
    job, store = run.job, run.store
    mark_phase(run, "preflight")
    client = run.client = run.client or run.connect()  # a fallback keeps its counts
    in_flight = run.concurrency * 2 * job.sync.chunk_size  # push's queue, at most
    checked = preflight(
        job, plan, run.holding, client, store, force=run.options.force, in_flight=in_flight
    )
    run.report.notices = checked.notices
    not_stopped(run)  # the last moment a stop leaves the segment and the state untouched
    if not run.holding.known:
        with translated("set the untrusted state aside"):
            store.set_aside()
    with translated("open the journal"):
        journal = store.open_journal(plan.action)
    with journal:
        run.sending = True
        mark_phase(run, "send")

        try:
            with run.timer("push"):
                run.pushed = pushed = push_plan(
                    job,
                    plan,
                    client=client,
                    journal=journal,
                    concurrency=run.concurrency,
                    stop=run.stop,
                    progress=run.progress,
                    watch=checked.watch,
                )
        except BaseException:
            save_acknowledged(run, after_failure=True)
            raise
        save_acknowledged(run, after_failure=pushed.error is not None)
    run.report.targets_sent += pushed.targets_sent
    run.report.targets_accepted += pushed.targets_accepted
    run.report.targets_removed += pushed.targets_removed
    checked.after_push(pushed.targets_sent, pushed.targets_accepted)
    return pushed


def settle_push(run: JobRun, pushed: PushResult) -> None:
    """The push's outcome: its error, a stop, or the segment's phones normalized."""
    if pushed.error is not None:
        raise pushed.error
    if pushed.interrupted:
        raise StoppedError(
            f"stopped by a signal after {pushed.targets_sent:,} of {len(run.plan.send):,} "
            "targets; the state holds what NP6 acknowledged and the next run goes on from there"
        )
    job = run.job
    if job.normalization is not None:
        assert run.client is not None, "a push has a client"
        run.client.normalize(job.segment_id, job.normalization.fields)


def save_acknowledged(run: JobRun, *, after_failure: bool) -> None:
    """The state becomes exactly what NP6 acknowledged: the plan applied, when every step
    was, else the journal's record of each step. After a failure, a state that cannot be
    saved is only warned about: the journal still holds every acknowledged step."""
    store, pushed = run.store, run.pushed
    try:
        with run.timer("state_write"), translated("save the state"):
            if pushed is not None and pushed.error is None and not pushed.interrupted:
                keys, certain = held(run), run.holding.certain
                store.save(applied(keys, run.plan, certain), run.plan.pending, run.holding.ids)

                return
            after = store.load()
            # A clear that NP6 may or may not have done must stay on record in the
            # journal, so that the next run reloads instead of trusting old keys.
            if after.certain:
                pending = run.plan.pending if run.plan.pending_changed else after.pending
                store.save(after.keys, pending, after.ids)
    except Np6SyncError as error:
        if not after_failure:
            raise
        log.warning("%s; the journal keeps what NP6 acknowledged", error, extra=log_extra(run))
