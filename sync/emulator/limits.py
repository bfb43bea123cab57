"""Faults and quotas: what makes the emulator refuse or fail a request it would serve."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

ALL_FAULTS: tuple[str, ...] = ("429", "429-retry-after", "500", "503", "drop", "lost")
NO_FAULT = "none"  # injected before a fault, to let the requests ahead of it through


def check_faults(faults: Iterable[str]) -> None:
    unknown = sorted(set(faults) - set(ALL_FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_FAULTS)}")


class Faults:
    """Injected faults first, in order; then random ones at ``rate`` (seeded). Faults
    injected for a call (``"GET /targets?"``: a prefix of the method and path) go to the
    next requests of that call only, before those injected for any."""

    def __init__(self, rate: float, kinds: Sequence[str], seed: int) -> None:
        check_faults(kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, not {rate}")
        if rate and not kinds:
            raise ValueError("fault_rate needs at least one fault kind")
        self.rate = rate
        self.kinds = tuple(kinds)
        self._injected: deque[str] = deque()
        self._for_call: dict[str, deque[str]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def inject(self, faults: Sequence[str], call: str | None = None) -> None:
        check_faults(f for f in faults if f != NO_FAULT)
        with self._lock:
            if call is None:
                self._injected.extend(faults)
            else:
                self._for_call.setdefault(call, deque()).extend(faults)

    def draw(self, call: str = "") -> str | None:
        with self._lock:
            for prefix, queue in self._for_call.items():
                if queue and call.startswith(prefix):
                    fault = queue.popleft()
                    return None if fault == NO_FAULT else fault
            if self._injected:
                fault = self._injected.popleft()
                return None if fault == NO_FAULT else fault
            if self.rate and self._rng.random() < self.rate:
                return self._rng.choice(self.kinds)
        return None


class Window:
    """At most ``limit`` requests in any ``seconds``-long sliding window.

    NP6 may send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` [S]; Reset's unit is
    not documented [S], so it is either the seconds left (``epoch=False``) or the epoch
    second of the reset (``epoch=True``), to try both readings. [I]
    """

    def __init__(
        self,
        limit: int,
        seconds: float,
        *,
        epoch: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError(f"a quota needs at least 1 request per window, not {limit}")
        self.limit = limit
        self.seconds = seconds
        self.epoch = epoch
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> tuple[dict[str, str], bool]:
        """Count one request: (the quota headers, whether it is refused)."""
        with self._lock:
            now = self._clock()
            while self._times and self._times[0] <= now - self.seconds:
                self._times.popleft()
            refused = len(self._times) >= self.limit
            if not refused:
                self._times.append(now)
            remaining = self.limit - len(self._times)
            reset = max(1, math.ceil(self._times[0] + self.seconds - now))
        if self.epoch:
            reset += int(time.time())
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(remaining)}
        return {**headers, "X-RateLimit-Reset": str(reset)}, refused
