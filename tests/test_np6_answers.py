"""NP6's answers taken at their word: counts, segment descriptions, look-ups, the 404 of a
removal, request ids, quota headers and the empty 409, against loopback servers."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loopback import Answer, Loopback, Request

from conftest import (
    API_KEY,
    SEGMENT,
    emails,
    make_job,
    np6_client,
    run_process,
    settings_file,
    write_csv,
)
from sync.config import SyncConfig
from sync.core.keys import KEY_TYPE
from sync.core.plan import Holding, make_plan
from sync.errors import FatalApiError, UnexpectedAnswerError
from sync.np6.answers import AnswerShapeError, SegmentInfo, parse_count, parse_ids
from sync.np6.key import check_api_key, redact, secret_forms
from sync.np6.throttle import RateLimiter
from sync.send.push import push
from sync.state.local import StateStore


@pytest.mark.parametrize(
    ("body", "sent", "count"),
    [
        pytest.param(b"3", 5, 3, id="count"),
        pytest.param(b" 0\n", 5, 0, id="none-added"),
        pytest.param(b"5", 5, 5, id="all"),
    ],
)
def test_a_count_is_read_as_sent(body: bytes, sent: int, count: int) -> None:
    assert parse_count(body, sent) == count


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(b"OK", "not JSON", id="text"),
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b'"3"', "not an integer", id="string"),
        pytest.param(b"true", "not an integer", id="bool"),
        pytest.param(b"2.5", "not an integer", id="float"),
        pytest.param(b'{"added": 3}', "not an integer", id="object"),
        pytest.param(b"6", "outside 0..5", id="more-than-sent"),
        pytest.param(b"-1", "outside 0..5", id="negative"),
    ],
)
def test_anything_but_a_count_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(AnswerShapeError, match=problem):
        parse_count(body, 5)


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        pytest.param(b"[]", [], id="none"),
        pytest.param(b'["000PKXK4", 12]', ["000PKXK4", "12"], id="ids"),
        pytest.param(b'[{"id": "000PKXK4", "email": "x"}]', ["000PKXK4"], id="objects"),
    ],
)
def test_ids_are_read_from_a_list(body: bytes, ids: list[str]) -> None:
    assert parse_ids(body) == ids


@pytest.mark.parametrize(
    "body", [b'{"ids": []}', b"null", b"[null]", b"[true]", b'[""]', b"[[1]]", b"<html>"]
)
def test_anything_but_a_list_of_ids_is_refused(body: bytes) -> None:
    with pytest.raises(AnswerShapeError):
        parse_ids(body)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param("abc-123\n", "abc-123", id="trailing-newline"),
        pytest.param("\t abc 123 \r\n", "abc 123", id="inner-space"),
        pytest.param("clé-latin1", "clé-latin1", id="latin1"),
    ],
)
def test_a_key_is_stripped_of_surrounding_whitespace(raw: str, key: str) -> None:
    assert check_api_key(raw, "NP6_API_KEY") == key


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param("abc\x00def", "a control character (U+0000) at position 4 of 7", id="nul"),
        pytest.param("abc\r\nX-Other: 1", "a control character (U+000D)", id="header-split"),
        pytest.param("abc\x7fdef", "a control character", id="del"),
        pytest.param("abc\x85def", "a control character", id="c1-control"),
        pytest.param("abc\u200bdef", "outside Latin-1 (U+200B)", id="zero-width"),
        pytest.param("clé€", "outside Latin-1", id="euro"),
    ],
)
def test_a_key_that_cannot_be_a_header_is_named_not_printed(raw: str, problem: str) -> None:
    with pytest.raises(Exception, match="cannot be sent in an HTTP header") as error:
        check_api_key(raw, "NP6_API_KEY")
    assert problem in str(error.value)
    assert "abc" not in str(error.value) and "clé" not in str(error.value)


def test_every_form_of_the_key_is_redacted() -> None:
    key = 'a"b\\c/d é+&'
    text = " | ".join(
        [
            key,
            json.dumps(key),
            json.dumps(key, ensure_ascii=False),
            "?k=a%22b%5Cc%2Fd%20%C3%A9%2B%26",
        ]
    )
    text += " | " + "a%22b%5cc%2fd+%c3%a9%2b%26"
    redacted = redact(text, key)
    assert redacted.count("[redacted]") == 5, redacted
    assert all(form not in redacted for form in secret_forms(key))


def describe_server(request: Request) -> Answer:
    bodies = {
        "/segments/1": b'{"id": 1, "name": "Clients", "type": "STATIC", "targetsCount": "1200"}',
        "/segments/2": b'{"type": "dynamic"}',
        "/segments/3": b"[1, 2]",
    }
    body = bodies.get(request.path)
    return Answer(404, b"") if body is None else Answer(200, body)


def test_describe_segment_is_tolerant_of_missing_fields() -> None:
    with Loopback(describe_server) as server:
        client = np6_client(server)
        try:
            assert client.describe_segment(1) == SegmentInfo(1, "Clients", "static", 1200)
            assert client.describe_segment(2) == SegmentInfo(2, None, "dynamic", None)
            with pytest.raises(UnexpectedAnswerError, match="not a JSON object"):
                client.describe_segment(3)
            with pytest.raises(FatalApiError) as unknown:
                client.describe_segment(4)
        finally:
            client.close()
    assert unknown.value.status == 404
    assert [r.headers["X-Key"] for r in server.requests] == [API_KEY] * 4


def test_lookup_names_the_value_by_position_or_digest_never_itself() -> None:
    answers = {"a%40x.fr": b'["000PKXK4"]', "b%40x.fr": b"[]"}

    def respond(request: Request) -> Answer:
        value = request.path.partition("unicity=")[2]
        return Answer(200, answers.get(value, b'{"unexpected": "c@x.fr"}'))

    with Loopback(respond) as server:
        client = np6_client(server)
        try:
            assert client.lookup("a@x.fr") == ["000PKXK4"]
            assert client.lookup("b@x.fr") == []
            with pytest.raises(UnexpectedAnswerError) as by_position:
                client.lookup("c@x.fr", position=7)
            with pytest.raises(UnexpectedAnswerError) as by_digest:
                client.lookup("c@x.fr")
        finally:
            client.close()
    assert [r.path for r in server.requests][:2] == [
        "/targets?unicity=a%40x.fr",
        "/targets?unicity=b%40x.fr",
    ]
    assert "(value #7)" in str(by_position.value)
    assert "(value sha256:" in str(by_digest.value)
    # The answer is quoted, but not the value it echoes (personal data, P#10).
    assert "c@x.fr" not in str(by_digest.value) and "(a value)" in str(by_digest.value)


def test_an_empty_409_says_what_it_means_and_a_dashed_request_id_is_kept() -> None:
    request_id = str(uuid.uuid4())
    with Loopback(lambda r: Answer(409, b"", {"x-request-id": request_id})) as server:
        client = np6_client(server)
        try:
            with pytest.raises(FatalApiError) as error:
                client.add_targets(SEGMENT, ["a"])
        finally:
            client.close()
    assert "the segment is dynamic, or the target is already a member" in str(error.value)
    assert f"x-request-id {request_id}" in str(error.value)
    assert list(client.stats.request_ids) == [request_id]


def test_quota_headers_are_kept_but_never_wait_past_a_backoff() -> None:
    quota = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "900"}
    clock = [0.0]
    with Loopback(lambda r: Answer(200, b"1", quota)) as server:
        client = np6_client(server, retry={"max_wait": 2})
        client.limiter = RateLimiter(
            100, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
        )
        try:
            client.add_targets(SEGMENT, ["a"])
        finally:
            client.close()
        assert client.limiter.acquire() == pytest.approx(2.0)  # not 900 s of unknown unit
    assert client.stats.quota == quota


def removal_server(segment_known: bool):  # type: ignore[no-untyped-def]
    def respond(request: Request) -> Answer:
        if request.method == "DELETE":
            return Answer(404, b"target or segment not found")
        if request.method == "GET" and segment_known:
            return Answer(200, b'{"id": 1234, "type": "static"}')
        return Answer(404, b"")

    return respond


@pytest.mark.parametrize("segment_known", [True, False])
def test_a_removal_404_is_already_gone_only_once_the_segment_is_known(
    tmp_path: Path, segment_known: bool
) -> None:
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    held = Holding(pa.array([f"k{n}" for n in range(20)], KEY_TYPE))
    rules = SyncConfig(max_removed_ratio=1.0, removals="per_target")
    plan = make_plan(held, pa.array([f"k{n}" for n in range(12, 20)], KEY_TYPE), rules, by_id=True)
    assert (len(plan.send), len(plan.remove)) == (0, 12)
    with Loopback(removal_server(segment_known)) as server:
        client = np6_client(server)
        with store.open_journal(plan.action) as journal:
            result = push(plan, client, journal, segment_id=SEGMENT, chunk_size=50, concurrency=3)
        client.close()
    described = [r for r in server.requests if r.method == "GET"]
    assert [r.path for r in described] == [f"/segments/{SEGMENT}"]  # once per run
    journal_text = "".join(p.read_text() for p in tmp_path.glob("*journal*"))
    if segment_known:
        # Every target was already gone: none removed now, each one settled.
        assert result.error is None and (result.targets_removed, result.removals_settled) == (0, 12)
        assert journal_text.count('"removed"') == 12
    else:
        assert result.error is not None and result.error.status == 404
        assert f"NP6 does not know segment {SEGMENT}: check segment_id" in str(result.error)
        assert '"removed"' not in journal_text
        # What was queued when the segment was found unknown, then nothing more.
        assert len([r for r in server.requests if r.method == "DELETE"]) <= 3 * 2 + 2


def test_a_put_answered_with_text_fails_the_job_and_records_nothing(tmp_path: Path) -> None:
    echoed = "OK, added: " + API_KEY + " " + "x" * 200
    with Loopback(lambda r: Answer(200, echoed.encode(), {"Content-Type": "text/plain"})) as np6:
        write_csv(tmp_path / "list.csv", emails(0, 120))
        env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": np6.url}
        args = ["run", make_job(tmp_path), "--config", settings_file(tmp_path)]
        result = run_process([*args, "--report-json", tmp_path / "r.json"], env, cwd=tmp_path)
    assert result.returncode == 1
    (job,) = json.loads((tmp_path / "r.json").read_text())["jobs"]
    assert "HTTP 200 (the answer is not JSON: 'OK, added: [redacted] xxx" in job["error"]
    assert "…'" in job["error"] and len(job["error"]) < 200
    assert API_KEY not in result.stdout + result.stderr
    state = tmp_path / "state" / "list.parquet"
    assert not state.exists() or pq.read_table(state).num_rows == 0


@pytest.mark.parametrize(
    ("location", "named"),
    [
        pytest.param("http://127.0.0.2:9/x?key=k&sig=s#f", "http://127.0.0.2:9/x;", id="absolute"),
        pytest.param("/elsewhere?token=t", "/elsewhere;", id="relative"),
        pytest.param(None, "(no Location)", id="none"),
    ],
)
def test_after_a_redirect_the_client_sends_nothing_more(location: str | None, named: str) -> None:
    headers = {"Location": location} if location else {}
    with Loopback(lambda r: Answer(301, b"", headers)) as server:
        client = np6_client(server)
        try:
            with pytest.raises(FatalApiError) as first:
                client.describe_segment(SEGMENT)
            with pytest.raises(FatalApiError) as later:
                client.add_targets(SEGMENT, ["a"])
        finally:
            client.close()
    assert len(server.requests) == 1
    assert first.value.status == later.value.status == 301
    assert f"redirect to {named}" in str(first.value)
    assert "key=" not in str(first.value) and "token" not in str(first.value)


def test_describe_and_lookup_against_the_emulator(start_emulator) -> None:  # type: ignore[no-untyped-def]
    server = start_emulator(
        API_KEY, segments={SEGMENT: "Clients"}, dynamic=[77], contacts={"000PKXK4": ["a@x.fr"]}
    )
    client = np6_client(server)
    try:
        assert client.lookup("a@x.fr") == ["000PKXK4"]
        assert client.lookup("nobody@x.fr") == []
        assert client.add_targets(SEGMENT, ["a@x.fr", "nobody@x.fr"]) == 1
        assert client.describe_segment(SEGMENT) == SegmentInfo(SEGMENT, "Clients", "static", 1)
        assert client.describe_segment(77).type == "dynamic"
        with pytest.raises(FatalApiError) as dynamic:
            client.add_targets(77, ["a@x.fr"])
    finally:
        client.close()
    assert dynamic.value.status == 409
    assert "the segment is dynamic, or the target is already a member" in str(dynamic.value)


def test_removals_from_a_segment_np6_does_not_know_fail_the_run(
    start_emulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A wrong segment (here: one NP6 has lost between two runs) must not pass every
    removal's 404 as "already gone": the preflight finds it before any change (exit 2)."""
    ids = [[f"000PKX{n:02d}"] for n in range(40)]
    job = make_job(
        tmp_path,
        targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"max_removed_ratio": 1.0, "removals": "per_target"},
    )
    config = settings_file(tmp_path)
    knows = start_emulator(API_KEY, segments=[SEGMENT])
    lost = start_emulator(API_KEY, segments=[99])
    for server, rows in ((knows, ids), (lost, ids[:36])):
        write_csv(tmp_path / "list.csv", rows, header=("target_id",))
        env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": server.url}
        args = ["run", job, "--config", config, "--report-json", tmp_path / "r.json"]
        result = run_process(args, env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (report,) = json.loads((tmp_path / "r.json").read_text())["jobs"]
    assert f"NP6 does not know segment {SEGMENT}" in report["error"]
    assert "check segment_id; nothing was sent" in report["error"]
    assert [call.method for call in lost.calls] == ["GET"]
    assert len(knows.members(SEGMENT)) == 40
