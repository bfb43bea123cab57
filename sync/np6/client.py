"""The NP6 client: session and endpoints (answers, retries and throttle live beside it)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter

from sync.config import Settings
from sync.errors import (
    FatalApiError,
    RetriableApiError,
    UnexpectedAnswerError,
    UnreachableError,
)
from sync.np6.answers import (
    AnswerShapeError,
    SegmentInfo,
    parse_count,
    parse_ids,
    parse_segment,
    quoted,
)
from sync.np6.key import key_refused, redact, without_values
from sync.np6.retry import (
    FirstContact,
    classify,
    parse_retry_after,
    retry_policy,
    unreachable_cause,
)
from sync.np6.stats import ClientStats
from sync.np6.throttle import AdaptiveConcurrency, RateLimiter
from sync.version import version

USER_AGENT = f"np6-sync/{version()}"
log = logging.getLogger("np6sync.np6")
JSON = "application/json"
T = TypeVar("T")

_HINTS = {
    400: "NP6 refused the request body",
    404: "NP6 does not know this segment (or endpoint)",
    409: "conflict: the segment is dynamic, or the target is already a member",
    415: "NP6 refused the media type (unicity values may need unicity_media_type)",
    429: "rate limited",
    503: "NP6 is unavailable (maintenance?)",
}


def make_session(settings: Settings, api_key: str) -> requests.Session:
    """One pooled session; the pool holds as many connections as requests in flight."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.concurrency, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"X-Key": api_key, "User-Agent": USER_AGENT, "Accept": JSON})
    return session


class NP6Client:
    """The NP6 calls np6-sync makes. Every error it raises is an ApiError.

    It never follows a redirect: the key would go with the request to whatever host the
    answer names (requests drops only ``Authorization`` on the way). A 3xx is fatal, and
    the client sends nothing more afterwards. Error text is redacted here, in every form
    of the key and of the list's values the call carried, before it is shortened: this is
    the primary guard (see sync/np6/key.py).
    """

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
        contact: FirstContact | None = None,
        key_name: str | None = None,
    ) -> None:
        self.session = session
        self.base_url = settings.base_url
        self.timeout = (settings.timeouts.connect, settings.timeouts.read)
        self.max_retry_after = settings.retry.max_retry_after
        self.max_quota_wait = settings.retry.max_wait
        self.unicity_media_type = settings.unicity_media_type
        self.folds_case = settings.unicity_folds_case
        self._api_key = api_key
        self._policy = policy
        self.limiter = limiter
        self.gate = gate or AdaptiveConcurrency(settings.concurrency)
        self.stats = stats or ClientStats()
        self._redirected: FatalApiError | None = None
        self.contact = contact
        self.first_contact = settings.timeouts.first_contact
        self.key_name = key_name or settings.api_key_env
        self._sent_change = False  # a PUT, DELETE or POST left: the segment may have changed

    def close(self) -> None:
        self.session.close()

    def add_targets(self, segment_id: int, targets: Sequence[str], unicity: bool = True) -> int:
        """PUT up to 50 targets; NP6 answers how many it added, and only a count is read
        as one (UnexpectedAnswerError otherwise: nothing is taken as accepted)."""
        headers = {"Accept": self.unicity_media_type} if unicity and self.unicity_media_type else {}
        path = f"/segments/{segment_id}/targets"
        answer = self._call("PUT", path, list(targets), headers, values=targets)
        count = functools.partial(parse_count, sent=len(targets))
        return self._read(answer, f"PUT {path}", count, targets)

    def remove_target(self, segment_id: int, target_id: str) -> bool:
        """Take one target out of a segment; False on a 404, which NP6 answers both for a
        target not in the segment (or a retry after a lost answer) and for an unknown
        segment: the caller tells them apart (``describe_segment``)."""
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
        path = f"/segments/{segment_id}/targets"
        return self._read(self._call("GET", path), f"GET {path}", parse_ids)

    def describe_segment(self, segment_id: int) -> SegmentInfo:
        """``GET /segments/{id}``: its name, type (static or dynamic) and estimated size;
        FatalApiError 404 for a segment NP6 does not know."""
        path = f"/segments/{segment_id}"
        answer = self._call("GET", path)
        return self._read(answer, f"GET {path}", lambda body: parse_segment(body, segment_id))

    def lookup(self, unicity_value: str, position: int | None = None) -> list[str]:
        """The ids of the contacts whose unicity value is ``unicity_value`` (empty when
        none). The value is personal data: errors name the call by ``position`` (in the
        caller's sample) or a short digest, never by the value."""
        path = f"/targets?unicity={quote(unicity_value, safe='')}"
        if position is not None:
            label = f"GET /targets?unicity=(value #{position})"
        else:
            digest = hashlib.sha256(unicity_value.encode()).hexdigest()[:8]
            label = f"GET /targets?unicity=(value sha256:{digest})"
        answer = self._call("GET", path, label=label, values=[unicity_value])
        return self._read(answer, label, parse_ids, [unicity_value])

    def _read(
        self,
        answer: requests.Response,
        call: str,
        parse: Callable[[bytes], T],
        values: Sequence[str] = (),
    ) -> T:
        try:
            return parse(answer.content)
        except AnswerShapeError as problem:
            text = without_values(redact(_text(answer), self._api_key), values)
            request_id = answer.headers.get("x-request-id")
            detail = f"the answer is {problem}: {quoted(text)}"
            raise UnexpectedAnswerError(call, answer.status_code, request_id, detail) from None

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        label: str | None = None,
        values: Sequence[str] = (),
    ) -> requests.Response:
        """One call, retried; ``values``: the list's keys it carries (personal data), which
        no error text may show, whatever form an answer echoes them in."""
        if self._redirected is not None:
            raise self._redirected  # sent nothing: counted nothing
        self.stats.count_call(method)
        data = orjson.dumps(body) if body is not None else None
        headers = {**(headers or {}), **({"Content-Type": JSON} if data is not None else {})}
        call = label or f"{method} {path}"
        try:
            for attempt in self._policy():
                with attempt:
                    return self._once(method, path, call, data, headers, values)
        except UnreachableError as error:
            raise UnreachableError(
                error.call,
                None,
                detail=f"{error.detail}; NP6 has answered nothing yet: given up within "
                f"timeouts.first_contact ({self.first_contact:g} s): check base_url, the "
                "network, a proxy",
            ) from None
        raise AssertionError("unreachable: the retry policy re-raises")  # pragma: no cover

    def _once(
        self,
        method: str,
        path: str,
        call: str,
        data: bytes | None,
        headers: dict[str, str],
        values: Sequence[str],
    ) -> requests.Response:
        timeout = self._timeout()
        sent_change = self._sent_change
        answer = self._request(method, path, call, data, headers, timeout)
        request_id = answer.headers.get("x-request-id")
        if request_id:
            self.stats.request_ids.append(request_id)
        self._honour_quota(answer)
        if 300 <= answer.status_code < 400:
            answer.close()
            self._redirected = FatalApiError(
                call, answer.status_code, request_id, self._redirect_detail(answer, values)
            )
            raise self._redirected
        verdict = classify(answer.status_code)
        if answer.status_code == 429:
            self.gate.throttled()
        if verdict == "ok":
            self.gate.succeeded()
            return answer
        detail = self._detail(answer, values)
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), self.max_retry_after)
        answer.close()
        if answer.status_code in (401, 403):
            raise key_refused(
                self.key_name,
                (method, path, call),
                answer.status_code,
                request_id,
                detail,
                sent_change=sent_change,
            )
        error = RetriableApiError if verdict == "retry" else FatalApiError
        raise error(call, answer.status_code, request_id, detail, retry_after)

    def _timeout(self) -> tuple[float, float]:
        """The request's timeouts, once the rate limit let it go: until NP6 has answered
        once, the connect timeout is what is left of the first-contact budget."""
        if self.limiter is not None:
            waited = self.limiter.acquire()
            if waited:
                self.stats.count_throttle(waited)
        left = self.contact.left() if self.contact is not None else None
        timeout = self.timeout
        if left is not None:  # NP6 has answered nothing yet: connect within the budget
            timeout = (max(min(self.timeout[0], left), 0.05), self.timeout[1])
        return timeout

    def _request(
        self,
        method: str,
        path: str,
        call: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: tuple[float, float],
    ) -> requests.Response:
        """One request on the wire, within the concurrency gate; a connection failure as
        the error tree's (unreachable while NP6 has answered nothing, else retriable)."""
        try:
            with self.gate.slot():
                if self._redirected is not None:
                    raise self._redirected  # after a redirect, nothing more leaves with the key
                if method != "GET":
                    self._sent_change = True
                answer = self.session.request(
                    method,
                    self.base_url + path,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            if self.contact is not None and not self.contact.answered:
                detail = self._unreachable(exc, timeout[0])
                raise UnreachableError(call, None, detail=detail) from None
            if isinstance(exc, requests.Timeout):
                raise RetriableApiError(call, None, detail="timed out") from None
            raise RetriableApiError(call, None, detail=type(exc).__name__) from None
        if self.contact is not None:
            self.contact.answer()
        return answer

    def _unreachable(self, error: requests.RequestException, connect_timeout: float) -> str:
        url = urlsplit(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return f"cannot reach {url.hostname}:{port}: {unreachable_cause(error, connect_timeout)}"

    def _honour_quota(self, answer: requests.Response) -> None:
        """Keep NP6's quota headers for the report; their unit is not documented, so a
        spent quota pauses the run no longer than a backoff wait would (``max_wait``)."""
        quota = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-ratelimit-")}
        if quota:
            self.stats.saw_quota(quota)
        if self.limiter is None or answer.headers.get("X-RateLimit-Remaining") != "0":
            return
        value = answer.headers.get("X-RateLimit-Reset", "")
        # Some APIs send seconds to wait, others the epoch second of the reset.
        if value.isdigit() and int(value) > 1_000_000_000:
            value = str(int(value) - time.time())
        reset = parse_retry_after(value, self.max_quota_wait)
        if reset:
            self.limiter.pause_for(reset)

    def _redirect_detail(self, answer: requests.Response, values: Sequence[str]) -> str:
        location = answer.headers.get("Location", "")
        # The query may carry a token or the key itself: only where it points is shown;
        # its path may echo the list's values: cut, as the error is raised again for
        # every later call, whatever value that one carries.
        where = urlunsplit(urlsplit(location)._replace(query="", fragment=""))
        where = without_values(redact(where, self._api_key), values)
        where = where[:200] if where else "(no Location)"
        return (
            f"NP6 answered a redirect to {where}; np6-sync never follows one with the key: "
            "check base_url"
        )

    def _detail(self, answer: requests.Response, values: Sequence[str]) -> str:
        hint = _HINTS.get(answer.status_code, "")
        # Redacted before shortening: a key straddling the cut would leak its first part.
        body = without_values(redact(_text(answer), self._api_key), values)
        body = body.strip().replace("\n", " ")[:200]
        return "; ".join(part for part in (hint, body) if part)


def _text(answer: requests.Response) -> str:
    """The body as NP6 wrote it (UTF-8), whatever its Content-Type claims: a key echoed
    in a body mis-decoded would not be recognised, and so not redacted."""
    try:
        return answer.content.decode("utf-8")
    except UnicodeDecodeError:
        return answer.content.decode("latin-1")


def client_factory(
    settings: Settings, api_key: str, deadline: float = math.inf, key_name: str | None = None
) -> Callable[[], NP6Client]:
    """Clients on demand, one per job, sharing the rate limit, the retry deadline and the
    first contact's budget. ``key_name``: where the key came from, for a 401's message
    (default: the settings' api_key_env)."""
    limiter = RateLimiter(settings.max_requests_per_second)
    gate = AdaptiveConcurrency(settings.concurrency)
    contact = FirstContact(settings.timeouts.first_contact)

    def connect() -> NP6Client:
        stats = ClientStats()
        return NP6Client(
            make_session(settings, api_key),
            settings,
            api_key,
            policy=lambda: retry_policy(settings.retry, deadline, stats=stats, contact=contact),
            limiter=limiter,
            gate=gate,
            stats=stats,
            contact=contact,
            key_name=key_name,
        )

    return connect
