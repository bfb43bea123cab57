"""The push against a recording transport: what it sends, in which order, what it
reports to the progress display, and what it does not send after a failure."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest
import requests
import requests.adapters

import sync.send.push as push_module
from conftest import API_KEY, SEGMENT, make_job
from sync.config import RetryConfig, Settings, SyncConfig, load_job
from sync.console.logs import current_job
from sync.console.progress import NullProgress
from sync.core.keys import KEY_TYPE
from sync.core.plan import IDS_SCHEMA, Holding, Plan, make_plan
from sync.errors import FatalApiError, NotTakenError, StorageError
from sync.np6.client import NP6Client, make_session, retry_policy
from sync.send.push import PushResult, push, push_plan
from sync.state.local import StateStore

IDS = [f"{n:08d}" for n in range(300)]
UNICITY = "application/vnd.mperf.v8.unicity"


class Recorder(requests.adapters.BaseAdapter):
    """Answers PUTs with how many targets they carried (or ``put_status``), DELETEs with
    ``delete_status``, keeping every request. ``on_put`` and ``on_delete`` run before a
    PUT or DELETE is answered, with how many of them came so far."""

    def __init__(  # type: ignore[no-untyped-def]
        self, put_status: int = 200, delete_status: int = 204, on_put=None, on_delete=None
    ) -> None:
        super().__init__()
        self.status = {"PUT": put_status, "DELETE": delete_status, "GET": 200}
        self.hooks = {"PUT": on_put, "DELETE": on_delete}
        self.sent: list[requests.PreparedRequest] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        self._overlap = threading.Condition(self._lock)

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        method = request.method or ""
        with self._lock:
            self.sent.append(request)
            count = self.methods().count(method)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._overlap.notify_all()
            # Give a second request the chance to overlap this one, if anything lets it.
            self._overlap.wait_for(lambda: self.in_flight > 1, timeout=0.05)
            self.in_flight -= 1
        hook = self.hooks.get(method)
        if hook is not None:
            hook(count)
        answer = requests.Response()
        answer.request, answer.status_code = request, self.status.get(method, 200)
        answer.headers["x-request-id"] = f"req-{len(self.sent)}"
        answer._content = str(request.body.count(b",") + 1).encode() if request.body else b""
        return answer

    def close(self) -> None:
        pass

    def methods(self) -> list[str]:
        return [r.method or "" for r in self.sent]


class Recording:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def start(self, phase: str, total: int) -> None:
        self.events.append(("start", (phase, total)))

    def advance(self, amount: int) -> None:
        self.events.append(("advance", amount))

    def finish(self) -> None:
        self.events.append(("finish", None))


def client_of(recorder: Recorder) -> NP6Client:
    settings = Settings(base_url="https://np6.invalid", unicity_media_type=UNICITY)
    session = make_session(settings, API_KEY)
    session.mount("https://", recorder)
    policy = RetryConfig(max_attempts=1)
    return NP6Client(session, settings, API_KEY, policy=lambda: retry_policy(policy, 1e18))


def run(tmp_path: Path, plan, recorder: Recorder, **options) -> PushResult:  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    with store.open_journal(plan.action) as journal:
        return push(
            plan, client_of(recorder), journal, segment_id=SEGMENT, chunk_size=50, **options
        )


def update_plan():  # type: ignore[no-untyped-def]
    """60 targets to add and 3 to remove one by one."""
    holding = Holding(pa.array(IDS[:103], KEY_TYPE))
    return make_plan(holding, pa.array(IDS[3:163], KEY_TYPE), SyncConfig(), by_id=True)


@pytest.mark.parametrize(
    ("options", "accept"),
    [
        pytest.param({}, UNICITY, id="unicity-by-default"),
        pytest.param({"unicity": True}, UNICITY, id="unicity"),
        pytest.param({"unicity": False}, "application/json", id="target-ids"),
    ],
)
def test_the_push_says_what_its_values_are(tmp_path: Path, options, accept: str) -> None:
    plan = make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig())
    recorder = Recorder()
    run(tmp_path, plan, recorder, concurrency=1, **options)
    (put,) = recorder.sent
    assert put.headers["Accept"] == accept


def test_the_progress_sees_each_phase_and_every_target(tmp_path: Path) -> None:
    plan = update_plan()
    assert (plan.action, len(plan.send), len(plan.remove)) == ("update", 60, 3)
    progress = Recording()
    recorder = Recorder()
    result = run(tmp_path, plan, recorder, concurrency=1, progress=progress)
    assert (result.targets_sent, result.targets_removed) == (60, 3)
    starts = [e for kind, e in progress.events if kind == "start"]
    assert starts == [("push", 60), ("remove", 3)]
    deletes = [r.url for r in recorder.sent if r.method == "DELETE"]
    assert deletes == [f"https://np6.invalid/targets/{i}/segments/{SEGMENT}" for i in IDS[:3]]
    advances = [e for kind, e in progress.events if kind == "advance"]
    assert sorted(advances) == [1, 1, 1, 10, 50]
    assert [kind for kind, _ in progress.events].count("finish") == 2


def test_no_removal_after_a_failed_addition(tmp_path: Path) -> None:
    recorder = Recorder(put_status=404)
    result = run(tmp_path, update_plan(), recorder, concurrency=1)
    assert result.error is not None and result.error.status == 404
    assert "DELETE" not in recorder.methods()
    assert result.targets_removed == 0
    assert not result.interrupted  # a failure, not a stop


def test_a_stop_after_the_last_chunk_is_not_an_interruption(tmp_path: Path) -> None:
    stop = threading.Event()
    plan = make_plan(Holding.empty(), pa.array(IDS[:10], KEY_TYPE), SyncConfig())
    result = run(tmp_path, plan, Recorder(on_put=lambda n: stop.set()), concurrency=1, stop=stop)
    assert stop.is_set()
    assert result.targets_sent == 10 and not result.interrupted


def removal_plan(count: int):  # type: ignore[no-untyped-def]
    holding = Holding(pa.array(IDS[:100], KEY_TYPE))
    return make_plan(holding, pa.array(IDS[count:100], KEY_TYPE), SyncConfig(), by_id=True)


def test_a_stop_after_the_last_removal_is_not_an_interruption(tmp_path: Path) -> None:
    stop = threading.Event()
    recorder = Recorder(on_delete=lambda n: n == 3 and stop.set())
    result = run(tmp_path, update_plan(), recorder, concurrency=1, stop=stop)
    assert stop.is_set()
    assert (result.targets_sent, result.targets_removed) == (60, 3)
    assert not result.interrupted


def test_a_stop_with_one_removal_unanswered_is_an_interruption(tmp_path: Path) -> None:
    plan = removal_plan(1)
    assert (plan.action, len(plan.send), len(plan.remove)) == ("update", 0, 1)
    stop = threading.Event()
    recorder = Recorder(delete_status=503, on_delete=lambda n: stop.set())
    result = run(tmp_path, plan, recorder, concurrency=1, stop=stop)
    assert result.error is not None and result.targets_removed == 0
    assert result.interrupted


@pytest.mark.parametrize("concurrency", [1, 2])
def test_no_more_requests_in_flight_than_the_concurrency(tmp_path: Path, concurrency: int) -> None:
    plan = make_plan(Holding.empty(), pa.array(IDS[:300], KEY_TYPE), SyncConfig())
    recorder = Recorder()
    result = run(tmp_path, plan, recorder, concurrency=concurrency)
    assert result.chunks_acknowledged == 6
    # The client's own gate allows 4: only the push's pool keeps this to its concurrency.
    assert recorder.most_in_flight <= concurrency


def test_an_error_the_watch_returns_stops_the_sending(tmp_path: Path) -> None:
    plan = make_plan(Holding.empty(), pa.array(IDS[:300], KEY_TYPE), SyncConfig())
    stop_now = NotTakenError("too few taken")
    seen: list[int] = []

    def watch(chunk: list[str], accepted: int) -> NotTakenError | None:
        seen.append(accepted)
        return stop_now

    recorder = Recorder()
    result = run(tmp_path, plan, recorder, concurrency=1, watch=watch)
    assert result.error is stop_now
    assert seen[0] == 50
    assert recorder.methods().count("PUT") < 6  # the chunks queued behind it stay unsent


@pytest.mark.parametrize(
    ("plan", "raised"),
    [
        pytest.param(lambda: make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig()),
                     False, id="adding"),
        pytest.param(lambda: removal_plan(2), False, id="removing"),
        pytest.param(lambda: make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig(),
                                       full_refresh=True), True, id="clearing"),
    ],
)  # fmt: skip
def test_a_journal_that_cannot_be_written_is_named(tmp_path: Path, plan, raised: bool) -> None:  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    journal = store.open_journal("append")
    journal.close()  # its disk is gone: every write fails
    expected = f"cannot record an acknowledged step in {journal.path}: "
    client = client_of(Recorder())
    options = {"segment_id": SEGMENT, "chunk_size": 50, "concurrency": 1}
    if raised:
        with pytest.raises(StorageError) as error:
            push(plan(), client, journal, **options)  # type: ignore[arg-type]
        assert str(error.value).startswith(expected)
        return
    result = push(plan(), client, journal, **options)  # type: ignore[arg-type]
    assert isinstance(result.error, StorageError)
    assert str(result.error).startswith(expected)


def test_a_send_that_fails_on_its_own_disk_is_named(tmp_path: Path) -> None:
    plan = make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig())
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    client = client_of(Recorder())

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    client.add_targets = broken  # type: ignore[method-assign]
    with store.open_journal("append") as journal:
        result = push(plan, client, journal, segment_id=SEGMENT, chunk_size=50, concurrency=1)
    assert isinstance(result.error, StorageError)
    assert str(result.error).startswith("cannot send a step: ")


def test_an_unknown_segment_behind_a_removal_404_keeps_its_request_id(tmp_path: Path) -> None:
    recorder = Recorder(delete_status=404)
    recorder.status["GET"] = 404
    result = run(tmp_path, removal_plan(1), recorder, concurrency=1)
    assert isinstance(result.error, FatalApiError) and result.error.status == 404
    assert result.error.request_id == "req-2"  # the describe call's
    assert "check segment_id" in str(result.error)


@pytest.mark.parametrize(
    ("identify_by", "accept"),
    [
        pytest.param("unicity", UNICITY, id="unicity"),
        pytest.param("id", "application/json", id="id"),
    ],
)
def test_push_plan_takes_the_jobs_settings(tmp_path: Path, identify_by: str, accept: str) -> None:
    job = load_job(make_job(tmp_path, targets={"identify_by": identify_by, "columns": ["k"]},
                            sync={"chunk_size": 2}))  # fmt: skip
    plan = make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig())
    store = StateStore(tmp_path / "state.parquet", job.segment_id, {"columns": ["k"]})
    recorder, progress, stop, watched = Recorder(), Recording(), threading.Event(), []
    with store.open_journal(plan.action) as journal:
        result = push_plan(
            job,
            plan,
            client=client_of(recorder),
            journal=journal,
            concurrency=1,
            stop=stop,
            progress=progress,
            watch=lambda chunk, accepted: watched.append(chunk) or None,
        )
    assert result.targets_sent == 3
    assert [len(c) for c in watched] == [2, 1]  # chunk_size from the job
    assert {r.headers["Accept"] for r in recorder.sent} == {accept}
    assert {r.url for r in recorder.sent} == {
        f"https://np6.invalid/segments/{job.segment_id}/targets"
    }
    assert progress.events[0] == ("start", ("push", 3))


def test_push_plan_stops_at_the_signal(tmp_path: Path) -> None:
    job = load_job(make_job(tmp_path))
    plan = make_plan(Holding.empty(), pa.array(IDS[:3], KEY_TYPE), SyncConfig())
    store = StateStore(tmp_path / "state.parquet", job.segment_id, {"columns": ["k"]})
    stop, recorder = threading.Event(), Recorder()
    stop.set()
    with store.open_journal(plan.action) as journal:
        result = push_plan(job, plan, client=client_of(recorder), journal=journal,
                           concurrency=1, stop=stop)  # fmt: skip
    assert result.interrupted and recorder.sent == []


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_send_queue_holds_twice_the_concurrency(
    monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    """A stop waits only behind the queued chunks: with every send held, the loop queues
    twice the concurrency, then waits (seen by a spy around the real ``wait``)."""
    held = threading.Event()
    pulled: list[int] = []
    first_wait: list[tuple[int, int]] = []
    real_wait = push_module.wait

    def items():  # type: ignore[no-untyped-def]
        for number in range(20):
            pulled.append(number)
            yield [str(number)]

    def send(item: list[str]) -> int:
        held.wait()
        return len(item)

    def spy(futures, **options):  # type: ignore[no-untyped-def]
        if not first_wait:
            first_wait.append((len(futures), len(pulled)))
        held.set()
        return real_wait(futures, **options)

    monkeypatch.setattr(push_module, "wait", spy)
    error = push_module._run(
        items(), send, lambda item, value: None, concurrency, threading.Event(), NullProgress()
    )
    assert error is None and len(pulled) == 20
    # Queued: twice the concurrency; pulled: one more, the chunk waiting for room.
    assert first_wait == [(2 * concurrency, 2 * concurrency + 1)]


class Contacts(requests.adapters.BaseAdapter):
    """NP6 for removals by unicity value: ``GET /targets?unicity=`` answers the ids of
    ``ids_of``; a DELETE answers 204 for an id in ``members``, 404 otherwise; the segment's
    description answers 200. Keeps every request as "METHOD path"."""

    def __init__(self, ids_of: dict[str, list[str]], members: set[str]) -> None:
        super().__init__()
        self.ids_of, self.members = ids_of, members
        self.calls: list[str] = []

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        url = requests.utils.urlparse(request.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        self.calls.append(f"{request.method} {path}")
        answer = requests.Response()
        answer.request, answer.status_code, answer._content = request, 200, b""
        if request.method == "DELETE":
            answer.status_code = 204 if path.split("/")[2] in self.members else 404
        elif path.startswith("/targets?unicity="):
            value = requests.utils.unquote(url.query.removeprefix("unicity="))
            answer._content = json.dumps(self.ids_of.get(value, [])).encode()
        else:
            answer._content = json.dumps({"id": SEGMENT, "type": "static"}).encode()
        return answer

    def close(self) -> None:
        pass


def by_value_plan(remove: list[str], known: dict[str, list[str]]) -> Plan:
    ids = pa.Table.from_pydict({"key": list(known), "ids": list(known.values())}, IDS_SCHEMA)
    return Plan(
        "update", pa.array([], KEY_TYPE), pa.array(remove, KEY_TYPE), 0, len(remove), 10, 9,
        "test", known_ids=ids,
    )  # fmt: skip


def contacts_client(contacts: Contacts) -> NP6Client:
    settings = Settings(base_url="https://np6.invalid")
    session = make_session(settings, API_KEY)
    session.mount("https://", contacts)
    policy = RetryConfig(max_attempts=1)
    return NP6Client(session, settings, API_KEY, policy=lambda: retry_policy(policy, 1e18))


def test_removals_by_value_look_up_only_the_ids_no_run_learned(tmp_path: Path) -> None:
    contacts = Contacts({"a@x.fr": ["0000000A"], "b@x.fr": ["0000000B"]}, {"0000000A", "0000000C"})
    plan = by_value_plan(["a@x.fr", "b@x.fr", "c@x.fr"], {"c@x.fr": ["0000000C"]})
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    with store.open_journal(plan.action) as journal:
        result = push(
            plan, contacts_client(contacts), journal, segment_id=SEGMENT, chunk_size=50,
            concurrency=1, by_value=True,
        )  # fmt: skip
    # b@x.fr's contact was not in the segment: 2 removals made, 3 keys settled.
    assert result.error is None and (result.targets_removed, result.removals_settled) == (2, 3)
    assert result.lookups is not None and result.lookups.lookups == 2
    assert contacts.calls == [
        "GET /targets?unicity=a%40x.fr",
        "DELETE /targets/0000000A/segments/1234",
        "GET /targets?unicity=b%40x.fr",
        "DELETE /targets/0000000B/segments/1234",
        "GET /segments/1234",  # B was not in it: is the segment there at all?
        "DELETE /targets/0000000C/segments/1234",
    ]
    records = [json.loads(line) for line in store.journal_path.read_bytes().splitlines()[1:]]
    assert [(r["event"], r["keys"]) for r in records] == [
        ("looked_up", ["a@x.fr"]),
        ("removed", ["a@x.fr"]),
        ("looked_up", ["b@x.fr"]),
        ("removed", ["b@x.fr"]),
        ("removed", ["c@x.fr"]),
    ]


@pytest.mark.parametrize(
    ("identify_by", "key", "calls"),
    [
        pytest.param("unicity", "a@x.fr", ["GET /targets?unicity=a%40x.fr",
                                           "DELETE /targets/0000000A/segments/1234"], id="unicity"),
        pytest.param("id", "0000000A", ["DELETE /targets/0000000A/segments/1234"], id="id"),
    ],
)  # fmt: skip
def test_push_plan_removes_by_value_only_in_unicity_mode(
    tmp_path: Path, identify_by: str, key: str, calls: list[str]
) -> None:
    job = load_job(make_job(tmp_path, targets={"identify_by": identify_by, "columns": ["k"]}))
    contacts = Contacts({"a@x.fr": ["0000000A"]}, {"0000000A"})
    plan = by_value_plan([key], {})
    store = StateStore(tmp_path / "state.parquet", job.segment_id, {"columns": ["k"]})
    with store.open_journal(plan.action) as journal:
        result = push_plan(
            job, plan, client=contacts_client(contacts), journal=journal, concurrency=1
        )
    assert (result.error, result.targets_removed) == (None, 1)
    assert contacts.calls == calls
    assert (result.lookups is not None) is (identify_by == "unicity")


def test_a_journal_that_cannot_be_written_is_named_by_a_removal_by_value(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.parquet", SEGMENT, {"columns": ["k"]})
    journal = store.open_journal("update")
    journal.close()  # its disk is gone: every write fails
    contacts = Contacts({}, {"0000000A"})
    plan = by_value_plan(["a@x.fr"], {"a@x.fr": ["0000000A"]})
    result = push(
        plan, contacts_client(contacts), journal, segment_id=SEGMENT, chunk_size=50,
        concurrency=1, by_value=True,
    )  # fmt: skip
    assert isinstance(result.error, StorageError)
    assert str(result.error).startswith(f"cannot record an acknowledged step in {journal.path}: ")
    assert contacts.calls == ["DELETE /targets/0000000A/segments/1234"]


def test_each_send_runs_in_the_jobs_context() -> None:
    # run --parallel: the log records of a worker thread name the job it sends for.
    seen: list[str | None] = []

    def send(item: list[str]) -> int:
        seen.append(current_job.get())
        return len(item)

    token = current_job.set("newsletter")
    try:
        error = push_module._run(
            iter([["a"], ["b"]]), send, lambda item, value: None, 2, threading.Event(),
            NullProgress(),
        )  # fmt: skip
    finally:
        current_job.reset(token)
    assert error is None and seen == ["newsletter", "newsletter"]


def test_a_step_that_cannot_be_made_stops_the_push_and_the_sent_ones_count() -> None:
    """The steps come from a reader (a folded state's keys, a row group at a time): when
    it fails, the steps already made are sent and settled, and the error says what broke."""
    sent: list[list[str]] = []
    settled: list[list[str]] = []

    def steps():  # type: ignore[no-untyped-def]
        yield ["a"]
        yield ["b"]
        raise OSError(28, "No space left on device")

    def send(item: list[str]) -> int:
        sent.append(item)
        return len(item)

    def done(item: list[str], value: int) -> None:
        settled.append(item)

    failure = push_module._run(steps(), send, done, 2, threading.Event(), NullProgress())
    assert isinstance(failure, StorageError)
    assert str(failure) == "cannot make a step: No space left on device"
    assert sorted(sent) == sorted(settled) == [["a"], ["b"]]
