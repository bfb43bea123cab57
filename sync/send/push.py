"""Carry out a plan: clear if it says so, chunked PUTs, then per-target removals.

Every step NP6 acknowledges is written to the journal (fsynced) before anything else
happens, so a run stopped at any point loses at most the steps in flight, and the next
run sends those again (adding a target twice, or removing one already gone, is harmless).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import pyarrow as pa

from sync.config import Job
from sync.console.progress import NullProgress, Progress
from sync.core.plan import Plan, no_ids
from sync.errors import FatalApiError, Np6SyncError, UnexpectedAnswerError, as_error, translated
from sync.np6.client import NP6Client
from sync.send.lookup import LookupStats, UnicityRemover
from sync.state.local import Journal

# Sees each acknowledged chunk and NP6's count; an error it returns stops the sending.
Watch = Callable[[list[str], int], Np6SyncError | None]


@dataclass
class PushResult:
    targets_sent: int = 0
    targets_accepted: int = 0
    chunks_acknowledged: int = 0
    targets_removed: int = 0  # per-target removals NP6 made (not those already gone)
    removals_settled: int = 0  # leaving keys done with: removed, or found not there
    lookups: LookupStats | None = None  # unicity mode: what the look-ups found
    interrupted: bool = False
    # The first error retries could not overcome, or the journal's disk failing.
    error: Np6SyncError | None = None


def push_plan(
    job: Job,
    plan: Plan,
    *,
    client: NP6Client,
    journal: Journal,
    concurrency: int,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    watch: Watch | None = None,
) -> PushResult:
    """Carry out ``plan`` for ``job``, journaling each acknowledged step."""
    return push(
        plan,
        client,
        journal,
        segment_id=job.segment_id,
        chunk_size=job.sync.chunk_size,
        concurrency=concurrency,
        unicity=job.targets.identify_by == "unicity",
        stop=stop,
        progress=progress,
        watch=watch,
        by_value=job.targets.identify_by == "unicity",
    )


def push(
    plan: Plan,
    client: NP6Client,
    journal: Journal,
    *,
    segment_id: int,
    chunk_size: int,
    concurrency: int,
    unicity: bool = True,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    watch: Watch | None = None,
    by_value: bool = False,
) -> PushResult:
    """Apply ``plan`` to the segment; ``watch`` may stop the PUTs, as a failure does;
    ``by_value``: ``plan.remove`` holds unicity values, whose contact ids are looked up
    (or taken from ``plan.known_ids``); an id a kept key still names (``plan.twins``)
    stays.

    An error of the clear is raised; the first error of a later step (NP6's, or the
    journal's disk) stops the sending: the steps in flight finish (and are journaled), the
    queued ones are not sent, and the error is returned in the result.
    """
    stop, progress, result = stop or threading.Event(), progress or NullProgress(), PushResult()
    journaling = f"record an acknowledged step in {journal.path}"
    if plan.clears:
        _clear(client, segment_id, journal, journaling)

    def add(chunk: list[str]) -> int:
        accepted = client.add_targets(segment_id, chunk, unicity=unicity)
        with translated(journaling):
            journal.added(chunk)
        return accepted

    def acknowledged(chunk: list[str], accepted: int) -> Np6SyncError | None:
        result.targets_sent += len(chunk)
        result.targets_accepted += accepted
        result.chunks_acknowledged += 1
        return watch(chunk, accepted) if watch is not None else None

    progress.start("push", total=len(plan.send))
    result.error = _run(
        _chunks(plan.send, chunk_size), add, acknowledged, concurrency, stop, progress
    )
    progress.finish()
    if result.error is None and len(plan.remove):
        if by_value:
            result.lookups = LookupStats()
        remove = _remover(client, segment_id, journal, plan, result.lookups)

        def removed(one: list[str], made: int) -> None:
            result.removals_settled += len(one)
            result.targets_removed += made

        progress.start("remove", total=len(plan.remove))
        result.error = _run(_chunks(plan.remove, 1), remove, removed, concurrency, stop, progress)
        progress.finish()
    pending = len(plan.send) - result.targets_sent + len(plan.remove) - result.removals_settled
    result.interrupted = stop.is_set() and pending > 0
    return result


def _remover(
    client: NP6Client,
    segment_id: int,
    journal: Journal,
    plan: Plan,
    lookups: LookupStats | None,
) -> Callable[[list[str]], int]:
    """Removes one target and journals it: by id, or (``lookups`` given) by unicity value.
    Answers 1 when NP6 took a target out, 0 when it was not there."""
    journaling = f"record an acknowledged step in {journal.path}"
    segment = _SegmentExists(client, segment_id)
    if lookups is not None:
        known = plan.known_ids if plan.known_ids is not None else no_ids()
        by_value = UnicityRemover(
            client, segment_id, journal, known, segment.confirm, lookups, plan.twins
        )

    def remove(one: list[str]) -> int:
        if lookups is not None:
            with translated(journaling):
                return int(by_value.remove(one[0]))
        made = client.remove_target(segment_id, one[0])
        if not made:
            segment.confirm()
        with translated(journaling):
            journal.removed(one)
        return int(made)

    return remove


def _clear(client: NP6Client, segment_id: int, journal: Journal, journaling: str) -> None:
    """The journal says "clearing" before the DELETE and "cleared" after it, so that a
    run stopped in between reloads again rather than trusting the old state."""
    with translated(journaling):
        journal.record({"event": "clearing"})
        client.clear_segment(segment_id)
        journal.record({"event": "cleared"})


def _run(
    items: Iterable[list[str]],
    send: Callable[[list[str]], int],
    done: Callable[[list[str], int], Np6SyncError | None],
    concurrency: int,
    stop: threading.Event,
    progress: Progress,
) -> Np6SyncError | None:
    """Send items with ``concurrency`` in flight; stop at a signal or the first error
    (a send's, or one ``done`` returns), after the items in flight have finished.
    Returns that error."""
    failure: Np6SyncError | None = None
    in_flight: dict[Future[int | None], list[str]] = {}
    failed = threading.Event()  # seen by the workers at once, before the next send

    def guarded(item: list[str]) -> int | None:
        if failed.is_set():
            return None  # queued behind a failure: not sent
        try:
            return send(item)
        except BaseException:
            failed.set()
            raise

    def settle(finished: set[Future[int | None]]) -> None:
        nonlocal failure
        for future in finished:
            item = in_flight.pop(future)
            try:
                value = future.result()
            except Exception as error:  # NP6's answer, the journal's disk, or a bug
                failure = failure or as_error(error, "send a step")
                continue
            if value is not None:
                progress.advance(len(item))
                if (verdict := done(item, value)) is not None:
                    failed.set()
                    failure = failure or verdict

    def steps() -> Iterator[list[str]]:
        nonlocal failure
        try:
            yield from items
        except Exception as error:  # a step that cannot be made: the sent ones still count
            failure = failure or as_error(error, "make a step")

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push") as pool:
        for item in steps():
            if stop.is_set() or failure is not None:
                break
            # Keep a short queue: a stop must not wait behind thousands of chunks.
            while len(in_flight) >= concurrency * 2:
                finished, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                settle(finished)
            # Each worker in the job's context: its log records name the job (run --parallel).
            in_flight[pool.submit(contextvars.copy_context().run, guarded, item)] = item
        while in_flight:
            finished, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
            settle(finished)
    return failure


class _SegmentExists:
    """A removal's 404 means "target or segment not found": it counts as "already gone"
    only once NP6 has said the segment exists, asked at the first 404 of the run; an
    unknown segment fails the job instead of passing every removal as done."""

    def __init__(self, client: NP6Client, segment_id: int) -> None:
        self._client = client
        self._segment_id = segment_id
        self._known = False
        self._unknown: FatalApiError | None = None
        self._lock = threading.Lock()

    def confirm(self) -> None:
        with self._lock:
            if self._unknown is not None:
                raise self._unknown
            if self._known:
                return
            try:
                self._client.describe_segment(self._segment_id)
            except UnexpectedAnswerError:
                pass  # a 2xx answer, even one np6-sync cannot read, means the segment exists
            except FatalApiError as error:
                if error.status != 404:
                    raise
                self._unknown = FatalApiError(
                    error.call,
                    404,
                    error.request_id,
                    f"a removal answered 404 and NP6 does not know segment {self._segment_id}: "
                    "check segment_id",
                )
                raise self._unknown from None
            self._known = True


def _chunks(keys: pa.Array, size: int) -> Iterator[list[str]]:
    for offset in range(0, len(keys), size):
        yield keys.slice(offset, size).to_pylist()
