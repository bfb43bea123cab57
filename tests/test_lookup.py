"""Removals by unicity value against answers the emulator does not give: several contacts
for one value, a look-up answer of another shape, a per-target removal the account lacks."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest
from loopback import Answer, Loopback, Request

from conftest import SEGMENT, np6_client
from sync.config import SyncConfig
from sync.core.keys import KEY_TYPE
from sync.core.plan import IDS_SCHEMA, make_plan
from sync.errors import ApiError, RetriableApiError
from sync.send.lookup import LookupStats, LookupUnavailable, UnicityRemover
from sync.send.push import PushResult, push
from sync.state.local import StateStore

KEYS = [f"person{n}@example.com" for n in range(6)]


def remove_two(tmp_path: Path, respond) -> tuple[PushResult, Loopback, StateStore]:  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS, KEY_TYPE))
    rules = SyncConfig(max_removed_ratio=1.0, removals="per_target")
    plan = make_plan(store.load(), pa.array(KEYS[2:], KEY_TYPE), rules, lookups=True)
    assert (plan.action, plan.lookups) == ("update", 2)
    with Loopback(respond) as server:
        client = np6_client(server)
        with store.open_journal(plan.action) as journal:
            result = push(plan, client, journal, segment_id=SEGMENT, chunk_size=50,
                          concurrency=1, by_value=True)  # fmt: skip
        client.close()
    return result, server, store


def test_a_value_of_several_contacts_removes_each(tmp_path: Path) -> None:
    def respond(request: Request) -> Answer:
        if request.method == "GET":
            return Answer(200, b'[{"id": "000AAAA1"}, {"id": "000AAAA2"}]')
        return Answer(204)

    result, server, store = remove_two(tmp_path, respond)
    assert result.error is None and result.targets_removed == 2
    assert result.lookups is not None and result.lookups.several == 2
    deleted = [r.path for r in server.requests if r.method == "DELETE"]
    assert sorted(deleted) == sorted(
        f"/targets/000AAAA{n}/segments/{SEGMENT}" for n in (1, 2, 1, 2)
    )
    assert sorted(store.load().keys.to_pylist()) == sorted(KEYS[2:])


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(lambda r: Answer(200, b'{"targets": 3}'), id="odd-shape"),
        pytest.param(lambda r: Answer(405, b""), id="look-up-405"),
        pytest.param(lambda r: Answer(404, b"not here"), id="no-route"),
        pytest.param(
            lambda r: Answer(200, b'["000AAAA1"]') if r.method == "GET" else Answer(405, b""),
            id="removal-405",
        ),
    ],
)
def test_an_account_without_these_calls_is_told_apart(tmp_path: Path, respond) -> None:  # type: ignore[no-untyped-def]
    result, _, store = remove_two(tmp_path, respond)
    assert isinstance(result.error, LookupUnavailable)
    assert "example.com" not in str(result.error)
    assert sorted(store.load().keys.to_pylist()) == sorted(KEYS)  # nothing taken as removed


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(b"target not found", id="target-not-found"),
        pytest.param(b'No route found for "GET /targets"', id="no-route-found"),
    ],
)
def test_a_404_to_a_look_up_proves_nothing_whatever_its_words(tmp_path: Path, words) -> None:  # type: ignore[no-untyped-def]
    """Only a list proves that no contact holds a value (P#7): a 404 may be a proxy's or
    an older NP6's, and "No route found for GET /targets" speaks of targets too."""
    result, server, store = remove_two(tmp_path, lambda r: Answer(404, words))
    assert isinstance(result.error, LookupUnavailable) and "answered 404" in str(result.error)
    assert result.targets_removed == 0 and result.lookups is not None
    assert result.lookups.not_found == 0
    assert [r.method for r in server.requests] == ["GET"]
    assert sorted(store.load().keys.to_pylist()) == sorted(KEYS)  # nothing taken as removed


def test_an_empty_list_proves_no_contact_holds_the_value(tmp_path: Path) -> None:
    result, server, store = remove_two(tmp_path, lambda r: Answer(200, b"[]"))
    assert result.error is None and result.lookups is not None
    assert (result.lookups.not_found, result.targets_removed) == (2, 0)
    assert [r.method for r in server.requests] == ["GET", "GET"]
    assert sorted(store.load().keys.to_pylist()) == sorted(KEYS[2:])


def test_other_errors_of_a_look_up_never_name_the_value(tmp_path: Path) -> None:
    echo = lambda r: Answer(400, b"bad value person0@example.com")  # noqa: E731
    result, _, _ = remove_two(tmp_path, echo)
    assert result.error is not None and not isinstance(result.error, LookupUnavailable)
    assert "example.com" not in str(result.error) and "(a value)" in str(result.error)


def test_a_removal_the_account_lacks_says_so_in_its_words(tmp_path: Path) -> None:
    def respond(request: Request) -> Answer:
        return Answer(200, b'["000AAAA1"]') if request.method == "GET" else Answer(405, b"")

    result, _, _ = remove_two(tmp_path, respond)
    assert str(result.error) == (
        "the per-target removal (DELETE /targets/{id}/segments/{segment}) answered 405: this "
        "account seems not to have it"
    )


def test_an_error_of_a_look_up_keeps_its_status_and_request_id(tmp_path: Path) -> None:
    answer = Answer(400, b"bad request", {"x-request-id": "req-7f3a"})
    result, _, _ = remove_two(tmp_path, lambda r: answer)
    error = result.error
    assert isinstance(error, ApiError) and not isinstance(error, LookupUnavailable)
    assert (error.status, error.request_id) == (400, "req-7f3a")
    assert "HTTP 400" in str(error) and "x-request-id req-7f3a" in str(error)


class Contacts:
    """A client of an account that folds case: each value's contact ids, and the look-ups
    and removals asked of it."""

    folds_case = True

    def __init__(self, ids: dict[str, list[str]], gone: tuple[str, ...] = ()) -> None:
        self.ids = ids
        self.gone = gone  # ids NP6 no longer knows: their removal answers 404
        self.looked_up: list[str] = []
        self.removed: list[str] = []

    def lookup(self, key: str) -> list[str]:
        self.looked_up.append(key)
        return self.ids[key]

    def remove_target(self, segment_id: int, target_id: str) -> bool:
        self.removed.append(target_id)
        return target_id not in self.gone


class Steps:
    """A journal that keeps its steps in memory."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, list[str]]] = []

    def looked_up(self, key: str, ids: list[str]) -> None:
        self.steps.append(("looked_up", [key]))

    def removed(self, keys: list[str]) -> None:
        self.steps.append(("removed", list(keys)))


def test_a_kept_twin_is_looked_up_once_for_every_leaving_key_it_collides_with() -> None:
    client = Contacts({"ann@x.fr": ["ID1"], "ANN@x.fr": ["ID1"], "Ann@X.fr": ["ID1", "ID2"]})
    twins = pa.table({"key": ["ann@x.fr", "ANN@x.fr"], "twin": ["Ann@X.fr", "Ann@X.fr"]})
    known = pa.table({"key": pa.array([], KEY_TYPE), "ids": pa.array([], pa.list_(pa.string()))})
    stats = LookupStats()
    remover = UnicityRemover(
        client,
        SEGMENT,
        Steps(),
        known.cast(IDS_SCHEMA),
        lambda: None,
        stats,
        twins,  # type: ignore[arg-type]
    )
    assert remover.remove("ann@x.fr") is False and remover.remove("ANN@x.fr") is False
    assert client.looked_up == ["ann@x.fr", "Ann@X.fr", "ANN@x.fr"]  # the twin once
    assert client.removed == []  # the kept key still names the one contact
    assert (stats.lookups, stats.kept_by_twin, stats.several) == (3, 2, 0)  # one id each
    # Found, and kept by the twin: not a key that names no contact.
    assert stats.not_found == 0


@pytest.mark.parametrize(
    ("respond", "words"),
    [
        pytest.param(
            lambda r: Answer(200, b'{"targets": 3}'),
            r"the contact look-up \(GET /targets\?unicity=\(value sha256:[0-9a-f]{8}\)\) "
            r"answered in a shape np6-sync cannot read",
            id="odd-shape",
        ),
        pytest.param(
            lambda r: Answer(405, b""),
            r"the contact look-up \(GET /targets\?unicity=\) answered 405, not a list of ids: "
            r"this account seems not to have it",
            id="look-up-405",
        ),
    ],
)
def test_a_look_up_the_account_lacks_says_so_in_its_words(tmp_path: Path, respond, words) -> None:  # type: ignore[no-untyped-def]
    result, _, _ = remove_two(tmp_path, respond)
    assert isinstance(result.error, LookupUnavailable)
    assert re.fullmatch(words, str(result.error))


def test_a_redirect_that_echoes_the_value_never_names_it(tmp_path: Path) -> None:
    """The client cuts a redirect's query, and the list's values from its path."""

    def respond(request: Request) -> Answer:
        value = unquote(request.path.split("unicity=", 1)[1])
        return Answer(302, b"", {"Location": f"https://elsewhere.example/login/{value}"})

    result, _, _ = remove_two(tmp_path, respond)
    assert result.error is not None and not isinstance(result.error, LookupUnavailable)
    assert "example.com" not in str(result.error)
    assert "redirect to https://elsewhere.example/login/(a value);" in str(result.error)


def test_a_redirect_kept_for_the_calls_after_it_names_no_value() -> None:
    """After a redirect the client refuses every call with the same error: the value of
    the look-up that met it must not reach the next look-up's error (or the report)."""

    def respond(request: Request) -> Answer:
        value = request.path.split("unicity=", 1)[1]
        return Answer(302, b"", {"Location": f"https://elsewhere.example/t/{value}/x"})

    with Loopback(respond) as server:
        client = np6_client(server)
        errors = []
        for value in ("ann@x.fr", "bob@y.fr"):
            with pytest.raises(ApiError) as raised:
                client.lookup(value)
            errors.append(str(raised.value))
        client.close()
    assert len(server.requests) == 1  # nothing more leaves after a redirect
    for text in errors:
        assert "ann" not in text and "bob" not in text, text
        assert "redirect to https://elsewhere.example/t/(a value)/x;" in text


def test_a_look_up_that_keeps_failing_stops_with_np6_s_error(tmp_path: Path) -> None:
    answer = Answer(503, b"busy with person0@example.com", {"x-request-id": "req-503"})
    result, server, store = remove_two(tmp_path, lambda r: answer)
    assert isinstance(result.error, RetriableApiError)
    assert (result.error.status, result.error.request_id) == (503, "req-503")
    assert "example.com" not in str(result.error)
    assert len(server.requests) == 3  # the client's attempts, then the job stops
    assert sorted(store.load().keys.to_pylist()) == sorted(KEYS)  # nothing taken as removed


def test_an_id_no_longer_known_is_looked_up_again_and_the_new_one_removed() -> None:
    client = Contacts({"ann@x.fr": ["NEW"]}, gone=("OLD",))
    known = pa.table({"key": ["ann@x.fr"], "ids": [["OLD"]]}).cast(IDS_SCHEMA)
    journal = Steps()
    confirmed: list[bool] = []
    remover = UnicityRemover(
        client,
        SEGMENT,
        journal,
        known,
        lambda: confirmed.append(True),
        LookupStats(),  # type: ignore[arg-type]
    )
    assert remover.remove("ann@x.fr") is True  # NP6 took the contact out, under its new id
    assert (client.removed, client.looked_up, confirmed) == (["OLD", "NEW"], ["ann@x.fr"], [])
    assert journal.steps == [("looked_up", ["ann@x.fr"]), ("removed", ["ann@x.fr"])]
