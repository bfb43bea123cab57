"""The emulator behaves as NP6-NOTES.md says NP6 does: contacts, ids, segment types,
per-target calls, media types, quotas. Real HTTP on a loopback port."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.emulator import UNICITY_MEDIA_TYPE, Emulator, configure_parser, make_contacts, target_id

KEY = "emulator-np6-key-41d"
AUTH = {"X-Key": KEY}
STATIC, DYNAMIC = 12, 13
EMAILS = [f"user{n}@x.fr" for n in range(5)]
IDS = [target_id(n) for n in range(5)]  # the contacts of EMAILS, in order

MakeEmulator = Callable[..., Emulator]


@pytest.fixture
def make_emulator(start_emulator: MakeEmulator) -> MakeEmulator:
    """Started emulators on an account of five contacts and one named static segment."""

    def make(**settings: Any) -> Emulator:
        settings.setdefault("contacts", make_contacts(EMAILS))
        settings.setdefault("segments", {STATIC: "newsletter"})
        return start_emulator(KEY, **settings)

    return make


@pytest.fixture
def np6(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator(dynamic=[DYNAMIC])


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTH)
        yield session


def put(http: requests.Session, np6: Emulator, values: list[str], **headers: str) -> Any:
    return http.put(f"{np6.url}/segments/{STATIC}/targets", json=values, headers=headers)


# --- PUT resolves values to contacts; the segment holds ids ---------------------------------


def test_put_adds_the_contacts_values_name_and_counts_only_those_added(
    np6: Emulator, http: requests.Session
) -> None:
    first = put(http, np6, [EMAILS[0], IDS[1], "nobody@x.fr", "0000ZZZZ"])
    assert (first.status_code, first.json()) == (200, 2)
    # Already members, by the other way of naming them, and a value naming none.
    assert put(http, np6, [IDS[0], EMAILS[1], "nobody@x.fr"]).json() == 0
    assert put(http, np6, [EMAILS[2], EMAILS[2], IDS[2]]).json() == 1
    listed = http.get(f"{np6.url}/segments/{STATIC}/targets")
    assert listed.json() == IDS[:3]
    assert np6.members(STATIC) == set(IDS[:3])
    assert np6.calls[0].targets == (EMAILS[0], IDS[1], "nobody@x.fr", "0000ZZZZ")


def test_a_value_that_is_an_id_and_a_unicity_value_resolves_to_the_id(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    np6 = make_emulator(contacts={"000000AA": ["000000AB"], "000000AB": ["b@x.fr"]})
    assert put(http, np6, ["000000AB"]).json() == 1
    assert np6.members(STATIC) == {"000000AB"}


def test_without_a_contacts_table_every_value_is_its_own_contact(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    np6 = make_emulator(contacts=None)
    assert put(http, np6, ["anything", "a@x.fr"]).json() == 2
    assert http.get(f"{np6.url}/segments/{STATIC}/targets").json() == ["a@x.fr", "anything"]
    assert http.get(f"{np6.url}/targets", params={"unicity": "z@x.fr"}).json() == ["z@x.fr"]


# --- look-up and description ----------------------------------------------------------------


def test_a_unicity_look_up_answers_the_ids_or_an_empty_array(
    np6: Emulator, http: requests.Session
) -> None:
    url = f"{np6.url}/targets"
    found = http.get(url, params={"unicity": EMAILS[3]})
    assert (found.status_code, found.json()) == (200, [IDS[3]])
    assert found.headers["Content-Type"] == "application/json"
    assert http.get(url, params={"unicity": "nobody@x.fr"}).json() == []
    assert http.get(url, params={"unicity": IDS[3]}).json() == []  # an id is not a unicity value
    assert http.get(url + "?unicity=user4%40x.fr&unicity=x").json() == [IDS[4]]
    assert http.get(url).status_code == 400
    assert http.get(url, params={"unicity": EMAILS[3]}, headers={"X-Key": "no"}).status_code == 401


def test_a_segment_describes_itself(np6: Emulator, http: requests.Session) -> None:
    put(http, np6, EMAILS[:2])
    static = http.get(f"{np6.url}/segments/{STATIC}")
    assert static.status_code == 200
    described = static.json()
    assert {k: described[k] for k in ("id", "name", "type", "targetsCount")} == {
        "id": STATIC,
        "name": "newsletter",
        "type": "static",
        "targetsCount": 2,
    }
    assert described["creation"] < described["expiration"]
    dynamic = http.get(f"{np6.url}/segments/{DYNAMIC}").json()
    assert (dynamic["type"], dynamic["name"], dynamic["targetsCount"]) == (
        "dynamic",
        "segment 13",
        0,
    )
    unknown = http.get(f"{np6.url}/segments/14")
    assert (unknown.status_code, unknown.content) == (404, b"")


# --- dynamic segments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PUT", f"/segments/{DYNAMIC}/targets", [EMAILS[0]], id="put"),
        pytest.param("DELETE", f"/segments/{DYNAMIC}/targets", None, id="clear"),
        pytest.param("DELETE", f"/targets/{IDS[1]}/segments/{DYNAMIC}", None, id="remove-one"),
        pytest.param("DELETE", f"/targets/{IDS[4]}/segments/{DYNAMIC}", None, id="remove-absent"),
        pytest.param("POST", f"/targets/{IDS[2]}/segments/{DYNAMIC}", None, id="add-one"),
    ],
)
def test_changing_a_dynamic_segment_is_409_with_an_empty_body(
    np6: Emulator, http: requests.Session, method: str, path: str, body: Any
) -> None:
    np6.set_members(DYNAMIC, IDS[:2])
    answer = http.request(method, np6.url + path, json=body)
    assert (answer.status_code, answer.content) == (409, b"")
    assert np6.members(DYNAMIC) == set(IDS[:2])
    assert http.get(f"{np6.url}/segments/{DYNAMIC}/targets").json() == IDS[:2]


# --- one target at a time -------------------------------------------------------------------


def test_removing_one_target_and_the_404_for_target_or_segment(
    np6: Emulator, http: requests.Session
) -> None:
    np6.set_members(STATIC, IDS[:2])
    removed = http.delete(f"{np6.url}/targets/{IDS[0]}/segments/{STATIC}")
    assert (removed.status_code, removed.content) == (204, b"")
    assert np6.members(STATIC) == {IDS[1]}
    missing = [
        http.delete(f"{np6.url}/targets/{IDS[0]}/segments/{STATIC}"),  # no longer a member
        http.delete(f"{np6.url}/targets/0000ZZZZ/segments/{STATIC}"),  # no such contact
        http.delete(f"{np6.url}/targets/{IDS[1]}/segments/14"),  # no such segment
    ]
    assert {(a.status_code, a.content) for a in missing} == {(404, b"target or segment not found")}
    assert np6.members(STATIC) == {IDS[1]}


def test_adding_one_target_and_the_409_for_a_member(np6: Emulator, http: requests.Session) -> None:
    url = f"{np6.url}/targets/{IDS[3]}/segments/{STATIC}"
    added = http.post(url)
    assert (added.status_code, added.content) == (204, b"")
    assert http.post(url).status_code == 409
    assert http.post(f"{np6.url}/targets/0000ZZZZ/segments/{STATIC}").status_code == 404
    assert http.post(f"{np6.url}/targets/{IDS[3]}/segments/14").status_code == 404
    assert np6.members(STATIC) == {IDS[3]}


# --- the unicity media type -----------------------------------------------------------------


def test_an_account_requiring_the_media_type_refuses_unicity_values_without_it(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    np6 = make_emulator(require_unicity_media_type=True)
    refused = put(http, np6, [IDS[0], EMAILS[1]], Accept="application/json")
    assert refused.status_code == 415 and UNICITY_MEDIA_TYPE in refused.text
    assert np6.members(STATIC) == set()
    assert put(http, np6, [IDS[0]], Accept="application/json").json() == 1  # ids need none
    accept = f"application/json, {UNICITY_MEDIA_TYPE}; q=0.9"
    assert put(http, np6, [EMAILS[1], "nobody@x.fr"], Accept=accept).json() == 1
    assert [c.accept for c in np6.calls] == ["application/json", "application/json", accept]
    assert np6.members(STATIC) == set(IDS[:2])


def test_without_the_option_plain_json_adds_unicity_values(
    np6: Emulator, http: requests.Session
) -> None:
    assert put(http, np6, [EMAILS[0]], Accept="application/json").json() == 1
    assert put(http, np6, [EMAILS[1]], Accept=UNICITY_MEDIA_TYPE).json() == 1


def test_without_a_table_the_media_type_rule_goes_by_the_shape_of_ids(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    np6 = make_emulator(contacts=None, require_unicity_media_type=True)
    assert put(http, np6, ["000PKXK4"]).json() == 1
    assert put(http, np6, ["a@x.fr"]).status_code == 415
    assert put(http, np6, ["a@x.fr"], Accept=UNICITY_MEDIA_TYPE).json() == 1


# --- quota ----------------------------------------------------------------------------------


def test_a_quota_sends_rate_limit_headers_and_answers_429_when_spent(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    now = [50.0]
    np6 = make_emulator(quota=2, quota_window_s=60, clock=lambda: now[0])
    url = f"{np6.url}/segments/{STATIC}"
    answers = [http.get(url) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"2"}
    assert [a.headers["X-RateLimit-Reset"] for a in answers] == ["60", "60", "60"]
    now[0] += 45
    assert http.get(url).headers["X-RateLimit-Reset"] == "15"
    now[0] += 20  # the window slid past both requests
    assert http.get(url).status_code == 200


def test_a_quota_reset_can_be_an_epoch_second(
    make_emulator: MakeEmulator, http: requests.Session
) -> None:
    np6 = make_emulator(quota=5, quota_reset_epoch=True)
    reset = int(http.get(f"{np6.url}/segments/{STATIC}").headers["X-RateLimit-Reset"])
    assert reset > 1_000_000_000


def test_without_a_quota_or_rate_limit_no_rate_limit_headers(
    np6: Emulator, http: requests.Session
) -> None:
    answer = http.get(f"{np6.url}/segments/{STATIC}")
    assert not [name for name in answer.headers if name.lower().startswith("x-ratelimit")]


# --- command line ---------------------------------------------------------------------------


def test_the_parser_reads_the_np6_options(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    defaults = parser.parse_args([])
    assert (defaults.contacts, defaults.dynamic, defaults.require_unicity_media_type) == (
        None,
        [],
        False,
    )
    assert (defaults.quota, defaults.quota_window, defaults.quota_reset) == (None, 60.0, "seconds")
    args = parser.parse_args(
        [
            *("--contacts", "c.csv", "--dynamic", "12,13", "--require-unicity-media-type"),
            *("--quota", "100", "--quota-window", "10", "--quota-reset", "epoch"),
        ]
    )
    assert (args.contacts, args.dynamic, args.require_unicity_media_type) == (
        Path("c.csv"),
        [12, 13],
        True,
    )
    assert (args.quota, args.quota_window, args.quota_reset) == (100, 10.0, "epoch")


def test_help_lists_the_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sync", "emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--port", "--key", "--contacts", "--dynamic", "--quota", "--fault-rate"):
        assert option in done.stdout
    assert "--require-unicity-media-type" in done.stdout


def test_the_command_serves_a_contacts_file(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,unicity\n000PKXK4,a@x.fr\n000PKXK5,b@x.fr\n", encoding="utf-8")
    # np6-sync emulator (the other entry point, python -m sync.emulator, is tested beside)
    command = [sys.executable, "-m", "sync", "emulator", "--port", "0", "--key", KEY]
    command += ["--contacts", str(contacts), "--dynamic", "13"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        try:
            assert line.endswith(" with 2 contacts\n"), line
            url = line.split()[4]
            with requests.Session() as session:
                session.headers.update(AUTH)
                added = session.put(f"{url}/segments/3/targets", json=["b@x.fr", "c@x.fr"])
                assert added.json() == 1
                assert session.get(f"{url}/segments/3/targets").json() == ["000PKXK5"]
                assert session.put(f"{url}/segments/13/targets", json=["a@x.fr"]).status_code == 409
        finally:
            process.terminate()
            process.communicate(timeout=10)


def test_a_bad_contacts_file_is_exit_2_with_its_name(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,email\n000PKXK4,a@x.fr\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "sync.emulator", "--port", "0", "--contacts", str(contacts)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "contacts.csv: missing column(s) unicity" in done.stderr
    assert "Traceback" not in done.stderr
