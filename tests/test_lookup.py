"""Removals by unicity value against answers the emulator does not give: several contacts
for one value, a look-up answer of another shape, a per-target removal the account lacks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from loopback import Answer, Loopback, Request

from conftest import SEGMENT, np6_client
from sync.config import SyncConfig
from sync.core.keys import KEY_TYPE
from sync.core.plan import make_plan
from sync.send.lookup import LookupUnavailable
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
