"""`run --parallel N`: up to N jobs at the same time, their reports in the order given.

The jobs share what the account has once: the connector's one rate limit and one
concurrency budget (sync/commands/common.py), and the stop signal. A failing job never
stops the others; each job's memory is its own, so the peak grows with N.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def in_parallel(tasks: Sequence[Callable[[], T | None]], workers: int) -> list[T]:
    """Run ``tasks`` on ``workers`` threads; their results in the tasks' order (a task that
    returns None, one a stop kept from starting, leaves no result)."""
    results: dict[int, T] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job") as pool:
        pending: dict[Future[T | None], int] = {
            pool.submit(contextvars.copy_context().run, task): index
            for index, task in enumerate(tasks)
        }
        while pending:
            # A timeout, so that the main thread wakes for a signal's handler.
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                result = future.result()  # the tasks turn every failure into a report
                if result is not None:
                    results[index] = result
    return [results[index] for index in sorted(results)]
