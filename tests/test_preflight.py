"""End to end, against an emulated account with contacts: the preflight (segment known and
static), the reload safeguard (a sample looked up before the clear), the acceptance check
while adding, `check`, and the unicity media type."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
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
from sync.cli import main
from sync.core.keys import KEY_TYPE
from sync.core.plan import Holding, Plan
from sync.emulator import UNICITY_MEDIA_TYPE, Emulator, make_contacts
from sync.errors import FatalApiError, NotTakenError, SegmentError, UnexpectedAnswerError
from sync.job.fanout import load_job_file
from sync.np6.answers import SegmentInfo
from sync.verify.preflight import (
    CAUSES,
    AcceptanceWatch,
    Preflight,
    Sample,
    _resent,
    describe,
    look_up,
    preflight,
    sample_keys,
)


def addresses(start: int, stop: int) -> list[str]:
    return [row[0] for row in emails(start, stop)]


@pytest.fixture
def account(start_emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An emulated account whose contacts are user0..user999, with the environment a run
    needs to reach it; the test chooses its segments."""

    def start(**options: object) -> Emulator:
        options.setdefault("segments", [SEGMENT])
        options.setdefault("contacts", make_contacts(addresses(0, 1000)))
        server: Emulator = start_emulator(API_KEY, **options)
        monkeypatch.setenv("NP6_API_KEY", API_KEY)
        monkeypatch.setenv("NP6_BASE_URL", server.url)
        monkeypatch.chdir(tmp_path)
        return server

    return start


@pytest.fixture
def cli_main(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """The real command line, in-process: (exit code, stdout and stderr together)."""

    def run(*args: object) -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def ids_of(server: Emulator, values: list[str]) -> set[str]:
    contacts = server.contacts
    assert contacts is not None
    return {contacts.resolve(v) for v in values} - {None}  # type: ignore[misc]


def state_keys(folder: Path) -> list[str]:
    return pq.read_table(folder / "state" / "list.parquet")["key"].to_pylist()


def report_of(path: Path) -> dict:  # type: ignore[type-arg]
    (job,) = json.loads(path.read_text())["jobs"]
    return job  # type: ignore[no-any-return]


def changes(server: Emulator) -> list[str]:
    return [call.method for call in server.calls if call.method != "GET"]


def test_keys_of_which_a_share_match_no_contact(account, cli_main, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = account()
    write_csv(tmp_path / "list.csv", emails(300, 1300))  # 700 contacts, 300 strangers
    job, config, report = make_job(tmp_path), settings_file(tmp_path), tmp_path / "r.json"

    code, out = cli_main("run", job, "--config", config, "--report-json", report)
    assert code == 0, out
    first = report_of(report)
    assert (first["targets_sent"], first["targets_accepted"]) == (1000, 700)
    assert "300 of the 1,000 keys sent match no contact in NP6" in out
    assert "not sent again until --full-refresh" in out
    assert server.members(SEGMENT) == ids_of(server, addresses(300, 1000))
    assert len(state_keys(tmp_path)) == 1000  # acknowledged chunks are recorded whole

    server.reset_calls()
    code, out = cli_main("run", job, "--config", config, "--report-json", report)
    assert code == 0, out
    assert server.calls == []  # nothing to send: no preflight either
    assert report_of(report)["status"] == "no_changes"


def test_a_wrong_key_column_stops_after_the_first_thousand_keys_and_its_reload_is_refused(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path
) -> None:
    server = account()
    rows = [[f"user{n}@example.com", f"C{n:06d}"] for n in range(4000)]
    write_csv(tmp_path / "list.csv", rows, header=("email", "customer"))
    job = make_job(tmp_path, targets={"columns": ["customer"]})  # the account knows emails
    config, report = settings_file(tmp_path), tmp_path / "r.json"

    code, out = cli_main("run", job, "--config", config, "--report-json", report)
    assert code == 1, out
    failed = report_of(report)
    assert "match no contact" in failed["error"]
    for cause in ("targets.columns", "targets.separator", "unicity_media_type"):
        assert cause in failed["error"]
    # The first 1,000, and the chunks in flight then (2 at a time, 4 queued at most).
    assert 1000 <= failed["targets_sent"] <= 1000 + 4 * 50
    assert failed["targets_accepted"] == 0
    assert len(state_keys(tmp_path)) == failed["targets_sent"]  # what NP6 acknowledged
    assert server.members(SEGMENT) == set()

    server.set_members(SEGMENT, ids_of(server, addresses(0, 500)))
    server.reset_calls()
    code, out = cli_main("run", job, "--full-refresh", "--config", config, "--report-json", report)
    assert code == 3, out
    refused = report_of(report)
    assert refused["status"] == "refused"
    assert "0 of 20 sampled keys match a contact" in refused["error"]
    assert changes(server) == []  # refused before the clear
    assert len(server.members(SEGMENT)) == 500
    lookups = [call.path for call in server.calls if call.path.startswith("/targets?unicity=")]
    assert len(lookups) == 20

    code, out = cli_main("run", job, "--full-refresh", "--force", "--config", config)
    assert code == 1, out  # --force passes the safeguard; adding then stops
    assert changes(server)[0] == "DELETE"


def test_a_run_resumed_after_a_kill_is_not_stopped_by_the_check(  # type: ignore[no-untyped-def]
    account, tmp_path: Path
) -> None:
    """The chunk in flight at the kill was added by NP6: sent again, it adds nothing, and
    that must not read as keys that match no contact."""
    server = account()
    job = make_job(tmp_path)
    quick = settings_file(tmp_path)
    env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": server.url}
    write_csv(tmp_path / "list.csv", emails(0, 100))
    assert run_process(["run", job, "--config", quick], env, cwd=tmp_path).returncode == 0

    write_csv(tmp_path / "list.csv", emails(0, 150))
    slow = settings_file(tmp_path, retry={"initial_wait": 60, "max_wait": 60})
    server.inject("none", "lost")  # the description answers; the PUT is done, unanswered
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "run", str(job), "--config", str(slow)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while len(server.members(SEGMENT)) < 150:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (tmp_path / "state" / "list.parquet.journal").exists()

    server.reset_calls()
    result = run_process(
        ["run", job, "--config", quick, "--report-json", "r.json"], env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    resumed = report_of(tmp_path / "r.json")
    assert (resumed["targets_sent"], resumed["targets_accepted"]) == (50, 0)
    assert len(state_keys(tmp_path)) == 150
    assert server.members(SEGMENT) == ids_of(server, addresses(0, 150))


@pytest.mark.parametrize(
    ("segment", "said"),
    [
        pytest.param(77, "segment 77 (winback) is dynamic", id="dynamic"),
        pytest.param(55, "NP6 does not know segment 55", id="unknown"),
    ],
)
def test_a_segment_that_cannot_be_synced_stops_the_job_with_nothing_changed(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path, segment: int, said: str
) -> None:
    server = account(segments={SEGMENT: "all", 77: "winback"}, dynamic=[77])
    write_csv(tmp_path / "list.csv", emails(0, 120))
    job = make_job(tmp_path, segment_id=segment)
    code, out = cli_main("run", job, "--config", settings_file(tmp_path), "--report-json", "r.json")
    assert code == 2, out
    assert said in report_of(tmp_path / "r.json")["error"]
    assert [(c.method, c.path) for c in server.calls] == [("GET", f"/segments/{segment}")]
    assert not (tmp_path / "state" / "list.parquet").exists()
    assert not (tmp_path / "state" / "list.parquet.journal").exists()


def test_a_first_run_on_a_segment_np6_says_is_not_empty_stops_unless_forced(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path
) -> None:
    """A lost state looks the same as a segment filled by hand (P#8): adopting what it
    holds is an explicit act (exit 3, nothing sent); --force goes ahead, and its PUTs of
    targets already there add nothing, which is not a sign of keys that match no contact."""
    server = account()
    server.set_members(SEGMENT, ids_of(server, addresses(0, 900)))
    write_csv(tmp_path / "list.csv", emails(0, 1000))
    config = settings_file(tmp_path)
    code, out = cli_main("run", make_job(tmp_path), "--config", config)
    assert code == 3, out
    assert "holds about 900 targets and np6-sync has no state for it" in out
    assert "np6-sync state import" in out and "--full-refresh" in out
    assert server.members(SEGMENT) == ids_of(server, addresses(0, 900))
    code, out = cli_main("run", make_job(tmp_path), "--config", config, "--force")
    assert code == 0, out
    assert "--force adopts the segment as it is" in out
    assert server.members(SEGMENT) == ids_of(server, addresses(0, 1000))


@pytest.mark.parametrize(
    ("media_type", "code"),
    [
        pytest.param(None, 1, id="without-unicity_media_type"),
        pytest.param(UNICITY_MEDIA_TYPE, 0, id="with-unicity_media_type"),
    ],
)
def test_an_account_that_requires_the_unicity_media_type(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path, media_type: str | None, code: int
) -> None:
    server = account(require_unicity_media_type=True)
    write_csv(tmp_path / "list.csv", emails(0, 120))
    config = settings_file(tmp_path, unicity_media_type=media_type)
    result, out = cli_main("run", make_job(tmp_path), "--config", config, "--report-json", "r.json")
    assert result == code, out
    if code:
        assert "HTTP 415" in report_of(tmp_path / "r.json")["error"]
        assert server.members(SEGMENT) == set()
    else:
        assert server.members(SEGMENT) == ids_of(server, addresses(0, 120))
    puts = [call for call in server.calls if call.method == "PUT"]
    assert puts and all(call.accept == (media_type or "application/json") for call in puts)


def test_check_against_a_good_setup_changes_nothing(account, cli_main, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = account(segments={SEGMENT: "newsletter"})
    write_csv(tmp_path / "list.csv", emails(0, 1000))
    code, out = cli_main("check", make_job(tmp_path), "--config", settings_file(tmp_path))
    assert code == 0, out
    assert "the API key is accepted" in out
    assert f"segment {SEGMENT} 'newsletter': static, about 0 targets" in out
    assert "no state yet" in out
    assert "20 of 20 sampled keys match a contact" in out
    assert "a run can go ahead" in out
    assert {call.method for call in server.calls} == {"GET"}
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("setup", "code", "said"),
    [
        pytest.param("wrong-column", 3, "0 of 5 sampled keys match a contact", id="wrong-column"),
        pytest.param("half", 3, "2 of 5 sampled keys match a contact", id="too-few-contacts"),
        pytest.param("dynamic", 2, "is dynamic", id="dynamic-segment"),
        pytest.param("unknown", 2, "NP6 does not know segment 55", id="unknown-segment"),
        pytest.param("wrong-key", 2, "the API key in NP6_API_KEY", id="refused-key"),
    ],
)
def test_check_against_a_bad_setup(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup, code, said
) -> None:
    contacts = make_contacts(addresses(0, 40 if setup == "half" else 100))
    server = account(contacts=contacts, dynamic=[77])
    rows = [[f"user{n}@example.com", f"C{n:06d}"] for n in range(100)]
    write_csv(tmp_path / "list.csv", rows, header=("email", "customer"))
    overrides: dict[str, object] = {
        "wrong-column": {"targets": {"columns": ["customer"]}},
        "dynamic": {"segment_id": 77},
        "unknown": {"segment_id": 55},
    }.get(setup, {})
    job = make_job(tmp_path, **overrides)
    if setup == "wrong-key":
        monkeypatch.setenv("NP6_API_KEY", "not-the-key")
    config = settings_file(tmp_path)
    result, out = cli_main("check", job, "--config", config, "--samples", "5")
    assert result == code, out
    assert said in out
    assert {call.method for call in server.calls} <= {"GET"}
    if setup == "wrong-column":
        listing = (tmp_path / "state" / "list.unmatched.csv").read_text().split()
        assert listing[0] == '"key"' and len(listing) == 6


def _account_without_look_ups(lookup: Answer):  # type: ignore[no-untyped-def]
    """An NP6 whose look-up call answers ``lookup``; the segment calls answer as NP6's."""
    members: set[str] = set()

    def respond(request: Request) -> Answer:
        if request.path.startswith("/targets?unicity="):
            return lookup
        if request.method == "GET":
            described = {"id": SEGMENT, "type": "static", "targetsCount": len(members)}
            return Answer(200, json.dumps(described).encode())
        if request.method == "DELETE":
            members.clear()
            return Answer(204)
        values = set(json.loads(request.body)) - members
        members.update(values)
        return Answer(200, str(len(values)).encode())

    return Loopback(respond)


@pytest.mark.parametrize(
    "lookup",
    [
        pytest.param(Answer(404, b"Not Found"), id="404"),
        pytest.param(Answer(405), id="405"),
        pytest.param(Answer(200, b'{"targets": 1}'), id="another-shape"),
    ],
)
def test_a_reload_goes_ahead_unchecked_when_the_account_cannot_look_up(  # type: ignore[no-untyped-def]
    cli_main, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lookup: Answer
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 120))
    job, config = make_job(tmp_path), settings_file(tmp_path)
    monkeypatch.setenv("NP6_API_KEY", API_KEY)
    monkeypatch.chdir(tmp_path)
    with _account_without_look_ups(lookup) as np6:
        monkeypatch.setenv("NP6_BASE_URL", np6.url)
        code, out = cli_main("run", job, "--full-refresh", "--config", config)
    assert code == 0, out
    assert "cannot check the keys before the clear: the look-up of contacts is not" in out
    looked_up = [r for r in np6.requests if r.path.startswith("/targets?unicity=")]
    assert len(looked_up) == 1  # the first answer says it: no more look-ups
    assert [r.method for r in np6.requests if r.method != "GET"] == ["DELETE"] + ["PUT"] * 3


def test_sample_keys_are_evenly_spaced_and_the_same_each_time() -> None:
    keys = pa.array([f"k{n}" for n in range(100)], KEY_TYPE)
    assert sample_keys(keys, 4) == ["k0", "k25", "k50", "k75"]
    assert sample_keys(keys, 4) == sample_keys(keys, 4)
    assert sample_keys(keys[:3], 20) == ["k0", "k1", "k2"]
    assert sample_keys(keys, 0) == []


@pytest.mark.parametrize(
    ("targets", "members", "adopt"),
    [
        pytest.param(
            {"columns": ["email"]},
            addresses(0, 3),
            "record the list that filled it with `np6-sync state import JOB --from FILE`",
            id="unicity",
        ),
        pytest.param(
            {"identify_by": "id", "columns": ["email"]},
            ["00000001", "00000002", "00000003"],
            "adopt what it holds with `np6-sync state import JOB --from-segment`",
            id="id",
        ),
    ],
)
def test_a_lost_state_is_refused_with_the_way_to_adopt_the_segment(  # type: ignore[no-untyped-def]
    account, cli_main, tmp_path: Path, targets: dict, members: list[str], adopt: str
) -> None:
    server = account(contacts=None)
    server.set_members(SEGMENT, members)
    write_csv(tmp_path / "list.csv", [["00000001"]] if "identify_by" in targets else emails(0, 3))
    job = make_job(tmp_path, targets=targets)
    code, out = cli_main("run", job, "--config", settings_file(tmp_path), "--report-json", "r.json")
    assert code == 3, out
    assert report_of(tmp_path / "r.json")["error"] == (
        f"NP6 says segment {SEGMENT} holds about 3 targets and np6-sync has no state for it "
        "(lost, or never made): a run would add the source's keys and remove none of the "
        f"others; {adopt}, or reload it with the source's keys with "
        "`np6-sync run JOB --full-refresh`, or pass --force; nothing was sent"
    )
    assert changes(server) == []


def test_a_sample_of_one_key_that_matches_no_contact_is_under_any_ratio() -> None:
    assert Sample(looked=1, matched=0).under(0.1)
    assert not Sample(looked=1, matched=1).under(1.0)
    assert not Sample().under(1.0)  # nothing looked up: nothing to judge
    assert not Sample(unavailable="no look-up").under(1.0)


def test_a_sampled_look_up_that_fails_names_its_place_in_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Loopback(lambda r: Answer(400, b"no")) as server:
        client = np6_client(server)
        with pytest.raises(FatalApiError) as error:
            look_up(client, pa.array(["a@x.fr", "b@x.fr"], KEY_TYPE), 2)
        client.close()
    assert error.value.call == "GET /targets?unicity=(value #1)"


def test_a_notice_is_logged_as_it_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    result = Preflight()
    with caplog.at_level(logging.WARNING, logger="np6sync.preflight"):
        result.notice("NP6 says 10% of the keys match no contact")
    assert result.notices == ["NP6 says 10% of the keys match no contact"]
    assert [r.getMessage() for r in caplog.records] == result.notices


def test_a_sample_of_one_key_is_the_first_key() -> None:
    assert sample_keys(pa.array(["k0", "k1", "k2"], KEY_TYPE), 1) == ["k0"]


class History:
    """A store whose last runs are ``runs`` (oldest first), with or without a journal."""

    def __init__(self, runs: list[dict[str, str]] | None, journal: bool = False) -> None:
        self.runs = runs
        self.journal = journal

    def has_journal(self) -> bool:
        return self.journal

    def read_history(self, last: int) -> list[dict[str, str]]:
        if self.runs is None:
            raise OSError("the history cannot be read")
        return self.runs[-last:]


@pytest.mark.parametrize(
    ("store", "resent"),
    [
        pytest.param(History([{"status": "succeeded"}, {"status": "failed"}]), 2, id="failed"),
        pytest.param(History([{"status": "failed"}, {"status": "succeeded"}]), 0, id="succeeded"),
        pytest.param(History([], journal=True), 2, id="journal"),
        pytest.param(History(None), 0, id="unreadable"),
        pytest.param(History(None, journal=True), 2, id="unreadable-with-journal"),
    ],
)
def test_the_keys_a_stopped_run_had_in_flight_are_not_judged(store: History, resent: int) -> None:
    send = pa.array(["a", "b", "c", "d"], KEY_TYPE)
    assert _resent(store, send, 2) == frozenset(["a", "b"][:resent])  # type: ignore[arg-type]


def test_the_watch_judges_the_first_keys_once_and_stops_under_the_ratio() -> None:
    watch = AcceptanceWatch(0.5, planned=4, resent=frozenset())
    assert watch(["a", "b"], 0) is None  # 2 of the 4 it judges on: not yet
    stop = watch(["c", "d"], 1)
    assert isinstance(stop, NotTakenError) and watch.stopped and watch.judged
    assert str(stop).startswith(
        "NP6 added 1 of the first 4 targets sent (25%), fewer than sync.min_accepted_ratio "
        "(50%), although none of them was in the segment: the keys match no contact."
    )
    assert str(stop).endswith(
        f" Check {CAUSES}; `np6-sync check` looks keys up. The sending stopped; the state "
        "holds the chunks NP6 acknowledged, so once fixed, run with --full-refresh"
    )
    assert watch(["e", "f"], 0) is None and (watch.sent, watch.accepted) == (4, 1)  # judged


def test_the_watch_lets_a_good_start_go_and_judges_nothing_after() -> None:
    watch = AcceptanceWatch(0.5, planned=4, resent=frozenset())
    assert watch(["a", "b", "c", "d"], 2) is None and watch.judged and not watch.stopped
    assert watch(["e", "f"], 0) is None and (watch.sent, watch.accepted) == (4, 2)


def test_the_watch_does_not_judge_chunks_sent_again() -> None:
    watch = AcceptanceWatch(0.5, planned=4, resent=frozenset({"a", "b"}))
    assert watch(["a", "b"], 0) is None and (watch.sent, watch.judged) == (0, False)
    assert isinstance(watch(["c", "d"], 0), NotTakenError)


def test_keys_not_added_are_noticed_unless_the_watch_stopped_or_chunks_were_resent() -> None:
    def noticed(watch: AcceptanceWatch, sent: int, accepted: int) -> list[str]:
        result = Preflight(watch=watch)
        result.after_push(sent, accepted)
        return result.notices

    assert noticed(AcceptanceWatch(0.5, 4, frozenset()), 4, 3) == [
        "1 of the 4 keys sent match no contact in NP6 (none was in the segment): the state "
        "records them as sent, so they are not sent again until --full-refresh; `np6-sync "
        "check --sample N` looks keys up"
    ]
    assert noticed(AcceptanceWatch(0.5, 4, frozenset()), 4, 4) == []
    stopped = AcceptanceWatch(0.5, 4, frozenset())
    stopped(["a", "b", "c", "d"], 0)
    assert noticed(stopped, 4, 0) == []  # the stop says it already
    assert noticed(AcceptanceWatch(0.5, 4, frozenset({"a"})), 4, 3) == []


def test_the_watch_judges_on_the_first_thousand_new_keys_at_most() -> None:
    assert AcceptanceWatch(0.5, planned=5000, resent=frozenset()).goal == 1000
    assert AcceptanceWatch(0.5, planned=1000, resent=frozenset({"a"})).goal == 999
    everything_resent = AcceptanceWatch(0.5, planned=2, resent=frozenset({"a", "b"}))
    assert everything_resent.judged and everything_resent(["c"], 0) is None
    assert not AcceptanceWatch(0.5, planned=3, resent=frozenset({"a", "b"})).judged


class NoState(History):
    """A store with no state, no journal and no history."""

    def __init__(self) -> None:
        super().__init__([])

    def info(self) -> None:
        return None


class Describing:
    """A client whose ``GET /segments/{id}`` answers ``status`` (or describes ``info``)."""

    def __init__(
        self, status: int = 200, info: SegmentInfo | None = None, shape: bool = False
    ) -> None:
        self.status, self.info, self.shape = status, info, shape

    def describe_segment(self, segment_id: int) -> SegmentInfo:
        call = f"GET /segments/{segment_id}"
        if self.shape:
            raise UnexpectedAnswerError(call, self.status, None, "the answer is not an object")
        if self.info is None:
            raise FatalApiError(call, self.status)
        return self.info


def first_plan(keys: int) -> Plan:
    send = pa.array([f"k{n}" for n in range(keys)], KEY_TYPE)
    return Plan("append", send, send[:0], keys, 0, 0, keys, "the first run")


def _first_run(job, client, *, force: bool):  # type: ignore[no-untyped-def]
    """The preflight of a first run (no state) that adds three keys."""
    return preflight(
        job,
        first_plan(3),
        Holding.empty(),
        client,
        NoState(),
        force=force,
        in_flight=0,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("client", "said"),
    [
        pytest.param(Describing(405), "GET /segments/1234: HTTP 405", id="405"),
        pytest.param(
            Describing(200, shape=True),
            "GET /segments/1234: HTTP 200 (the answer is not an object)",
            id="another-shape",
        ),
    ],
)
def test_a_segment_np6_cannot_describe_is_not_checked_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, client: Describing, said: str
) -> None:
    job = load_job_file(make_job(tmp_path))[0][0]
    with caplog.at_level(logging.WARNING, logger="np6sync.preflight"):
        result = _first_run(job, client, force=False)
    assert result.segment is None and result.notices == []
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot check the segment before sending: {said}"
    ]
    assert result.watch is None  # NP6 did not say the segment was empty: nothing to judge


def test_an_append_job_on_a_segment_already_filled_is_told_why_it_adds_little(
    tmp_path: Path,
) -> None:
    job = load_job_file(make_job(tmp_path, sync={"mode": "append"}))[0][0]
    client = Describing(info=SegmentInfo(SEGMENT, "all", "static", 7))
    result = _first_run(job, client, force=False)
    assert result.notices == [
        f"NP6 says segment {SEGMENT} holds about 7 targets and np6-sync has no state for it: "
        "those already there add nothing when sent (not a sign of keys that match no contact)"
    ]


def test_a_forced_run_on_a_segment_already_filled_adopts_it_and_says_so(tmp_path: Path) -> None:
    job = load_job_file(make_job(tmp_path))[0][0]
    client = Describing(info=SegmentInfo(SEGMENT, "all", "static", 7))
    result = _first_run(job, client, force=True)
    assert result.notices == [
        f"NP6 says segment {SEGMENT} holds about 7 targets and np6-sync has no state for it "
        "(lost, or never made): a run would add the source's keys and remove none of the "
        "others; record the list that filled it with `np6-sync state import JOB --from "
        "FILE`, or reload it with the source's keys with `np6-sync run JOB --full-refresh`, "
        "or pass --force; --force adopts the segment as it is"
    ]


class Failed(History):
    """A state whose last run failed (no journal left)."""

    def __init__(self) -> None:
        super().__init__([{"status": "failed"}])

    def info(self) -> object:
        return object()


@pytest.mark.parametrize(
    ("action", "resent"), [("append", {"k0", "k1"}), ("reload", set())], ids=["append", "reload"]
)
def test_after_a_failed_run_the_keys_it_had_in_flight_are_not_judged(
    tmp_path: Path, action: str, resent: set[str]
) -> None:
    job = load_job_file(make_job(tmp_path))[0][0]
    plan = replace(first_plan(4), action=action)
    holding = Holding(pa.array(["old"], KEY_TYPE))
    client = Describing(info=SegmentInfo(SEGMENT, "all", "static", 1))
    result = preflight(job, plan, holding, client, Failed(), force=True, in_flight=2)  # type: ignore[arg-type]
    assert result.watch is not None and result.watch.resent == resent


def test_a_ratio_of_zero_watches_nothing(tmp_path: Path) -> None:
    job = load_job_file(make_job(tmp_path, sync={"min_accepted_ratio": 0}))[0][0]
    client = Describing(info=SegmentInfo(SEGMENT, "all", "static", 0))
    result = _first_run(job, client, force=False)
    assert result.watch is None


@pytest.mark.parametrize(
    ("client", "said"),
    [
        pytest.param(
            Describing(404),
            "NP6 does not know segment 1234 (GET /segments/1234 answered 404): check "
            "segment_id; nothing was sent",
            id="unknown",
        ),
        pytest.param(
            Describing(info=SegmentInfo(SEGMENT, "vip", "dynamic", 3)),
            "segment 1234 (vip) is dynamic: NP6 computes its members and refuses changes to "
            "them; a job needs a static segment; nothing was sent",
            id="dynamic",
        ),
        pytest.param(
            Describing(info=SegmentInfo(SEGMENT, None, "dynamic", 3)),
            "segment 1234 is dynamic: NP6 computes its members and refuses changes to them; a "
            "job needs a static segment; nothing was sent",
            id="dynamic-without-a-name",
        ),
    ],
)
def test_a_segment_that_cannot_be_synced_is_named_with_why(client: Describing, said: str) -> None:
    with pytest.raises(SegmentError) as refused:
        describe(client, SEGMENT)  # type: ignore[arg-type]
    assert str(refused.value) == said
