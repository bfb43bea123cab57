"""What the NP6 client itself guarantees, with no logging configured.

Two layers keep the API key out of the output: the client redacts NP6's error bodies
before they go into an ``ApiError`` (pinned here), and the log formatter redacts every
log line (pinned in test_logs.py). An ``ApiError``'s text also reaches the report, the
JSON report and the Markdown summary, which do not pass through the log formatter: the
client's layer is the guard there, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import requests.adapters

from conftest import API_KEY
from sync.config import RetryConfig, Settings
from sync.errors import ApiError, FatalApiError, RetriableApiError
from sync.np6.client import NP6Client, make_session, retry_policy


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
    answers: list[tuple[int, dict[str, str], bytes]], sleeps: list[float], **retry: float
) -> NP6Client:
    settings = Settings(base_url="https://np6.invalid", retry=RetryConfig(**retry))
    session = make_session(settings, API_KEY)
    session.mount("https://", Scripted(answers))
    return NP6Client(
        session,
        settings,
        API_KEY,
        policy=lambda: retry_policy(settings.retry, 1e18, sleep=sleeps.append),
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
