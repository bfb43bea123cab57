from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests
import requests.adapters

from conftest import API_KEY, np6_client
from sync.config import RetryConfig, Settings
from sync.emulator import Emulator
from sync.errors import FatalApiError, RetriableApiError
from sync.np6.client import ClientStats, NP6Client, make_session
from sync.np6.retry import classify, parse_retry_after, retry_policy
from sync.np6.throttle import AdaptiveConcurrency, RateLimiter


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ok"),
        (204, "ok"),
        (None, "retry"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (400, "fatal"),
        (401, "fatal"),
        (403, "fatal"),
        (404, "fatal"),
        (409, "fatal"),
        (411, "fatal"),
        (415, "fatal"),
    ],
)
def test_classify(status: int | None, verdict: str) -> None:
    assert classify(status) == verdict


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("100000", 120.0, id="capped"),
        pytest.param("-3", 0.0, id="negative"),
        pytest.param("Thu, 01 Jan 2026 12:00:30 GMT", 30.0, id="http-date"),
        pytest.param("Thu, 01 Jan 2026 11:00:00 GMT", 0.0, id="http-date-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(None, None, id="absent"),
        pytest.param("nan", None, id="nan"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, cap=120.0, now=NOW) == expected


def failing(errors: list[Exception]):
    calls = []

    def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return call, calls


def run_policy(policy, call):
    for attempt in policy:
        with attempt:
            return call()


def test_retries_back_off_exponentially_with_jitter_and_honour_retry_after() -> None:
    sleeps: list[float] = []
    stats = ClientStats()
    config = RetryConfig(max_attempts=5, initial_wait=1, max_wait=8)
    errors = [
        RetriableApiError("PUT /x", 503),
        RetriableApiError("PUT /x", 429, retry_after=42.0),
        RetriableApiError("PUT /x", None),
    ]
    call, calls = failing(errors)
    policy = retry_policy(config, deadline=1e9, stats=stats, sleep=sleeps.append)
    assert run_policy(policy, call) == "done"
    assert len(calls) == 4
    assert 0 <= sleeps[0] <= 2 and sleeps[1] == 42.0 and 0 <= sleeps[2] <= 8
    assert stats.retries == 3
    assert stats.rate_limit_wait_s == 42.0


def test_fatal_errors_are_not_retried() -> None:
    call, calls = failing([FatalApiError("PUT /x", 401)])
    policy = retry_policy(RetryConfig(), deadline=1e9, sleep=lambda s: None)
    with pytest.raises(FatalApiError):
        run_policy(policy, call)
    assert len(calls) == 1


def test_retries_stop_after_max_attempts() -> None:
    call, calls = failing([RetriableApiError("PUT /x", 500) for _ in range(10)])
    policy = retry_policy(RetryConfig(max_attempts=3), deadline=1e9, sleep=lambda s: None)
    with pytest.raises(RetriableApiError):
        run_policy(policy, call)
    assert len(calls) == 3


def test_retries_stop_before_the_deadline_not_after() -> None:
    clock = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    call, _ = failing([RetriableApiError("PUT /x", 429, retry_after=4.0) for _ in range(10)])
    policy = retry_policy(
        RetryConfig(max_attempts=100), deadline=10.0, sleep=sleep, clock=lambda: clock[0]
    )
    with pytest.raises(RetriableApiError):
        run_policy(policy, call)
    assert sleeps == [4.0, 4.0]  # a third wait would end at 12 s, past the deadline
    assert clock[0] <= 10.0


def test_rate_limiter_never_exceeds_the_rate_in_any_second() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    limiter = RateLimiter(5, clock=lambda: clock[0], sleep=sleep)
    starts = []
    for _ in range(23):
        limiter.acquire()
        starts.append(clock[0])
        clock[0] += 0.01
    for start in starts:
        assert sum(1 for s in starts if start <= s < start + 1.0) <= 5
    assert starts[-1] >= 4.0


def test_rate_limiter_pauses_when_the_quota_is_spent() -> None:
    clock = [0.0]
    limiter = RateLimiter(
        100, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    limiter.pause_until(3.0)
    assert limiter.acquire() == pytest.approx(3.0)


def test_the_client_adds_clears_and_normalizes(emulator: Emulator) -> None:
    client = np6_client(emulator)
    try:
        assert client.add_targets(1234, ["a", "b"]) == 2
        assert client.add_targets(1234, ["b", "c"]) == 1
        assert emulator.members(1234) == {"a", "b", "c"}
        assert sorted(client.list_targets(1234)) == ["a", "b", "c"]
        client.clear_segment(1234)
        assert emulator.members(1234) == set()
        client.normalize(1234, {"34": ["FRA"]})
        assert client.stats.calls == {"put": 2, "delete": 1, "post": 1, "get": 1}
        put = next(c for c in emulator.calls if c.method == "PUT")
        assert put.targets == ("a", "b")
    finally:
        client.close()


def test_transient_errors_are_retried(emulator: Emulator) -> None:
    client = np6_client(emulator)
    emulator.inject("429", "drop")
    try:
        assert client.add_targets(1234, ["a"]) == 1
    finally:
        client.close()
    assert client.stats.retries == 2
    assert emulator.members(1234) == {"a"}


@pytest.mark.parametrize(
    ("key", "segment", "status", "hint"),
    [
        pytest.param("wrong-key-123", 1234, 401, "does not accept the API key", id="401"),
        pytest.param(API_KEY, 5555, 404, "does not know this segment", id="404"),
    ],
)
def test_fatal_errors_name_call_status_request_id_never_the_key(
    key: str, segment: int, status: int, hint: str
) -> None:
    with Emulator(API_KEY, segments=[1234], echo_headers_on_error=True) as emulator:
        client = np6_client(emulator, key=key)
        try:
            with pytest.raises(FatalApiError) as error:
                client.add_targets(segment, ["a"])
        finally:
            client.close()
    message = str(error.value)
    assert f"PUT /segments/{segment}/targets: HTTP {status}" in message
    assert hint in message
    assert "x-request-id " in message
    assert key not in message and API_KEY not in message


def test_adaptive_concurrency_halves_on_429_and_grows_back() -> None:
    gate = AdaptiveConcurrency(8)
    gate.throttled()
    gate.throttled()
    assert (gate.limit, gate.lowest) == (2, 2)
    for _ in range(2):
        gate.succeeded()
    assert gate.limit == 3
    for _ in range(3 + 4 + 5 + 6 + 7 + 8):
        gate.succeeded()
    assert gate.limit == 8


def test_adaptive_concurrency_holds_requests_past_the_limit() -> None:
    gate = AdaptiveConcurrency(1)
    entered = threading.Event()
    with gate.slot():
        waiter = threading.Thread(target=lambda: gate.slot().__enter__() or entered.set())
        waiter.start()
        assert not entered.wait(0.05)
    assert entered.wait(1)
    waiter.join()


class _Recorder(requests.adapters.BaseAdapter):
    """Answers every request with 200 and 1, keeping what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        self.sent.append(request)
        answer = requests.Response()
        answer.status_code, answer._content, answer.request = 200, b"1", request
        return answer

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("media_type", "unicity", "accept"),
    [
        pytest.param(None, True, "application/json", id="default"),
        pytest.param("application/vnd.mperf.v8.unicity", True, "application/vnd.mperf.v8.unicity",
                     id="unicity-media-type"),
        pytest.param("application/vnd.mperf.v8.unicity", False, "application/json", id="id-mode"),
    ],
)  # fmt: skip
def test_the_unicity_media_type_is_sent_only_with_unicity_values(
    media_type: str | None, unicity: bool, accept: str
) -> None:
    settings = Settings(
        base_url="http://np6.invalid", allow_plain_http=True, unicity_media_type=media_type
    )
    session = make_session(settings, API_KEY)
    recorder = _Recorder()
    session.mount("http://", recorder)
    client = NP6Client(session, settings, API_KEY, policy=lambda: retry_policy(RetryConfig(), 1e18))
    assert client.add_targets(7, ["a@x.fr"], unicity=unicity) == 1
    client.close()
    (request,) = recorder.sent
    assert request.headers["Accept"] == accept
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("np6-sync/")
