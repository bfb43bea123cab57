"""The retry policy: which answers are worth another try, and how long to wait first."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

import tenacity

from sync.config import RetryConfig
from sync.errors import ApiError, RetriableApiError

if TYPE_CHECKING:
    from sync.np6.client import ClientStats

log = logging.getLogger("np6sync.np6")

Verdict = Literal["ok", "retry", "fatal"]


def classify(status: int | None) -> Verdict:
    """What an answer means for the caller; ``None`` is a dropped connection or timeout."""
    if status is None or status == 429 or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "ok"
    return "fatal"


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def retry_policy(
    config: RetryConfig,
    deadline: float,
    *,
    stats: ClientStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tenacity.Retrying:
    """Exponential backoff with full jitter, honouring Retry-After, stopping before the
    run's deadline (never sleeping past it) and after ``max_attempts``."""
    backoff = tenacity.wait_random_exponential(multiplier=config.initial_wait, max=config.max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after is not None:
            return error.retry_after
        return float(backoff(state))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        rate_limited = isinstance(error, ApiError) and error.status == 429
        if stats is not None:
            stats.count_retry(state.upcoming_sleep, rate_limited)
        log.warning(
            "%s; retry %d in %.1fs",
            error,
            state.attempt_number,
            state.upcoming_sleep,
            extra={"phase": "retry", "request_id": getattr(error, "request_id", None)},
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetriableApiError),
        stop=tenacity.stop_after_attempt(config.max_attempts) | _StopBefore(deadline, clock),
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


class _StopBefore(tenacity.stop.stop_base):
    """Stop when the next wait would end past the deadline: retries stop before it."""

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) > self.deadline
