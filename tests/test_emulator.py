"""The NP6 stand-in, spoken to over a real loopback socket the way the client speaks to NP6."""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from conftest import wait_for
from sync.emulator import ALL_FAULTS, Emulator, configure_parser

KEY = "emulator-test-key-3b7e"
SEGMENT = 12
AUTH = {"X-Key": KEY}
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}
REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

MakeEmulator = Callable[..., Emulator]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(KEY) as server:
        yield server


@pytest.fixture
def make_emulator(start_emulator: MakeEmulator) -> MakeEmulator:
    """Started emulators with chosen settings, all stopped after the test."""
    return functools.partial(start_emulator, KEY)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


def put(
    http: requests.Session, server: Emulator, body: Any, segment: int = SEGMENT
) -> requests.Response:
    return http.put(f"{server.url}/segments/{segment}/targets", json=body, headers=AUTH)


# --- authentication and request checks ----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Key": "wrong"}, id="wrong"),
        pytest.param({"X-Key": KEY + "x"}, id="longer"),
        pytest.param({"Authorization": KEY}, id="other-header"),
    ],
)
def test_a_missing_or_wrong_key_is_401_with_an_empty_body(
    emulator: Emulator, session: requests.Session, headers: dict[str, str]
) -> None:
    answer = session.put(f"{emulator.url}/segments/{SEGMENT}/targets", json=["a"], headers=headers)
    assert answer.status_code == 401
    assert answer.content == b""
    assert emulator.members(SEGMENT) == set()
    assert [(c.status, c.targets) for c in emulator.calls] == [(401, ("a",))]


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param(None, id="none"),
        pytest.param("text/plain", id="text"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
    ],
)
def test_a_body_that_is_not_declared_json_is_415(
    emulator: Emulator, session: requests.Session, content_type: str | None
) -> None:
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    for path in ("targets", "normalization"):
        method = "PUT" if path == "targets" else "POST"
        url = f"{emulator.url}/segments/{SEGMENT}/{path}"
        answer = session.request(method, url, data=b'["a"]', headers=headers)
        assert answer.status_code == 415
    assert emulator.members(SEGMENT) == set()


def test_json_with_a_charset_parameter_is_accepted(
    emulator: Emulator, session: requests.Session
) -> None:
    headers = {**AUTH, "Content-Type": "Application/JSON; charset=utf-8"}
    url = f"{emulator.url}/segments/{SEGMENT}/targets"
    assert session.put(url, data=b'["a"]', headers=headers).json() == 1


def status_without_length(server: Emulator, method: str, path: str) -> int:
    """The status of a request sent with no Content-Length at all: http.client's low-level
    calls, because requests and urllib3 add Content-Length: 0."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest(method, path)
        for name, value in JSON_HEADERS.items():
            connection.putheader(name, value)
        connection.endheaders()
        with connection.getresponse() as answer:
            answer.read()
            return answer.status
    finally:
        connection.close()


def test_a_post_without_content_length_is_411_even_with_no_body_to_send(
    emulator: Emulator,
) -> None:
    assert status_without_length(emulator, "POST", f"/targets/a/segments/{SEGMENT}") == 411
    assert emulator.members(SEGMENT) == set()
    assert status_without_length(emulator, "DELETE", f"/targets/a/segments/{SEGMENT}") == 404


def test_a_body_without_content_length_is_411(
    emulator: Emulator, session: requests.Session
) -> None:
    assert status_without_length(emulator, "PUT", f"/segments/{SEGMENT}/targets") == 411
    chunked = session.put(
        f"{emulator.url}/segments/{SEGMENT}/targets",
        data=iter([b'["a",', b' "b"]']),  # a generator body goes out chunked
        headers=JSON_HEADERS,
    )
    assert chunked.status_code == 411
    assert put(session, emulator, ["c"]).json() == 1  # the connection stayed in step
    assert emulator.members(SEGMENT) == {"c"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'["a", "b"', id="bad-json"),
        pytest.param(b"\xff\xfe[", id="not-utf8"),
        pytest.param(b'{"targets": ["a"]}', id="object"),
        pytest.param(b'"a"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'["a", 1]', id="number"),
        pytest.param(b'["a", null]', id="null-item"),
        pytest.param(b'["a", ["b"]]', id="nested"),
        pytest.param(b'["a", ""]', id="empty-string"),
        pytest.param(b"[]", id="empty-array"),
        pytest.param(json.dumps([f"t{n}" for n in range(51)]).encode(), id="51-targets"),
    ],
)
def test_a_put_body_that_is_not_1_to_50_strings_is_400(
    emulator: Emulator, session: requests.Session, body: bytes
) -> None:
    url = f"{emulator.url}/segments/{SEGMENT}/targets"
    assert session.put(url, data=body, headers=JSON_HEADERS).status_code == 400
    assert emulator.members(SEGMENT) == set()


def test_fifty_targets_are_accepted(emulator: Emulator, session: requests.Session) -> None:
    assert put(session, emulator, [f"t{n}" for n in range(50)]).json() == 50


# --- the calls ------------------------------------------------------------------------------


def test_put_answers_how_many_targets_were_new(
    emulator: Emulator, session: requests.Session
) -> None:
    first = put(session, emulator, ["a", "b"])
    assert (first.status_code, first.json()) == (200, 2)
    assert first.headers["Content-Type"] == "application/json"
    assert put(session, emulator, ["b", "c", "c"]).json() == 1
    assert put(session, emulator, ["a"]).json() == 0
    assert emulator.members(SEGMENT) == {"a", "b", "c"}
    assert [c.targets for c in emulator.calls] == [("a", "b"), ("b", "c", "c"), ("a",)]
    assert {(c.method, c.path, c.segment_id, c.status) for c in emulator.calls} == {
        ("PUT", f"/segments/{SEGMENT}/targets", SEGMENT, 200)
    }


def test_delete_empties_the_segment(emulator: Emulator, session: requests.Session) -> None:
    emulator.set_members(SEGMENT, ["a", "b"])
    answer = session.delete(f"{emulator.url}/segments/{SEGMENT}/targets", headers=AUTH)
    assert (answer.status_code, answer.content) == (204, b"")
    assert emulator.members(SEGMENT) == set()
    assert put(session, emulator, ["a"]).json() == 1


def test_get_lists_the_members_sorted(emulator: Emulator, session: requests.Session) -> None:
    emulator.set_members(SEGMENT, ["c", "a", "b"])
    answer = session.get(f"{emulator.url}/segments/{SEGMENT}/targets", headers=AUTH)
    assert (answer.status_code, answer.json()) == (200, ["a", "b", "c"])
    empty = session.get(f"{emulator.url}/segments/77/targets", headers=AUTH)
    assert (empty.status_code, empty.json()) == (200, [])


def test_normalization_is_accepted_and_recorded(
    emulator: Emulator, session: requests.Session
) -> None:
    body = {"fields": {"34": ["FRA", "ESP"], "35": ["ITA"]}}
    url = f"{emulator.url}/segments/{SEGMENT}/normalization"
    answer = session.post(url, json=body, headers=AUTH)
    assert (answer.status_code, answer.content) == (204, b"")
    assert emulator.normalizations(SEGMENT) == [body]
    emulator.normalizations(SEGMENT)[0]["fields"].clear()  # a copy: the record is untouched
    assert emulator.normalizations(SEGMENT) == [body]
    assert emulator.normalizations(99) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(["FRA"], id="array"),
        pytest.param({}, id="no-fields"),
        pytest.param({"fields": {}}, id="empty-fields"),
        pytest.param({"fields": ["FRA"]}, id="fields-array"),
        pytest.param({"fields": {"34": []}}, id="no-codes"),
        pytest.param({"fields": {"34": "FRA"}}, id="codes-string"),
        pytest.param({"fields": {"34": ["fra"]}}, id="lower-case"),
        pytest.param({"fields": {"34": ["FR"]}}, id="alpha-2"),
        pytest.param({"fields": {"34": ["FRA", 250]}}, id="number"),
        pytest.param({"fields": {"phone": ["FRA"]}}, id="field-name"),
        pytest.param({"fields": {"34": ["FRA"]}, "extra": 1}, id="unknown-key"),
    ],
)
def test_a_bad_normalization_body_is_400(
    emulator: Emulator, session: requests.Session, body: Any
) -> None:
    url = f"{emulator.url}/segments/{SEGMENT}/normalization"
    assert session.post(url, json=body, headers=AUTH).status_code == 400
    assert emulator.normalizations(SEGMENT) == []


def test_removing_one_target(emulator: Emulator, session: requests.Session) -> None:
    emulator.set_members(SEGMENT, ["a@x.fr", "b@x.fr"])
    url = f"{emulator.url}/targets/a%40x.fr/segments/{SEGMENT}"
    assert session.delete(url, headers=AUTH).status_code == 204
    assert emulator.members(SEGMENT) == {"b@x.fr"}
    assert session.delete(url, headers=AUTH).status_code == 404  # no longer there
    assert emulator.calls[-1].segment_id == SEGMENT


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PUT", "/segments/5/targets", ["a"], id="put"),
        pytest.param("DELETE", "/segments/5/targets", None, id="clear"),
        pytest.param("GET", "/segments/5/targets", None, id="list"),
        pytest.param("POST", "/segments/5/normalization", {"fields": {"1": ["FRA"]}}, id="norm"),
        pytest.param("DELETE", "/targets/a/segments/5", None, id="remove"),
        pytest.param("POST", "/targets/a/segments/5", None, id="add-one"),
        pytest.param("GET", "/segments/5", None, id="describe"),
    ],
)
def test_an_unknown_segment_is_404_when_segments_are_given(
    make_emulator: MakeEmulator,
    session: requests.Session,
    method: str,
    path: str,
    body: Any,
) -> None:
    server = make_emulator(segments=[SEGMENT])
    answer = session.request(method, server.url + path, json=body, headers=AUTH)
    assert answer.status_code == 404
    assert server.members(5) == set()
    known = session.request(method, server.url + path.replace("5", str(SEGMENT)), json=body)
    assert known.status_code == 401  # only the segment id made the difference above


def test_set_members_creates_a_segment_and_members_is_a_copy(
    make_emulator: MakeEmulator, session: requests.Session
) -> None:
    server = make_emulator(segments=[SEGMENT])
    server.set_members(5, ["a"])
    assert put(session, server, ["b"], segment=5).json() == 1
    members = server.members(5)
    members.clear()
    assert server.members(5) == {"a", "b"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/", 404, id="root"),
        pytest.param("GET", "/segments/12/members", 404, id="segment-other"),
        pytest.param("GET", "/targets/a", 404, id="target"),
        pytest.param("PUT", "/segments/0/targets", 404, id="segment-0"),
        pytest.param("PUT", "/segments/x/targets", 404, id="segment-x"),
        pytest.param("GET", "/segments/12/targets/extra", 404, id="longer"),
        pytest.param("POST", "/segments/12/targets", 405, id="post-targets"),
        pytest.param("PATCH", "/segments/12/targets", 405, id="patch-targets"),
        pytest.param("GET", "/segments/12/normalization", 405, id="get-normalization"),
        pytest.param("PUT", "/targets/a/segments/12", 405, id="put-member"),
        pytest.param("PUT", "/segments/12", 405, id="put-segment"),
        pytest.param("POST", "/targets", 405, id="post-lookup"),
    ],
)
def test_other_paths_and_methods(
    emulator: Emulator, session: requests.Session, method: str, path: str, status: int
) -> None:
    answer = session.request(method, emulator.url + path, headers=AUTH)
    assert answer.status_code == status
    if status == 405:
        assert method not in answer.headers["Allow"]


def test_every_answer_carries_a_fresh_request_id(
    emulator: Emulator, session: requests.Session
) -> None:
    url = f"{emulator.url}/segments/{SEGMENT}/targets"
    emulator.inject("500", "429-retry-after")
    answers = [
        session.get(url, headers=AUTH),  # 500
        session.get(url, headers=AUTH),  # 429
        put(session, emulator, ["a"]),  # 200
        session.delete(url, headers=AUTH),  # 204
        put(session, emulator, []),  # 400
        session.get(url),  # 401
        session.get(emulator.url + "/nowhere", headers=AUTH),  # 404
        session.post(url, headers=AUTH),  # 405
        session.put(url, data=b'["a"]', headers=AUTH),  # 415
    ]
    assert [a.status_code for a in answers] == [500, 429, 200, 204, 400, 401, 404, 405, 415]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(REQUEST_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_answers_keep_the_connection_alive(emulator: Emulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    try:
        connection.connect()
        opened = connection.sock
        for body in (b'["a"]', b"[]", b"{", b'["b"]'):
            url = f"/segments/{SEGMENT}/targets"
            connection.request("PUT", url, body=body, headers=JSON_HEADERS)
            with connection.getresponse() as answer:
                assert answer.getheader("Content-Length") == str(len(answer.read()))
            assert connection.sock is opened  # http.client drops a socket the server closes
    finally:
        connection.close()


def test_concurrent_requests_all_land_and_calls_stay_in_arrival_order(
    emulator: Emulator,
) -> None:
    def push(worker: int) -> None:
        with requests.Session() as http:
            for n in range(10):
                assert put(http, emulator, [f"{worker}-{n}"]).json() == 1

    threads = [threading.Thread(target=push, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emulator.members(SEGMENT)) == 80
    arrivals = [c.at for c in emulator.calls]
    assert len(arrivals) == 80 and arrivals == sorted(arrivals)
    emulator.reset_calls()
    assert emulator.calls == []


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [
        pytest.param("429", 429, None, id="429"),
        pytest.param("429-retry-after", 429, "7", id="429-retry-after"),
        pytest.param("500", 500, None, id="500"),
        pytest.param("503", 503, None, id="503"),
    ],
)
def test_an_injected_error_answers_without_applying_the_change(
    make_emulator: MakeEmulator,
    session: requests.Session,
    fault: str,
    status: int,
    retry_after: str | None,
) -> None:
    server = make_emulator(retry_after_s=7)
    server.inject(fault)
    answer = put(session, server, ["a"])
    assert answer.status_code == status
    assert answer.headers.get("Retry-After") == retry_after
    assert server.members(SEGMENT) == set()
    assert put(session, server, ["a"]).json() == 1  # one request per injected fault
    assert [(c.fault, c.status) for c in server.calls] == [(fault, status), (None, 200)]


def test_drop_closes_the_connection_and_changes_nothing(
    emulator: Emulator, session: requests.Session
) -> None:
    emulator.inject("drop")
    with pytest.raises(requests.ConnectionError):
        put(session, emulator, ["a"])
    assert emulator.members(SEGMENT) == set()
    assert [(c.fault, c.status, c.targets) for c in emulator.calls] == [("drop", None, ("a",))]
    assert put(session, emulator, ["a"]).json() == 1


def test_lost_applies_the_change_then_closes_the_connection(
    emulator: Emulator, session: requests.Session
) -> None:
    emulator.inject("lost")
    with pytest.raises(requests.ConnectionError):
        put(session, emulator, ["a"])
    assert emulator.members(SEGMENT) == {"a"}  # NP6 did the work; the client cannot know
    assert put(session, emulator, ["a"]).json() == 0
    assert emulator.calls[0].status is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("DELETE", "/segments/12/targets", None, id="clear"),
        pytest.param("GET", "/segments/12/targets", None, id="list"),
        pytest.param("POST", "/segments/12/normalization", {"fields": {"1": ["FRA"]}}, id="norm"),
        pytest.param("DELETE", "/targets/a/segments/12", None, id="remove"),
    ],
)
def test_faults_apply_to_every_kind_of_call(
    emulator: Emulator, session: requests.Session, method: str, path: str, body: Any
) -> None:
    emulator.set_members(SEGMENT, ["a"])
    emulator.inject("503", "drop")
    url = emulator.url + path
    assert session.request(method, url, json=body, headers=AUTH).status_code == 503
    with pytest.raises(requests.ConnectionError):
        session.request(method, url, json=body, headers=AUTH)
    assert emulator.members(SEGMENT) == {"a"}
    assert emulator.normalizations(SEGMENT) == []


def test_injected_faults_come_in_order_and_wait_for_an_authenticated_request(
    emulator: Emulator, session: requests.Session
) -> None:
    emulator.inject("503", "429")
    url = f"{emulator.url}/segments/{SEGMENT}/targets"
    statuses = [session.get(url).status_code] + [
        session.get(url, headers=AUTH).status_code for _ in range(3)
    ]
    assert statuses == [401, 503, 429, 200]


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Emulator(fault_kinds=["418"])
    with pytest.raises(ValueError, match="unknown fault"):
        Emulator().inject("timeout")


def fault_sequence(server: Emulator, http: requests.Session) -> list[int | str]:
    outcomes: list[int | str] = []
    for n in range(30):
        try:
            outcomes.append(put(http, server, [f"t{n}"]).status_code)
        except requests.ConnectionError:
            outcomes.append("closed")
    return outcomes


def test_random_faults_are_reproducible_with_a_seed(
    make_emulator: MakeEmulator, session: requests.Session
) -> None:
    runs = [fault_sequence(make_emulator(fault_rate=0.5, seed=seed), session) for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {200, "closed"} < set(runs[0]) <= {200, 429, 500, 503, "closed"}


def test_a_fault_rate_of_one_faults_every_request(
    make_emulator: MakeEmulator, session: requests.Session
) -> None:
    server = make_emulator(fault_rate=1.0, fault_kinds=["500"])
    assert fault_sequence(server, session) == [500] * 30
    assert server.members(SEGMENT) == set()


# --- rate limit, echo, latency --------------------------------------------------------------


def test_the_rate_limit_answers_429_with_quota_headers(
    make_emulator: MakeEmulator, session: requests.Session
) -> None:
    now = [100.0]
    server = make_emulator(rate_limit_per_s=3, clock=lambda: now[0])
    answers = [put(session, server, [f"t{n}"]) for n in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
    assert all(int(a.headers["X-RateLimit-Reset"]) >= 1 for a in answers)
    assert "Retry-After" not in answers[3].headers
    assert server.members(SEGMENT) == {"t0", "t1", "t2"}

    now[0] += 0.5  # the window still holds all three
    assert put(session, server, ["t3"]).status_code == 429
    now[0] += 0.6  # past one second: the window slides and frees every slot
    again = put(session, server, ["t3"])
    assert (again.status_code, again.headers["X-RateLimit-Remaining"]) == (200, "2")


@pytest.mark.parametrize(
    ("key", "inject", "status"),
    [
        pytest.param("wrong-key-9", None, 401, id="401"),
        pytest.param(KEY, None, 400, id="400"),
        pytest.param(KEY, "500", 500, id="500"),
    ],
)
def test_echo_headers_on_error_repeats_the_request_headers(
    make_emulator: MakeEmulator,
    session: requests.Session,
    key: str,
    inject: str | None,
    status: int,
) -> None:
    server = make_emulator(echo_headers_on_error=True)
    if inject:
        server.inject(inject)
    url = f"{server.url}/segments/{SEGMENT}/targets"
    answer = session.put(url, json=[], headers={"X-Key": key})
    assert answer.status_code == status
    assert answer.json()["request_headers"]["x-key"] == key
    ok = session.put(url, json=["a"], headers=AUTH)
    assert ok.status_code == 200 and KEY not in ok.text


def test_latency_delays_every_answer(
    make_emulator: MakeEmulator, session: requests.Session
) -> None:
    server = make_emulator(latency_s=0.05)
    started = time.monotonic()
    put(session, server, ["a"])
    session.get(f"{server.url}/segments/{SEGMENT}/targets")  # errors wait too
    assert time.monotonic() - started >= 0.1


# --- lifecycle and command line -------------------------------------------------------------


def test_stop_closes_kept_alive_connections(session: requests.Session) -> None:
    server = Emulator(KEY).start()
    url = server.url
    assert put(session, server, ["a"]).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{url}/segments/{SEGMENT}/targets", headers=AUTH)
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018
    server.stop()  # twice is harmless


def test_the_parser_reads_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.key, defaults.segments) == (
        "127.0.0.1",
        8650,
        None,
        None,
    )
    assert (defaults.faults, defaults.fault_rate, defaults.rate_limit) == (ALL_FAULTS, 0.0, None)
    args = parser.parse_args(
        [
            *("--port", "0", "--segments", "1,22", "--latency-ms", "5", "--fault-rate", "0.2"),
            *("--faults", "500,drop", "--seed", "3", "--rate-limit", "10"),
        ]
    )
    assert (args.port, args.segments, args.latency_ms, args.fault_rate) == (0, [1, 22], 5.0, 0.2)
    assert (args.faults, args.seed, args.rate_limit) == (("500", "drop"), 3, 10)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--faults", "500,teapot"], id="fault"),
        pytest.param(["--segments", "1,x"], id="segments"),
        pytest.param(["--segments", "0"], id="segment-0"),
        pytest.param(["--latency-ms", "-1"], id="latency"),
    ],
)
def test_the_parser_refuses_bad_values(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert "error" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "stop", [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
)
def test_the_command_serves_until_a_signal_and_never_prints_the_key(stop: signal.Signals) -> None:
    cli_key = "cli-secret-key-81f"
    command = [sys.executable, "-m", "sync.emulator", "--port", "0", "--key", cli_key]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"NP6 emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        with requests.Session() as http:
            url = f"{match[1]}/segments/3/targets"
            assert http.put(url, json=["a"], headers={"X-Key": cli_key}).json() == 1
        process.send_signal(stop)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert cli_key not in line + out + err


def test_the_emulator_is_idle_once_every_client_has_gone(emulator: Emulator) -> None:
    """What tests wait on after killing a run: its requests in flight answered."""
    assert emulator.idle
    with socket.create_connection(("127.0.0.1", emulator.port)) as client:
        wait_for(lambda: not emulator.idle)  # accepted, being read
        client.sendall(b"GET /segments/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1024).startswith(b"HTTP/1.1 ")
        assert not emulator.idle  # kept alive
    wait_for(lambda: emulator.idle)
