"""What the NP6 client itself guarantees, with no logging configured.

Two layers keep the API key out of the output: the client redacts NP6's error bodies
before they go into an ``ApiError`` (pinned here), and the log formatter redacts every
log line (pinned in test_logs.py). An ``ApiError``'s text also reaches the report, the
JSON report and the Markdown summary, which do not pass through the log formatter: the
client's layer is the guard there, so it is tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import requests.adapters

from conftest import API_KEY
from sync.config import RetryConfig, Settings
from sync.errors import ApiError, FatalApiError, RetriableApiError
from sync.np6.client import NP6Client, RateLimiter, classify, make_session, retry_policy


class Scripted(requests.adapters.BaseAdapter):
    """Answers each request with the next (status, headers, body) of a script."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__()
        self.answers: Iterator[tuple[int, dict[str, str], bytes]] = iter(answers)

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        status, headers, body = next(self.answers)
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
        pytest.param(401, FatalApiError, "NP6 refused the API key; check the key in the "
                     "environment variable", id="401"),
        pytest.param(403, FatalApiError, "the API key may not change this segment", id="403"),
        pytest.param(404, FatalApiError, "NP6 does not know this segment (or endpoint)", id="404"),
        pytest.param(409, FatalApiError, "conflict: the segment may be dynamic, or busy", id="409"),
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
    client = scripted_client([(200, headers, b"1")], [], limiter=limiter, max_retry_after=60.0)
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
                     id="capped-at-max_retry_after"),
        pytest.param({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "epoch+30"}, 20, 31,
                     id="epoch-second"),
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
