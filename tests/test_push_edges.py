"""The push against a recording transport: what it sends, in which order, what it
reports to the progress display, and what it does not send after a failure."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
import requests
import requests.adapters

from conftest import API_KEY, SEGMENT
from sync.config import RetryConfig, Settings, SyncConfig
from sync.core.keys import KEY_TYPE
from sync.core.plan import Holding, make_plan
from sync.np6.client import NP6Client, make_session, retry_policy
from sync.push import PushResult, push
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
        self.status = {"PUT": put_status, "DELETE": delete_status}
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
    result = run(tmp_path, plan, Recorder(), concurrency=1, progress=progress)
    assert (result.targets_sent, result.targets_removed) == (60, 3)
    starts = [e for kind, e in progress.events if kind == "start"]
    assert starts == [("push", 60), ("remove", 3)]
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
