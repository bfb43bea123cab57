"""The NP6 client: session and endpoints (answers, retries and throttle live beside it)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter

from sync import __version__
from sync.config import Settings
from sync.errors import FatalApiError, RetriableApiError
from sync.np6.retry import classify, parse_retry_after, retry_policy
from sync.np6.throttle import AdaptiveConcurrency, RateLimiter

USER_AGENT = f"np6-sync/{__version__}"
log = logging.getLogger("np6sync.np6")
JSON = "application/json"

_HINTS = {
    400: "NP6 refused the request body",
    401: "NP6 refused the API key; check the key in the environment variable",
    403: "the API key may not change this segment",
    404: "NP6 does not know this segment (or endpoint)",
    409: "conflict: the segment may be dynamic, or busy",
    429: "rate limited",
    503: "NP6 is unavailable (maintenance?)",
}


@dataclass
class ClientStats:
    """What the client did, for the report. Updated from several threads."""

    calls: dict[str, int] = field(default_factory=lambda: {"put": 0, "delete": 0, "post": 0})
    retries: int = 0
    retry_wait_s: float = 0.0
    rate_limit_wait_s: float = 0.0
    request_ids: deque[str] = field(default_factory=lambda: deque(maxlen=20))
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


def make_session(settings: Settings, api_key: str) -> requests.Session:
    """One pooled session; the pool holds as many connections as requests in flight."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.concurrency, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"X-Key": api_key, "User-Agent": USER_AGENT, "Accept": JSON})
    return session


class NP6Client:
    """The NP6 calls np6-sync makes. Every error it raises is an ApiError."""

    def __init__(
        self,
        session: requests.Session,
        settings: Settings,
        api_key: str,
        *,
        policy: Callable[[], tenacity.Retrying],
        limiter: RateLimiter | None = None,
        gate: AdaptiveConcurrency | None = None,
        stats: ClientStats | None = None,
    ) -> None:
        self.session = session
        self.base_url = settings.base_url
        self.timeout = (settings.timeouts.connect, settings.timeouts.read)
        self.max_retry_after = settings.retry.max_retry_after
        self.unicity_media_type = settings.unicity_media_type
        self._api_key = api_key
        self._policy = policy
        self.limiter = limiter
        self.gate = gate or AdaptiveConcurrency(settings.concurrency)
        self.stats = stats or ClientStats()

    def close(self) -> None:
        self.session.close()

    def add_targets(self, segment_id: int, targets: Sequence[str], unicity: bool = True) -> int:
        """PUT up to 50 targets; NP6 answers how many it added."""
        headers = {"Accept": self.unicity_media_type} if unicity and self.unicity_media_type else {}
        answer = self._call("PUT", f"/segments/{segment_id}/targets", list(targets), headers)
        try:
            return int(answer.json())
        except (ValueError, TypeError):
            return len(targets)

    def remove_target(self, segment_id: int, target_id: str) -> bool:
        """Take one target out of a segment; False when NP6 says it was not in it (404),
        which is also what a retry sees after an answer that was lost."""
        try:
            self._call("DELETE", f"/targets/{quote(target_id, safe='')}/segments/{segment_id}")
        except FatalApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def clear_segment(self, segment_id: int) -> None:
        self._call("DELETE", f"/segments/{segment_id}/targets")

    def normalize(self, segment_id: int, fields: dict[str, list[str]]) -> None:
        self._call("POST", f"/segments/{segment_id}/normalization", {"fields": fields})

    def list_targets(self, segment_id: int) -> list[str]:
        answer = self._call("GET", f"/segments/{segment_id}/targets")
        return [str(t) for t in answer.json()]

    def _call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> requests.Response:
        self.stats.count_call(method)
        data = orjson.dumps(body) if body is not None else None
        headers = {**(headers or {}), **({"Content-Type": JSON} if data is not None else {})}
        for attempt in self._policy():
            with attempt:
                return self._once(method, path, data, headers)
        raise AssertionError("unreachable: the retry policy re-raises")  # pragma: no cover

    def _once(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> requests.Response:
        call = f"{method} {path}"
        if self.limiter is not None:
            waited = self.limiter.acquire()
            if waited:
                self.stats.count_throttle(waited)
        try:
            with self.gate.slot():
                answer = self.session.request(
                    method, self.base_url + path, data=data, headers=headers, timeout=self.timeout
                )
        except requests.Timeout:
            raise RetriableApiError(call, None, detail="timed out") from None
        except requests.RequestException as exc:
            raise RetriableApiError(call, None, detail=type(exc).__name__) from None
        request_id = answer.headers.get("x-request-id")
        if request_id:
            self.stats.request_ids.append(request_id)
        self._honour_quota(answer)
        verdict = classify(answer.status_code)
        if answer.status_code == 429:
            self.gate.throttled()
        if verdict == "ok":
            self.gate.succeeded()
            return answer
        detail = self._detail(answer)
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), self.max_retry_after)
        answer.close()
        error = RetriableApiError if verdict == "retry" else FatalApiError
        raise error(call, answer.status_code, request_id, detail, retry_after)

    def _honour_quota(self, answer: requests.Response) -> None:
        if self.limiter is None or answer.headers.get("X-RateLimit-Remaining") != "0":
            return
        value = answer.headers.get("X-RateLimit-Reset", "")
        # Some APIs send seconds to wait, others the epoch second of the reset.
        if value.isdigit() and int(value) > 1_000_000_000:
            value = str(int(value) - time.time())
        reset = parse_retry_after(value, self.max_retry_after)
        if reset:
            self.limiter.pause_until(time.monotonic() + reset)

    def _detail(self, answer: requests.Response) -> str:
        hint = _HINTS.get(answer.status_code, "")
        body = answer.text.strip().replace("\n", " ")
        # Some servers echo request headers in error bodies: never let the key through.
        # Redacted before the cut, which could otherwise leave a prefix of the key.
        body = body.replace(self._api_key, "[redacted]") if self._api_key else body
        body = body[:200]
        return "; ".join(part for part in (hint, body) if part)


def client_factory(
    settings: Settings, api_key: str, deadline: float = math.inf
) -> Callable[[], NP6Client]:
    """Clients on demand, one per job, sharing the rate limit and the retry deadline."""
    limiter = RateLimiter(settings.max_requests_per_second)
    gate = AdaptiveConcurrency(settings.concurrency)

    def connect() -> NP6Client:
        stats = ClientStats()
        return NP6Client(
            make_session(settings, api_key),
            settings,
            api_key,
            policy=lambda: retry_policy(settings.retry, deadline, stats=stats),
            limiter=limiter,
            gate=gate,
            stats=stats,
        )

    return connect
