"""The throttle: a rate limit on request starts, and a concurrency that backs off on 429."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator


class RateLimiter:
    """At most ``rate`` request starts in any window of one second (a sliding log).

    The window is kept ``margin`` seconds longer than a second, so that the requests
    still count as spread over a full second where NP6 sees them arrive, after the
    jitter of threads and connections. ``pause_until`` holds every caller back when NP6
    says its quota is spent (``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset``).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = 0.1,
    ) -> None:
        self.capacity = max(1, math.floor(rate))
        self.window = (1.0 if rate >= 1 else 1.0 / rate) + margin
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and self._starts[0] + self.window <= now:
                    self._starts.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._starts) < self.capacity:
                    self._starts.append(now)
                    return waited
                if wait <= 0:
                    wait = self._starts[0] + self.window - now
            # A floor, so float rounding can never make this a busy loop.
            wait = max(wait, 1e-4)
            self._sleep(wait)
            waited += wait

    def pause_until(self, moment: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, moment)

    def pause_for(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class AdaptiveConcurrency:
    """At most ``limit`` requests in flight. Each 429 halves the limit; ``limit``
    successes in a row raise it by one, up to the configured concurrency (AIMD, as TCP
    does), so a run settles just under the account's real rate limit."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self._in_flight = 0
        self._successes = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()

    def throttled(self) -> None:
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._successes = 0

    def succeeded(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._successes = 0
                self._cond.notify()
