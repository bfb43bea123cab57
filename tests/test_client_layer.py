"""What the NP6 client itself guarantees, with no logging configured: redaction, the
answer classes and hints, Retry-After and quota pauses, removals, the stats, the rate
limiter and the adaptive concurrency, each at its edge.

Two layers keep the API key out of the output: the client redacts NP6's error bodies
before they go into an ``ApiError`` (pinned here), and the log formatter redacts every
log line (pinned in test_logs.py). An ``ApiError``'s text also reaches the report, the
JSON report and the Markdown summary, which do not pass through the log formatter: the
client's layer is the guard there, so it is tested on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import formatdate
from urllib.parse import quote, quote_plus

import pytest
import requests
import requests.adapters

from conftest import API_KEY
from sync.config import RetryConfig, Settings
from sync.errors import ApiError, FatalApiError, KeyRefusedError, RetriableApiError, UsageError
from sync.np6.answers import (
    AnswerShapeError,
    SegmentInfo,
    parse_count,
    parse_ids,
    parse_segment,
    quoted,
)
from sync.np6.client import (
    AdaptiveConcurrency,
    ClientStats,
    NP6Client,
    RateLimiter,
    classify,
    client_factory,
    make_session,
    parse_retry_after,
    retry_policy,
)
from sync.np6.key import check_api_key, redact


class Scripted(requests.adapters.BaseAdapter):
    """Answers each request with the next (status, headers, body) of a script, or raises
    the next item when it is an exception; keeps each request and how it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes] | Exception]) -> None:
        super().__init__()
        self.answers: Iterator[tuple[int, dict[str, str], bytes] | Exception] = iter(answers)
        self.urls: list[str] = []
        self.sent: list[requests.PreparedRequest] = []
        self.options: list[dict[str, object]] = []

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        self.urls.append(request.url)
        self.sent.append(request)
        self.options.append(kwargs)
        step = next(self.answers)
        if isinstance(step, Exception):
            raise step
        status, headers, body = step
        answer = requests.Response()
        answer.status_code, answer._content, answer.request = status, body, request
        answer.headers.update(headers)
        return answer

    def close(self) -> None:
        pass


def scripted_client(
    answers: list[tuple[int, dict[str, str], bytes]],
    sleeps: list[float],
    limiter: RateLimiter | None = None,
    **retry: float,
) -> NP6Client:
    settings = Settings(base_url="https://np6.invalid", retry=RetryConfig(**retry))
    session = make_session(settings, API_KEY)
    session.mount("https://", Scripted(answers))
    return NP6Client(
        session,
        settings,
        API_KEY,
        policy=lambda: retry_policy(settings.retry, 1e18, sleep=sleeps.append),
        limiter=limiter,
    )


@pytest.mark.parametrize(
    ("header", "slept"),
    [
        pytest.param("4.5", 4.5, id="under"),
        pytest.param("5", 5.0, id="at"),
        pytest.param("5.5", 5.0, id="over"),
        pytest.param("86400", 5.0, id="far-over"),
    ],
)
def test_the_client_caps_retry_after_at_max_retry_after(header: str, slept: float) -> None:
    sleeps: list[float] = []
    answers = [(429, {"Retry-After": header}, b""), (200, {}, b"1")]
    client = scripted_client(answers, sleeps, max_retry_after=5.0)
    assert client.add_targets(7, ["a@x.fr"]) == 1
    assert sleeps == [slept]


BODIES = [
    pytest.param(f"bad header X-Key: {API_KEY}", id="key-in-body"),
    pytest.param(f'{{"headers": {{"X-Key": "{API_KEY}", "X-Other": "{API_KEY}"}}}}', id="twice"),
    # The body is cut to 200 characters: a key across the cut must not leave a prefix.
    pytest.param("x" * 190 + API_KEY, id="key-across-the-cut"),
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(400, FatalApiError, id="fatal"),
        pytest.param(503, RetriableApiError, id="retry"),
    ],
)
def test_the_client_redacts_the_key_from_error_bodies(
    body: str, status: int, error: type[ApiError]
) -> None:
    client = scripted_client([(status, {}, body.encode())], [], max_attempts=1)
    with pytest.raises(error) as raised:
        client.add_targets(7, ["a@x.fr"])
    text = f"{raised.value} {raised.value.detail}"
    assert API_KEY[:6] not in text
    assert "[redacted]" in raised.value.detail
    assert f"PUT /segments/7/targets: HTTP {status}" in str(raised.value)


def test_the_client_keeps_an_error_body_without_the_key_as_it_is() -> None:
    client = scripted_client([(400, {}, b"unknown field 'foo'\n")], [])
    with pytest.raises(FatalApiError) as raised:
        client.add_targets(7, ["a@x.fr"])
    assert raised.value.detail == "NP6 refused the request body; unknown field 'foo'"


@pytest.mark.parametrize(
    ("status", "error", "hint"),
    [
        pytest.param(400, FatalApiError, "NP6 refused the request body", id="400"),
        pytest.param(401, KeyRefusedError, "NP6 does not accept the API key in NP6_API_KEY: "
                     "it is wrong, expired or revoked; set NP6_API_KEY to the key of an NP6 "
                     "API user; nothing was sent", id="401"),
        pytest.param(403, KeyRefusedError, "the API key in NP6_API_KEY lacks the right to add "
                     "targets to segment 7: a key has the rights of the NP6 user it belongs "
                     "to; give that user this right, or set NP6_API_KEY to another user's key; "
                     "nothing was sent", id="403"),
        pytest.param(404, FatalApiError, "NP6 does not know this segment (or endpoint)", id="404"),
        pytest.param(409, FatalApiError, "conflict: the segment is dynamic, or the target is "
                     "already a member", id="409"),
        pytest.param(415, FatalApiError, "NP6 refused the media type (unicity values may need "
                     "unicity_media_type)", id="415"),
        pytest.param(429, RetriableApiError, "rate limited", id="429"),
        pytest.param(503, RetriableApiError, "NP6 is unavailable (maintenance?)", id="503"),
        pytest.param(418, FatalApiError, "", id="no-hint"),
    ],
)  # fmt: skip
def test_each_answer_names_its_hint_and_request_id(
    status: int, error: type[ApiError], hint: str
) -> None:
    answers = [(status, {"x-request-id": "req-42"}, b"")]
    client = scripted_client(answers, [], max_attempts=1)
    with pytest.raises(error) as raised:
        client.add_targets(7, ["a@x.fr"])
    assert raised.value.detail == hint
    assert raised.value.request_id == "req-42"
    assert list(client.stats.request_ids) == ["req-42"]
    suffix = f" ({hint})" if hint else ""
    assert (
        str(raised.value) == f"PUT /segments/7/targets: HTTP {status}{suffix} (x-request-id req-42)"
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(199, "fatal"), (200, "ok"), (299, "ok"), (300, "fatal"), (428, "fatal"), (429, "retry"),
     (430, "fatal"), (499, "fatal"), (500, "retry"), (599, "retry")],
    ids=str,
)  # fmt: skip
def test_the_edges_of_each_answer_class(status: int, verdict: str) -> None:
    assert classify(status) == verdict


class _Paused(Exception):
    pass


def pause_after(headers: dict[str, str]) -> float | None:
    """How long the rate limiter holds the next request after an answer with ``headers``
    (None: not held)."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise _Paused

    limiter = RateLimiter(1000, sleep=sleep)
    client = scripted_client([(200, headers, b"1")], [], limiter=limiter, max_wait=60.0)
    assert client.add_targets(7, ["a@x.fr"]) == 1
    try:
        limiter.acquire()
    except _Paused:
        return waits[0]
    return None


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, 20, 30,
                     id="seconds"),
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600"}, 50, 60,
                     id="capped-at-max_wait"),
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "epoch+30"}, 20, 31,
                     id="epoch-second"),
        # The largest number read as seconds to wait (31 years: capped at max_wait).
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000000000"}, 50, 60,
                     id="1e9-is-seconds"),
    ],
)  # fmt: skip
def test_a_spent_quota_holds_the_next_request_until_the_reset(
    headers: dict[str, str], low: float, high: float
) -> None:
    reset = headers["X-RateLimit-Reset"]
    if reset.startswith("epoch+"):
        headers = {**headers, "X-RateLimit-Reset": str(int(time.time()) + int(reset[6:]))}
    waited = pause_after(headers)
    assert waited is not None and low < waited <= high


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "30"}, id="remaining"),
        pytest.param({"X-RateLimit-Remaining": "0"}, id="no-reset"),
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}, id="reset-now"),
        # The smallest number read as an epoch second: one long past.
        pytest.param(
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000000001"}, id="epoch-past"
        ),
        pytest.param({}, id="no-quota-headers"),
    ],
)
def test_a_quota_not_spent_holds_nothing(headers: dict[str, str]) -> None:
    assert pause_after(headers) is None


def test_the_session_never_retries_on_its_own() -> None:
    settings = Settings(concurrency=7)
    session = make_session(settings, API_KEY)
    for prefix in ("https://", "http://"):
        adapter = session.get_adapter(prefix + "np6.invalid")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        # Retries are the policy's (counted, capped, journaled); urllib3's would be silent.
        assert adapter.max_retries.total == 0
        assert adapter._pool_maxsize == 7
    assert session.headers["X-Key"] == API_KEY
    assert session.headers["Accept"] == "application/json"


def client(answers, key: str = API_KEY, **retry: float) -> tuple[NP6Client, Scripted]:  # type: ignore[no-untyped-def]
    settings = Settings(base_url="https://np6.invalid", retry=RetryConfig(**retry))
    session = make_session(settings, key)
    transport = Scripted(answers)
    session.mount("https://", transport)
    stats = ClientStats()
    np6 = NP6Client(
        session,
        settings,
        key,
        policy=lambda: retry_policy(settings.retry, 1e18, stats=stats, sleep=lambda s: None),
        stats=stats,
    )
    return np6, transport


@pytest.mark.parametrize(
    ("status", "removed"),
    [pytest.param(204, True, id="removed"), pytest.param(404, False, id="not-in-segment")],
)
def test_a_removal_says_whether_the_target_was_in_the_segment(status: int, removed: bool) -> None:
    np6, transport = client([(status, {}, b"")])
    assert np6.remove_target(7, "a/b c?") is removed
    # A target id is one path segment, whatever it holds.
    assert transport.urls == ["https://np6.invalid/targets/a%2Fb%20c%3F/segments/7"]


def test_a_removal_fails_on_other_errors() -> None:
    np6, _ = client([(403, {}, b"")], max_attempts=1)
    with pytest.raises(FatalApiError):
        np6.remove_target(7, "00000001")


def test_an_error_body_is_one_line_of_at_most_200_characters() -> None:
    body = "first line\nsecond line\n" + "x" * 400
    np6, _ = client([(400, {}, body.encode())])
    with pytest.raises(FatalApiError) as raised:
        np6.add_targets(7, ["a"])
    detail = raised.value.detail.removeprefix("NP6 refused the request body; ")
    assert detail == ("first line second line " + "x" * 400)[:200]


def test_without_a_key_nothing_is_redacted() -> None:
    np6, _ = client([(400, {}, b"plain body")], key="")
    with pytest.raises(FatalApiError) as raised:
        np6.add_targets(7, ["a"])
    assert raised.value.detail == "NP6 refused the request body; plain body"


def test_an_http_date_is_read_against_the_real_clock() -> None:
    in_a_minute = formatdate(time.time() + 60, usegmt=True)
    waited = parse_retry_after(in_a_minute, cap=300.0)
    assert waited is not None and 30 < waited <= 61


def test_the_stats_add_every_wait_up() -> None:
    answers = [
        (429, {"Retry-After": "2"}, b""),
        (429, {"Retry-After": "3"}, b""),
        (503, {"Retry-After": "4"}, b""),
        (200, {}, b"1"),
    ]
    np6, _ = client(answers, max_attempts=4)
    assert np6.add_targets(7, ["a"]) == 1
    assert np6.stats.retries == 3
    assert np6.stats.retry_wait_s == 9.0
    assert np6.stats.rate_limit_wait_s == 5.0  # only the 429s


def test_the_rate_limiters_waits_are_counted_as_rate_limit_waits() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    np6, _ = client([(200, {}, b"1")] * 3)
    np6.limiter = RateLimiter(1, clock=lambda: clock[0], sleep=sleep, margin=0.0)
    for _ in range(3):
        np6.add_targets(7, ["a"])
    assert np6.stats.rate_limit_wait_s == pytest.approx(2.0)
    assert np6.stats.retry_wait_s == 0.0


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def limiter(self, rate: float) -> RateLimiter:
        return RateLimiter(rate, clock=lambda: self.now, sleep=self.sleep, margin=0.0)


def test_a_start_exactly_one_window_old_no_longer_counts() -> None:
    fake = FakeTime()
    limiter = fake.limiter(1)
    assert limiter.acquire() == 0.0
    fake.now = 1.0
    assert limiter.acquire() == 0.0 and fake.sleeps == []


def test_the_limiter_waits_for_the_oldest_start_in_one_sleep() -> None:
    fake = FakeTime()
    limiter = fake.limiter(2)
    limiter.acquire()
    fake.now = 0.5
    limiter.acquire()
    fake.now = 0.6
    assert limiter.acquire() == pytest.approx(0.4)
    assert fake.sleeps == [pytest.approx(0.4)]


@pytest.mark.parametrize(
    ("used", "now", "pause", "sleeps"),
    [
        pytest.param(False, 0.0, 0.5, [0.5], id="short-pause-free-slot"),
        pytest.param(True, 0.8, 1.5, [1.5], id="pause-past-the-window"),
        pytest.param(True, 0.2, 0.3, [0.3, 0.5], id="pause-then-the-window"),
    ],
)
def test_a_pause_holds_even_a_free_slot(
    used: bool, now: float, pause: float, sleeps: list[float]
) -> None:
    fake = FakeTime()
    limiter = fake.limiter(1)
    if used:
        limiter.acquire()
    fake.now = now
    limiter.pause_until(now + pause)
    assert limiter.acquire() == pytest.approx(sum(sleeps))
    assert fake.sleeps == [pytest.approx(s) for s in sleeps]


@pytest.mark.parametrize(("rate", "window"), [(2, 1.1), (1, 1.1), (0.5, 2.1)], ids=str)
def test_the_window_is_a_little_longer_than_a_second_of_quota(rate: float, window: float) -> None:
    # The margin keeps the requests spread over a full second where NP6 sees them arrive.
    assert RateLimiter(rate).window == pytest.approx(window)


@pytest.mark.parametrize(
    ("maximum", "throttles", "limit"),
    [(1, 1, 1), (2, 1, 1), (3, 1, 1), (5, 1, 2), (8, 3, 1)],
    ids=str,
)
def test_a_throttle_halves_down_to_one(maximum: int, throttles: int, limit: int) -> None:
    gate = AdaptiveConcurrency(maximum)
    for _ in range(throttles):
        gate.throttled()
    assert gate.limit == limit and type(gate.limit) is int
    assert gate.lowest == limit


def test_growth_after_a_throttle_counts_successes_from_zero() -> None:
    gate = AdaptiveConcurrency(8)
    gate.succeeded()
    gate.throttled()
    assert gate.limit == 4
    for _ in range(3):
        gate.succeeded()
    assert gate.limit == 4
    gate.succeeded()
    assert gate.limit == 5


def test_a_zero_wait_just_before_the_deadline_is_still_retried() -> None:
    clock = [9.5]
    sleeps: list[float] = []
    errors = [RetriableApiError("PUT /x", 429, retry_after=0.0)]

    def call() -> str:
        if errors:
            raise errors.pop()
        return "done"

    policy = retry_policy(
        RetryConfig(max_attempts=5), deadline=10.0, sleep=sleeps.append, clock=lambda: clock[0]
    )
    for attempt in policy:
        with attempt:
            result = call()
    assert result == "done" and sleeps == [0.0]


def test_a_factorys_clients_share_the_rate_limit_and_the_gate_not_the_stats() -> None:
    settings = Settings(base_url="https://np6.invalid", concurrency=3, max_requests_per_second=7)
    connect = client_factory(settings, API_KEY)
    first, second = connect(), connect()
    assert first.limiter is second.limiter and first.limiter is not None
    assert first.limiter.capacity == 7
    assert first.gate is second.gate and first.gate.maximum == 3
    assert first.stats is not second.stats


def test_a_factorys_client_counts_its_retries_redacts_and_stops_at_the_deadline() -> None:
    settings = Settings(base_url="https://np6.invalid", max_requests_per_second=1000)
    # The deadline is already behind: the first retriable answer is the last.
    np6 = client_factory(settings, API_KEY, deadline=time.monotonic() - 1)()
    np6.session.mount("https://", Scripted([(503, {}, f"echo {API_KEY}".encode())]))
    with pytest.raises(RetriableApiError) as raised:
        np6.add_targets(7, ["a"])
    assert API_KEY not in str(raised.value)
    assert np6.stats.retries == 0

    np6 = client_factory(settings, API_KEY)()
    np6.session.mount("https://", Scripted([(503, {"Retry-After": "0"}, b""), (200, {}, b"1")]))
    assert np6.add_targets(7, ["a"]) == 1
    assert np6.stats.retries == 1 and np6.stats.calls["put"] == 1


def test_each_retry_is_logged_with_its_wait_and_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = [RetriableApiError("PUT /x", 503, "req-7", retry_after=2.5)]

    def call() -> str:
        if errors:
            raise errors.pop()
        return "done"

    policy = retry_policy(RetryConfig(max_attempts=2), deadline=1e18, sleep=lambda s: None)
    with caplog.at_level("WARNING", logger="np6sync.np6"):
        for attempt in policy:
            with attempt:
                assert call() == "done"
    (record,) = caplog.records
    assert record.getMessage() == "PUT /x: HTTP 503 (x-request-id req-7); retry 1 in 2.5s"
    assert (record.phase, record.request_id) == ("retry", "req-7")  # type: ignore[attr-defined]


# A key that starts with a quote or a backslash: its JSON form holds the raw key, so the
# forms must be replaced longest first, or a stray backslash is left before "[redacted]".
KEYS_WITH_ESCAPES = ['k/é"y\\1', "plain-key-123", "\\k3y-abc", '"k3y-abc']


@pytest.mark.parametrize("key", KEYS_WITH_ESCAPES)
@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda k: json.dumps(k)[1:-1], id="json"),
        pytest.param(lambda k: json.dumps(k, ensure_ascii=False)[1:-1], id="json-unicode"),
        pytest.param(lambda k: json.dumps(k)[1:-1].replace("/", "\\/"), id="json-slash"),
        pytest.param(lambda k: quote(k, safe=""), id="url"),
        pytest.param(lambda k: quote_plus(k), id="url-plus"),
    ],
)
def test_every_echoed_form_of_the_key_is_redacted_whole(key: str, form) -> None:  # type: ignore[no-untyped-def]
    assert redact(f"<{form(key)}>", key) == "<[redacted]>"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param("", "the API key in NP6_API_KEY is empty", id="empty"),
        pytest.param("ab\u0100", "a character outside Latin-1 (U+0100) at position 3 of 3",
                     id="U+0100"),
        pytest.param("a\x01", "a control character (U+0001) at position 2 of 2", id="control"),
    ],
)  # fmt: skip
def test_a_key_that_cannot_travel_in_a_header(raw: str, problem: str) -> None:
    with pytest.raises(UsageError) as error:
        check_api_key(raw, "NP6_API_KEY")
    assert str(error.value).endswith(problem)


@pytest.mark.parametrize("raw", ["ab\xff", "a\tb"], ids=["U+00FF", "tab"])
def test_a_key_at_the_edge_of_latin_1_travels(raw: str) -> None:
    assert check_api_key(raw, "NP6_API_KEY") == raw


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        pytest.param("a \n b\t c", "'a b c'", id="spaces"),
        pytest.param("x" * 80, repr("x" * 80), id="80"),
        pytest.param("x" * 81, repr("x" * 79 + "…"), id="81"),
    ],
)
def test_a_quoted_body_is_one_line_of_at_most_80_characters(body: str, shown: str) -> None:
    assert quoted(body) == shown


def test_backoff_grows_from_initial_wait_and_stays_under_max_wait() -> None:
    sleeps: list[float] = []
    config = RetryConfig(max_attempts=12, initial_wait=0.001, max_wait=1.5)
    call, _ = failing_calls(11)
    policy = retry_policy(config, deadline=1e18, sleep=sleeps.append)
    for attempt in policy:
        with attempt:
            call()
    assert len(sleeps) == 11
    assert all(0 <= s <= min(1.5, 0.001 * 2**n) for n, s in enumerate(sleeps))


def failing_calls(count: int):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= count:
            raise RetriableApiError("PUT /x", 503)
        return "done"

    return call, calls


@pytest.mark.parametrize(
    ("body", "info"),
    [
        pytest.param(b'{"id": 9, "name": 5, "type": "Weird"}', SegmentInfo(9), id="odd-fields"),
        pytest.param(b'{"type": "DYNAMIC", "targetsCount": "12"}',
                     SegmentInfo(1, None, "dynamic", 12), id="upper-case"),
    ],
)  # fmt: skip
def test_a_segment_description_keeps_only_what_it_understands(body: bytes, info) -> None:  # type: ignore[no-untyped-def]
    assert parse_segment(body, 1) == info


@pytest.mark.parametrize(
    ("parse", "body", "problem"),
    [
        pytest.param(lambda b: parse_count(b, 5), b"oops", "not JSON", id="count-not-json"),
        pytest.param(lambda b: parse_count(b, 5), b'"3"',
                     "not an integer count of targets added", id="count-text"),
        pytest.param(lambda b: parse_segment(b, 1), b"[]",
                     "not a JSON object describing the segment", id="segment-list"),
        pytest.param(parse_ids, b"{}", "not a JSON list of target ids", id="ids-object"),
        pytest.param(parse_ids, b"[1.5]", "a list holding something other than target ids",
                     id="ids-float"),
    ],
)  # fmt: skip
def test_each_unreadable_answer_says_what_it_is(parse, body: bytes, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnswerShapeError) as error:
        parse(body)
    assert str(error.value) == problem
