"""The steps that change the segment: NP6 checked, the journal opened, the plan pushed,
and the state made exactly what NP6 acknowledged."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sync.core.plan import Plan, applied
from sync.errors import Np6SyncError, StoppedError, translated
from sync.job.context import Given, Planned, Sent, log_extra

if TYPE_CHECKING:  # requests loads with the first job that sends, not with the run's code
    from sync.send.push import PushResult
    from sync.state.local import Journal
    from sync.verify.preflight import Preflight


log = logging.getLogger("np6sync.run")


def check_np6(given: Given, planned: Planned, plan: Plan) -> Preflight:
    """What NP6 says before the first change (sync.verify.preflight)."""
    from sync.verify.preflight import preflight

    in_flight = given.concurrency * 2 * given.job.sync.chunk_size  # push's queue, at most
    return preflight(
        given.job,
        plan,
        planned.holding,
        given.np6(),
        given.store,
        force=given.options.force,
        in_flight=in_flight,
    )


def open_journal(given: Given, planned: Planned, plan: Plan) -> Journal:
    """The journal that records each acknowledged step (an untrusted state set aside)."""
    if not planned.holding.known:
        with translated("set the untrusted state aside"):
            given.store.set_aside()
    with translated("open the journal"):
        return given.store.open_journal(plan.action)


def push(given: Given, planned: Planned, plan: Plan, journal: Journal, checked: Preflight) -> Sent:
    """Push ``plan``, and save what NP6 acknowledged (whatever happens on the way)."""
    # Only a run that changes the segment needs the client's side: requests and the rest.
    from sync.send.push import push_plan

    try:
        with given.timer("push"):
            pushed = push_plan(
                given.job,
                plan,
                client=given.np6(),
                journal=journal,
                concurrency=given.concurrency,
                stop=given.stop,
                progress=given.progress,
                watch=checked.watch,
            )
    except BaseException:
        save_acknowledged(given, planned, plan, None, after_failure=True)
        raise
    save_acknowledged(given, planned, plan, pushed, after_failure=pushed.error is not None)
    checked.after_push(pushed.targets_sent, pushed.targets_accepted)
    return Sent(plan, pushed)


def settle_push(given: Given, sent: Sent) -> None:
    """The push's outcome: its error, a stop, or the segment's phones normalized."""
    pushed = sent.pushed
    if pushed.error is not None:
        raise pushed.error
    if pushed.interrupted:
        raise StoppedError(
            f"stopped by a signal after {pushed.targets_sent:,} of {len(sent.plan.send):,} "
            "targets; the state holds what NP6 acknowledged and the next run goes on from there"
        )
    job = given.job
    if job.normalization is not None:
        given.np6().normalize(job.segment_id, job.normalization.fields)


def save_acknowledged(
    given: Given, planned: Planned, plan: Plan, pushed: PushResult | None, *, after_failure: bool
) -> None:
    """The state becomes exactly what NP6 acknowledged: the plan applied, when every step
    was, else the journal's record of each step. After a failure, a state that cannot be
    saved is only warned about: the journal still holds every acknowledged step."""
    store = given.store
    try:
        with given.timer("state_write"), translated("save the state"):
            if pushed is not None and pushed.error is None and not pushed.interrupted:
                keys, certain = planned.held(), planned.holding.certain
                store.save(applied(keys, plan, certain), plan.pending, planned.holding.ids)
                return
            after = store.load()
            # A clear that NP6 may or may not have done must stay on record in the
            # journal, so that the next run reloads instead of trusting old keys.
            if after.certain:
                pending = plan.pending if plan.pending_changed else after.pending
                store.save(after.keys, pending, after.ids)
    except Np6SyncError as error:
        if not after_failure:
            raise
        log.warning("%s; the journal keeps what NP6 acknowledged", error, extra=log_extra(given))
