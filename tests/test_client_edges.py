"""What the NP6 client puts on the wire and into its errors, call by call: timeouts, bodies,
the name of each call, connections that fail, redirects at the edge of 3xx, unreadable
answers, look-ups that never name their value, and the 429s that slow the gate.

The API key in an unreadable answer or a redirect's Location is redacted by the client
itself (this layer), before any log formatter sees the text.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

import pytest
import requests
from test_client_layer import Scripted

from conftest import API_KEY
from sync.config import RetryConfig, Settings, Timeouts
from sync.errors import ApiError, FatalApiError, RetriableApiError, UnexpectedAnswerError
from sync.np6.client import ClientStats, NP6Client, make_session, retry_policy

Answer = tuple[int, dict[str, str], bytes] | Exception


def scripted(answers: list[Answer], **settings: object) -> tuple[NP6Client, Scripted]:
    """A client whose every answer comes from ``answers``; one attempt per call."""
    config = Settings(base_url="https://np6.invalid", retry=RetryConfig(max_attempts=1), **settings)
    session = make_session(config, API_KEY)
    transport = Scripted(answers)
    session.mount("https://", transport)
    stats = ClientStats()
    policy = lambda: retry_policy(config.retry, 1e18, stats=stats, sleep=lambda s: None)  # noqa: E731
    return NP6Client(session, config, API_KEY, policy=policy, stats=stats), transport


def test_each_request_waits_no_longer_than_the_configured_timeouts() -> None:
    np6, transport = scripted([(200, {}, b"1")], timeouts=Timeouts(connect=1.5, read=7.0))
    assert np6.add_targets(7, ["a"]) == 1
    assert transport.options[0]["timeout"] == (1.5, 7.0)


CALLS: list[tuple[str, Callable[[NP6Client], object], str]] = [
    ("add", lambda c: c.add_targets(7, ["a", "b"]), "PUT /segments/7/targets"),
    ("remove", lambda c: c.remove_target(7, "0000000A"), "DELETE /targets/0000000A/segments/7"),
    ("clear", lambda c: c.clear_segment(7), "DELETE /segments/7/targets"),
    ("normalize", lambda c: c.normalize(7, {"email": ["a"]}), "POST /segments/7/normalization"),
    ("list", lambda c: c.list_targets(7), "GET /segments/7/targets"),
    ("describe", lambda c: c.describe_segment(7), "GET /segments/7"),
]


@pytest.mark.parametrize(("call", "name"), [pytest.param(c, n, id=i) for i, c, n in CALLS])
def test_an_error_names_the_call_by_its_method_and_path(
    call: Callable[[NP6Client], object], name: str
) -> None:
    np6, transport = scripted([(403, {}, b"")])
    with pytest.raises(FatalApiError) as raised:
        call(np6)
    assert str(raised.value).startswith(f"{name}: HTTP 403")
    assert transport.sent[0].method == name.split()[0]


@pytest.mark.parametrize(
    ("call", "body"),
    [
        pytest.param(lambda c: c.add_targets(7, ["a", "b"]), b'["a","b"]', id="put"),
        pytest.param(lambda c: c.normalize(7, {"e": ["x"]}), b'{"fields":{"e":["x"]}}', id="post"),
        pytest.param(lambda c: c.clear_segment(7), None, id="delete"),
        pytest.param(lambda c: c.list_targets(7), None, id="get"),
    ],
)
def test_only_a_call_with_a_body_sends_one_and_says_it_is_json(
    call: Callable[[NP6Client], object], body: bytes | None
) -> None:
    np6, transport = scripted([(200, {}, b"[]" if body is None else b"2")])
    call(np6)
    (request,) = transport.sent
    assert request.body == body
    assert request.headers.get("Content-Type") == (None if body is None else "application/json")


@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        pytest.param(requests.ConnectTimeout(), "timed out", id="connect-timeout"),
        pytest.param(requests.ReadTimeout(), "timed out", id="read-timeout"),
        pytest.param(requests.ConnectionError(), "ConnectionError", id="dropped"),
        pytest.param(requests.exceptions.ChunkedEncodingError(), "ChunkedEncodingError",
                     id="cut-short"),
    ],
)  # fmt: skip
def test_a_call_without_an_answer_is_retriable_and_says_why(
    failure: Exception, detail: str
) -> None:
    np6, _ = scripted([failure])
    with pytest.raises(RetriableApiError) as raised:
        np6.add_targets(7, ["a"])
    assert (raised.value.status, raised.value.detail) == (None, detail)
    assert str(raised.value) == f"PUT /segments/7/targets: no answer ({detail})"


@pytest.mark.parametrize("status", [300, 301, 399])
def test_every_3xx_is_a_redirect_that_stops_all_later_calls(status: int) -> None:
    answer = (status, {"Location": "https://elsewhere.invalid/x?t=1", "x-request-id": "r-3"}, b"")
    np6, transport = scripted([answer, (200, {}, b"1")])
    with pytest.raises(FatalApiError) as raised:
        np6.add_targets(7, ["a"])
    assert (raised.value.status, raised.value.request_id) == (status, "r-3")
    assert raised.value.detail == (
        "NP6 answered a redirect to https://elsewhere.invalid/x; np6-sync never follows one "
        "with the key: check base_url"
    )
    with pytest.raises(FatalApiError) as again:
        np6.add_targets(7, ["a"])
    assert again.value is raised.value
    assert len(transport.sent) == 1


def test_a_redirects_location_is_shown_redacted_and_cut_at_200_characters() -> None:
    location = f"https://elsewhere.invalid/{API_KEY}/" + "p" * 300
    np6, _ = scripted([(302, {"Location": location}, b"")])
    with pytest.raises(FatalApiError) as raised:
        np6.clear_segment(7)
    where = f"https://elsewhere.invalid/[redacted]/{'p' * 300}"[:200]
    assert raised.value.detail.startswith(f"NP6 answered a redirect to {where}; np6-sync")
    assert API_KEY[:6] not in str(raised.value)


def test_a_redirect_without_a_location_says_so() -> None:
    np6, _ = scripted([(307, {}, b"")])
    with pytest.raises(FatalApiError) as raised:
        np6.clear_segment(7)
    assert raised.value.detail.startswith("NP6 answered a redirect to (no Location); ")


@pytest.mark.parametrize(
    ("call", "name", "body"),
    [
        pytest.param(lambda c: c.add_targets(7, ["a"]), "PUT /segments/7/targets",
                     f'{{"echo": "{API_KEY}"}}', id="add"),
        pytest.param(lambda c: c.list_targets(7), "GET /segments/7/targets",
                     f'{{"echo": "{API_KEY}"}}', id="list"),
        pytest.param(lambda c: c.describe_segment(7), "GET /segments/7",
                     f'["{API_KEY}"]', id="describe"),
    ],
)  # fmt: skip
def test_an_unreadable_answer_names_call_status_and_request_id_and_hides_the_key(
    call: Callable[[NP6Client], object], name: str, body: str
) -> None:
    np6, _ = scripted([(200, {"x-request-id": "r-9"}, body.encode())])
    with pytest.raises(UnexpectedAnswerError) as raised:
        call(np6)
    error = raised.value
    assert (error.call, error.status, error.request_id) == (name, 200, "r-9")
    assert "[redacted]" in error.detail and API_KEY[:6] not in str(error)
    assert str(error).startswith(f"{name}: HTTP 200 (the answer is ")
    assert str(error).endswith(" (x-request-id r-9)")


def test_a_body_that_is_not_utf_8_is_read_as_latin_1() -> None:
    np6, _ = scripted([(400, {}, b"caf\xe9 ferm\xe9")])
    with pytest.raises(FatalApiError) as raised:
        np6.clear_segment(7)
    assert raised.value.detail == "NP6 refused the request body; café fermé"


@pytest.mark.parametrize(
    ("position", "label"),
    [
        pytest.param(3, "(value #3)", id="by-position"),
        pytest.param(
            None, f"(value sha256:{hashlib.sha256(b'a/b@x.fr').hexdigest()[:8]})", id="by-digest"
        ),
    ],
)
def test_a_look_up_is_one_path_segment_and_its_errors_never_name_the_value(
    position: int | None, label: str
) -> None:
    np6, transport = scripted([(500, {}, b"")])
    with pytest.raises(RetriableApiError) as raised:
        np6.lookup("a/b@x.fr", position)
    assert transport.urls == ["https://np6.invalid/targets?unicity=a%2Fb%40x.fr"]
    assert str(raised.value) == f"GET /targets?unicity={label}: HTTP 500"


def test_targets_are_sent_as_unicity_values_unless_the_caller_says_ids() -> None:
    media = "application/vnd.mperf.v8.unicity"
    np6, transport = scripted([(200, {}, b"1")], unicity_media_type=media)
    assert np6.add_targets(7, ["a@x.fr"]) == 1
    assert transport.sent[0].headers["Accept"] == media


@pytest.mark.parametrize(
    ("answer", "limit"),
    [
        pytest.param((429, {}, b""), 4, id="429-halves"),
        pytest.param((430, {}, b""), 8, id="430-is-no-throttle"),
        pytest.param((503, {}, b""), 8, id="503-is-no-throttle"),
        pytest.param((200, {}, b"1"), 8, id="success-keeps"),
    ],
)
def test_only_a_429_slows_the_gate(answer: Answer, limit: int) -> None:
    np6, _ = scripted([answer], concurrency=8)
    with contextlib.suppress(ApiError):
        np6.add_targets(7, ["a"])
    assert np6.gate.limit == limit
