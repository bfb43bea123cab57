"""What the client did, counted for the report: calls, retries, waits, quota headers."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class ClientStats:
    """What the client did, for the report. Updated from several threads."""

    calls: dict[str, int] = field(default_factory=lambda: {"put": 0, "delete": 0, "post": 0})
    retries: int = 0
    retry_wait_s: float = 0.0
    rate_limit_wait_s: float = 0.0
    request_ids: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    # The last X-RateLimit-* headers seen, as sent: their unit is not documented.
    quota: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_call(self, method: str) -> None:
        with self._lock:
            key = method.lower()
            self.calls[key] = self.calls.get(key, 0) + 1

    def count_retry(self, wait: float, rate_limited: bool) -> None:
        with self._lock:
            self.retries += 1
            self.retry_wait_s += wait
            if rate_limited:
                self.rate_limit_wait_s += wait

    def count_throttle(self, wait: float) -> None:
        with self._lock:
            self.rate_limit_wait_s += wait

    def saw_quota(self, headers: dict[str, str]) -> None:
        with self._lock:
            self.quota = dict(headers)
