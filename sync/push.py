"""Carry out a plan: clear if it says so, then chunked PUTs with bounded concurrency.

Every chunk NP6 acknowledges is written to the journal (fsynced) before anything else
happens, so a run stopped at any point loses at most the chunks in flight, and the next
run sends those again (adding a target twice is harmless in NP6).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import pyarrow as pa

from sync.errors import ApiError
from sync.np6 import NP6Client
from sync.plan import Plan
from sync.progress import Progress
from sync.state import Journal


@dataclass
class PushResult:
    targets_sent: int = 0
    targets_accepted: int = 0
    chunks_acknowledged: int = 0
    cleared: bool = False
    interrupted: bool = False
    error: ApiError | None = None  # the first error retries could not overcome


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
) -> PushResult:
    """Apply ``plan`` to the segment.

    An error of the clear is raised; the first error of a chunk stops the sending, lets
    the chunks in flight finish (and be journaled), and is returned in the result.
    """
    stop = stop or threading.Event()
    result = PushResult()
    if plan.clears:
        journal.record({"event": "clearing"})
        client.clear_segment(segment_id)
        journal.record({"event": "cleared"})
        result.cleared = True
    if progress is not None:
        progress.start("push", total=len(plan.send))

    def send(chunk: list[str]) -> int:
        accepted = client.add_targets(segment_id, chunk, unicity=unicity)
        journal.added(chunk)
        return accepted

    failure: ApiError | None = None
    in_flight: dict[Future[int], int] = {}

    def settle(done: set[Future[int]]) -> None:
        nonlocal failure
        for future in done:
            size = in_flight.pop(future)
            try:
                accepted = future.result()
            except ApiError as error:
                failure = failure or error
                continue
            result.targets_sent += size
            result.targets_accepted += accepted
            result.chunks_acknowledged += 1
            if progress is not None:
                progress.advance(size)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push") as pool:
        for chunk in _chunks(plan.send, chunk_size):
            if stop.is_set() or failure is not None:
                break
            # Keep a short queue: a stop must not wait behind thousands of chunks.
            while len(in_flight) >= concurrency * 2:
                done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                settle(done)
            in_flight[pool.submit(send, chunk)] = len(chunk)
        while in_flight:
            done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
            settle(done)
    if progress is not None:
        progress.finish()
    result.error = failure
    result.interrupted = stop.is_set() and result.targets_sent < len(plan.send)
    return result


def _chunks(keys: pa.Array, size: int) -> Iterator[list[str]]:
    for offset in range(0, len(keys), size):
        yield keys.slice(offset, size).to_pylist()
