"""Is NP6 taking the targets? Asked before the first change of a run, and while adding.

NP6 adds contacts, not strings: a key that matches no contact is not added, and a PUT
answers only how many were (docs/np6.md). A wrong key column, separator or transform,
or a media type the account needs, makes every PUT answer 0 while the run "succeeds".
So, before the first change: the segment must exist and be static (``GET
/segments/{id}``), and hold no targets when np6-sync has no state for it; before a
clear, a sample of the keys must match contacts (``GET /targets?unicity=``); while
adding keys that should all be new, NP6 must add most of the first ones sent
(``AcceptanceWatch``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from sync.config import Job
from sync.core.plan import Holding, Plan
from sync.errors import (
    FatalApiError,
    NotTakenError,
    Np6SyncError,
    RefusedError,
    SegmentError,
    UnexpectedAnswerError,
)
from sync.np6.answers import SegmentInfo
from sync.np6.client import NP6Client
from sync.state.store import Store

log = logging.getLogger("np6sync.preflight")
WATCHED_KEYS = 1_000  # the first keys sent that the acceptance check judges on
CAUSES = (
    "the key columns (targets.columns), targets.separator, targets.transforms, the "
    "Accept header the PUT needs (unicity_media_type in the settings), or contacts "
    "missing from the account"
)


@dataclass(frozen=True)
class Sample:
    """How many of a sample of keys match a contact; ``unavailable`` says why it could
    not be checked (then the counts are 0)."""

    looked: int = 0
    matched: int = 0
    unavailable: str = ""
    unmatched: tuple[str, ...] = ()  # the sampled keys that match no contact

    def under(self, ratio: float) -> bool:
        return not self.unavailable and self.looked > 0 and self.matched < ratio * self.looked


def sample_keys(keys: pa.Array, size: int) -> list[str]:
    """``size`` keys evenly spaced over ``keys``: the same ones from run to run, and from
    the whole list, not only its head (a file sorted by source may differ by part)."""
    if size <= 0 or not len(keys):
        return []
    if len(keys) <= size:
        return [str(key) for key in keys.to_pylist()]
    step = len(keys) / size
    return [str(key) for key in keys.take([int(i * step) for i in range(size)]).to_pylist()]


def describe(client: NP6Client, segment_id: int) -> SegmentInfo | None:
    """The segment as NP6 describes it; None when NP6 cannot say (the call missing, an
    answer np6-sync cannot read): then the run goes on as it would without the check.
    SegmentError (exit 2) for a segment NP6 does not know, or a dynamic one."""
    try:
        info = client.describe_segment(segment_id)
    except UnexpectedAnswerError as error:
        log.warning("cannot check the segment before sending: %s", error)
        return None
    except FatalApiError as error:
        if error.status == 404:
            raise SegmentError(
                f"NP6 does not know segment {segment_id} (GET /segments/{segment_id} "
                "answered 404): check segment_id; nothing was sent"
            ) from None
        if error.status == 405:
            log.warning("cannot check the segment before sending: %s", error)
            return None
        raise
    if info.type == "dynamic":
        name = f" ({info.name})" if info.name else ""
        raise SegmentError(
            f"segment {segment_id}{name} is dynamic: NP6 computes its members and refuses "
            "changes to them; a job needs a static segment; nothing was sent"
        )
    return info


def look_up(client: NP6Client, keys: pa.Array, size: int) -> Sample:
    """Look up ``size`` of ``keys`` by unicity value. A look-up call the account lacks
    (404 or 405) or an answer of another shape makes the sample unavailable, not wrong."""
    unmatched = []
    sample = sample_keys(keys, size)
    for position, key in enumerate(sample, start=1):
        try:
            if not client.lookup(key, position):
                unmatched.append(key)
        except FatalApiError as error:
            if error.status not in (404, 405) and not isinstance(error, UnexpectedAnswerError):
                raise
            return Sample(unavailable=f"the look-up of contacts is not available ({error})")
    return Sample(len(sample), len(sample) - len(unmatched), unmatched=tuple(unmatched))


def sample_text(sample: Sample) -> str:
    if sample.unavailable:
        return sample.unavailable
    return f"{sample.matched} of {sample.looked} sampled keys match a contact"


class AcceptanceWatch:
    """Judges the first ``WATCHED_KEYS`` keys acknowledged (all, when fewer): when NP6
    added under ``min_ratio`` of them, although none should be in the segment yet, the
    sending stops. Chunks that a resumed run sends again (``resent``: possibly added by
    the run that stopped) are not judged: NP6 rightly adds nothing for them."""

    def __init__(self, min_ratio: float, planned: int, resent: frozenset[str]) -> None:
        self.min_ratio = min_ratio
        self.resent = resent
        self.goal = min(WATCHED_KEYS, planned - len(resent))
        self.sent = 0
        self.accepted = 0
        self.judged = self.goal <= 0
        self.stopped = False

    def __call__(self, chunk: list[str], accepted: int) -> Np6SyncError | None:
        if self.judged or chunk[0] in self.resent:
            return None
        self.sent += len(chunk)
        self.accepted += accepted
        if self.sent < self.goal:
            return None
        self.judged = True
        if self.accepted >= self.min_ratio * self.sent:
            return None
        self.stopped = True
        return NotTakenError(
            f"NP6 added {self.accepted:,} of the first {self.sent:,} targets sent "
            f"({self.accepted / self.sent:.0%}), fewer than sync.min_accepted_ratio "
            f"({self.min_ratio:.0%}), although none of them was in the segment: the keys "
            f"match no contact. Check {CAUSES}; `np6-sync check` looks keys up. The sending "
            "stopped; the state holds the chunks NP6 acknowledged, so once fixed, run with "
            "--full-refresh"
        )


@dataclass
class Preflight:
    """What the checks before the first change found, for the push and the report."""

    segment: SegmentInfo | None = None
    notices: list[str] = field(default_factory=list)
    watch: AcceptanceWatch | None = None

    def notice(self, text: str) -> None:
        log.warning("%s", text)
        self.notices.append(text)

    def after_push(self, sent: int, accepted: int) -> None:
        """Keys that should all have been new and were not added match no contact."""
        watch = self.watch
        if watch is not None and accepted < sent and not watch.resent and not watch.stopped:
            self.notice(
                f"{sent - accepted:,} of the {sent:,} keys sent match no contact in NP6 (none "
                "was in the segment): the state records them as sent, so they are not sent "
                "again until --full-refresh; `np6-sync check --sample N` looks keys up"
            )


def preflight(
    job: Job,
    plan: Plan,
    holding: Holding,
    client: NP6Client,
    store: Store,
    *,
    force: bool,
    in_flight: int,
) -> Preflight:
    """The checks before the first change of a run (after planning, once there is
    something to send). ``in_flight``: how many keys a stopped run may have had in
    flight, sent again by this one if it resumes."""
    result = Preflight(describe(client, job.segment_id))
    size = result.segment.targets_count if result.segment is not None else None
    # A state set aside by --full-refresh is no state: it is not read again.
    had_state = holding.known and (store.has_journal() or store.info() is not None)
    if not had_state and not plan.clears and size:
        if job.sync.mode == "append":  # never removes: it claims no equality to lose
            result.notice(
                f"NP6 says segment {job.segment_id} holds about {size:,} targets and np6-sync "
                "has no state for it: those already there add nothing when sent (not a sign "
                "of keys that match no contact)"
            )
        elif not force:
            raise RefusedError(_lost_state(job, size) + "; nothing was sent")
        else:
            result.notice(_lost_state(job, size) + "; --force adopts the segment as it is")
    rules, unicity = job.sync, job.targets.identify_by == "unicity"
    if plan.clears and unicity and rules.lookup_sample and rules.lookups and not force:
        sample = look_up(client, plan.send, rules.lookup_sample)
        if sample.unavailable:
            result.notice(f"cannot check the keys before the clear: {sample.unavailable}")
        elif sample.under(rules.min_accepted_ratio):
            raise RefusedError(
                f"only {sample_text(sample)} (sync.min_accepted_ratio is "
                f"{rules.min_accepted_ratio:.0%}): the reload would clear the segment and add "
                f"almost nothing. Check {CAUSES}; or pass --force; nothing was sent"
            )
    new = plan.clears or size == 0 or (had_state and holding.known and holding.certain)
    if new and rules.min_accepted_ratio > 0 and len(plan.send):
        resent = _resent(store, plan.send, in_flight) if not plan.clears else frozenset()
        result.watch = AcceptanceWatch(rules.min_accepted_ratio, len(plan.send), resent)
    return result


def _lost_state(job: Job, size: int) -> str:
    """A segment that is not empty while np6-sync has no state for it: a lost state (a
    deleted file, a fresh container) looks the same as a segment filled by hand, and a run
    would remove none of the targets it holds that the source no longer has. Adopting it
    is an explicit act."""
    if job.targets.identify_by == "id":
        adopt = "adopt what it holds with `np6-sync state import JOB --from-segment`"
    else:
        adopt = "record the list that filled it with `np6-sync state import JOB --from FILE`"
    return (
        f"NP6 says segment {job.segment_id} holds about {size:,} targets and np6-sync has "
        "no state for it (lost, or never made): a run would add the source's keys and "
        f"remove none of the others; {adopt}, or reload it with the source's keys with "
        "`np6-sync run JOB --full-refresh`, or pass --force"
    )


def _resent(store: Store, send: pa.Array, in_flight: int) -> frozenset[str]:
    """The keys this run may send again: the head of its list, when the last run
    stopped while sending (a journal left, or a failure recorded). Acknowledged chunks
    are in the state, so the chunks that were in flight come first in this run's list."""
    try:
        last = store.read_history(last=1)
    except (OSError, Np6SyncError):  # the history is for people: never a reason to fail
        last = []
    stopped = store.has_journal() or (bool(last) and last[-1].get("status") == "failed")
    if not stopped:
        return frozenset()
    return frozenset(str(key) for key in send.slice(0, in_flight).to_pylist())
