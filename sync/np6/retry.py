"""The retry policy: which answers are worth another try, and how long to wait first."""

from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

import tenacity

from sync.config import RetryConfig
from sync.errors import ApiError, RetriableApiError

if TYPE_CHECKING:
    from sync.np6.stats import ClientStats

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


class FirstContact:
    """Until a request of the run is answered, the run has ``budget`` seconds to reach
    NP6 at all: a wrong host, a DNS failure or a firewall then fails in seconds, not after
    the whole retry policy. Shared by every client of a run; once NP6 has answered
    anything, it stops counting and the retries go on as configured."""

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.clock = clock
        self.started: float | None = None
        self.answered = False
        self._lock = threading.Lock()

    def left(self) -> float | None:
        """Seconds left to reach NP6 (the clock starts at the first attempt); None once
        NP6 has answered."""
        if self.answered:
            return None
        with self._lock:
            if self.started is None:
                self.started = self.clock()
        return self.budget - (self.clock() - self.started)

    def answer(self) -> None:
        self.answered = True

    def over(self, upcoming_sleep: float) -> bool:
        """No time left for another attempt after sleeping ``upcoming_sleep``."""
        if self.answered or self.started is None:
            return False
        return self.clock() + upcoming_sleep >= self.started + self.budget


def unreachable_cause(error: BaseException, connect_timeout: float) -> str:
    """Why a connection failed, in words: DNS, refused, timeout, TLS, or dropped."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        found = stack.pop()
        if id(found) in seen:
            continue
        seen.add(id(found))
        name = type(found).__name__
        if isinstance(found, socket.gaierror) or name == "NameResolutionError":
            return "DNS: the host name does not resolve"
        if isinstance(found, ConnectionRefusedError):
            return "connection refused: nothing listens on that port"
        if isinstance(found, ssl.SSLError):
            reason = getattr(found, "reason", None) or name
            return f"TLS failed ({reason}): a proxy, or not the NP6 API"
        if isinstance(found, TimeoutError | socket.timeout) or name == "ConnectTimeoutError":
            return f"no connection within {connect_timeout:g} s (timeout): a firewall?"
        links = (found.__cause__, found.__context__, getattr(found, "reason", None), *found.args)
        stack.extend(link for link in links if isinstance(link, BaseException))
    return f"the connection failed ({type(error).__name__})"


def retry_policy(
    config: RetryConfig,
    deadline: float,
    *,
    stats: ClientStats | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    contact: FirstContact | None = None,
) -> tenacity.Retrying:
    """Exponential backoff with full jitter, honouring Retry-After, stopping before the
    run's deadline (never sleeping past it) and after ``max_attempts``, and, while NP6
    has answered nothing yet, before the first contact's budget runs out."""
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

    stop = tenacity.stop_after_attempt(config.max_attempts) | _StopBefore(deadline, clock)
    if contact is not None:
        stop = stop | _StopFirstContact(contact)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(RetriableApiError),
        stop=stop,
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


class _StopFirstContact(tenacity.stop.stop_base):
    """Stop when NP6 has answered nothing yet and the first contact's budget is spent."""

    def __init__(self, contact: FirstContact) -> None:
        self.contact = contact

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.contact.over(retry_state.upcoming_sleep or 0.0)
