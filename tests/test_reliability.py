"""Nothing lost, nothing doubled, nothing wiped: kills, faults, locks, safeguards."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    API_KEY,
    SEGMENT,
    emails,
    make_job,
    run_process,
    settings_file,
    state_snapshot,
    wait_for,
    write_csv,
)
from sync.emulator import Emulator
from sync.state.local import StateStore

# Kill trials: real processes killed at random moments (about 4 minutes). README's test
# command runs them; `pytest -m "not slow"` leaves them out while developing.
pytestmark = pytest.mark.slow


def emails_set(start: int, stop: int) -> set[str]:
    return {f"user{n}@example.com" for n in range(start, stop)}


def puts_answered(emulator: Emulator) -> int:
    return sum(1 for c in emulator.calls if c.method == "PUT" and c.status == 200)


def start_run(job: Path, config: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "run", str(job), "--config", str(config), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journaled_keys(store: StateStore) -> set[str]:
    if not store.journal_path.exists():
        return set()
    keys: set[str] = set()
    for line in store.journal_path.read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "added":
            keys.update(event["keys"])
    return keys


SCENARIOS = {
    # name: (keys the segment holds before, keys of the source)
    "first-load": (None, (0, 1000)),
    "append": ((0, 500), (0, 1500)),
    "reload": ((0, 1000), (50, 1100)),
}


@pytest.mark.parametrize("trial", range(21))
def test_a_run_killed_at_a_random_moment_is_finished_by_the_next(
    trial: int, tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    rng = random.Random(trial)
    scenario = list(SCENARIOS)[trial % 3]
    before, source = SCENARIOS[scenario]
    config = settings_file(tmp_path)
    job = make_job(tmp_path)
    store = StateStore(tmp_path / "state" / "list.parquet", SEGMENT, _definition())
    if before is not None:
        write_csv(tmp_path / "list.csv", emails(*before))
        assert run_process(["run", job, "--config", config], env).returncode == 0
    write_csv(tmp_path / "list.csv", emails(*source))
    emulator.latency_s = 0.003
    emulator.reset_calls()

    process = start_run(job, config, env)
    chunks = (source[1] - source[0]) // 50
    if rng.random() < 0.2:
        time.sleep(rng.uniform(0.0, 0.6))  # while starting or reading
    else:
        target = rng.randrange(0, chunks)
        wait_for(lambda: puts_answered(emulator) >= target or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    wait_for(lambda: emulator.idle)  # what was in flight has landed
    emulator.latency_s = 0.0

    acknowledged = journaled_keys(store)
    answered = {
        t for c in emulator.calls if c.method == "PUT" and c.status == 200 for t in c.targets
    }
    emulator.reset_calls()
    resumed = run_process(["run", job, "--config", config], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    assert emulator.members(SEGMENT) == emails_set(*source)
    resent = [t for c in emulator.calls if c.method == "PUT" for t in c.targets]
    # Nothing NP6 acknowledged to the killed run and that it journaled is sent again;
    # only the chunks in flight at the kill (at most `concurrency` of them) may be.
    assert not acknowledged & set(resent)
    assert len((answered - acknowledged) & set(resent)) <= 2 * 50
    assert len(resent) == len(set(resent))
    again = run_process(["run", job, "--config", config], env)
    assert again.returncode == 0 and "no_changes" in again.stdout


def _definition() -> dict:
    return {
        "identify_by": "unicity",
        "columns": ["email"],
        "separator": "",
        "transforms": {"email": ["strip"]},
    }


@pytest.mark.parametrize("seed", range(4))
def test_runs_against_a_faulty_np6_end_equal_to_the_source(
    seed: int, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = ("429", "500", "503", "drop", "lost")
    with Emulator(API_KEY, fault_rate=0.3, fault_kinds=faults, seed=seed) as np6:
        monkeypatch.setenv("NP6_BASE_URL", np6.url)
        config = settings_file(tmp_path, concurrency=4)
        job = make_job(tmp_path)
        for source in [(0, 1000), (0, 1500), (140, 1500)]:  # first load, append, reload
            write_csv(tmp_path / "list.csv", emails(*source))
            result = cli("run", job, "--config", config)
            assert result.code == 0, result.out + result.err
            assert np6.members(SEGMENT) == emails_set(*source)
        assert {c.fault for c in np6.calls} >= set(faults)


def test_a_second_run_exits_4_and_a_dead_holders_lock_is_taken_over(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    config = settings_file(tmp_path, concurrency=1)
    job = make_job(tmp_path, sync={"chunk_size": 10})
    write_csv(tmp_path / "list.csv", emails(0, 1000))
    emulator.latency_s = 0.02

    first = start_run(job, config, env)
    try:
        wait_for(lambda: puts_answered(emulator) >= 1)
        second = run_process(["run", job, "--config", config], env)
    finally:
        out, err = first.communicate(timeout=60)
    assert second.returncode == 4
    assert f"pid {first.pid}" in second.stderr + second.stdout
    assert first.returncode == 0, out + err
    assert emulator.members(SEGMENT) == emails_set(0, 1000)

    write_csv(tmp_path / "list.csv", emails(0, 2000))
    emulator.reset_calls()
    holder = start_run(job, config, env)
    wait_for(lambda: puts_answered(emulator) >= 2)
    holder.kill()
    holder.communicate()
    emulator.latency_s = 0.0
    taken = run_process(["run", job, "--config", config], env)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert emulator.members(SEGMENT) == emails_set(0, 2000)


def test_sigterm_finishes_the_chunks_in_flight_saves_and_exits_1(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 2000))
    emulator.latency_s = 0.01
    process = start_run(job, config, env)
    wait_for(lambda: puts_answered(emulator) >= 5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, out + err
    assert "stopped by a signal" in out
    store = StateStore(tmp_path / "state" / "list.parquet", SEGMENT, _definition())
    saved = set(store.load().keys.to_pylist())
    assert not store.journal_path.exists()  # folded into the state file
    assert saved == emulator.members(SEGMENT)  # every answered chunk was saved
    assert 0 < len(saved) < 2000
    emulator.latency_s = 0.0
    assert run_process(["run", job, "--config", config], env).returncode == 0
    assert emulator.members(SEGMENT) == emails_set(0, 2000)


@pytest.mark.parametrize(
    ("rows", "extra", "refusal"),
    [
        pytest.param([], [], "the source has no rows", id="header-only"),
        pytest.param(
            emails(0, 80), [], "would remove 20 of the segment's 100 targets", id="shrank"
        ),
        pytest.param(emails(0, 95), ["--dry-run"], None, id="dry-run"),
    ],
)
def test_refusals_and_dry_runs_change_nothing(
    tmp_path, cli, emulator, rows, extra, refusal
) -> None:
    config = settings_file(tmp_path)
    # reload_cost_factor 1: the removals take the cheaper way, a reload (P#9's default 5
    # would remove the 5 of the dry run one by one).
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.1, "reload_cost_factor": 1})
    write_csv(tmp_path / "list.csv", emails(0, 100))
    assert cli("run", job, "--config", config).code == 0
    before = state_snapshot(tmp_path / "state")
    emulator.reset_calls()

    write_csv(tmp_path / "list.csv", rows)
    result = cli("run", job, "--config", config, *extra)
    assert result.code == (0 if refusal is None else 3)
    if refusal:
        assert refusal in result.out
        assert "reload" in result.out  # the plan is printed
    else:
        assert "planned" in result.out and "would send 2 PUT, 1 DELETE" in result.out
    assert emulator.calls == []
    assert state_snapshot(tmp_path / "state") == before
    assert emulator.members(SEGMENT) == emails_set(0, 100)

    forced = cli("run", job, "--config", config, "--force")
    assert forced.code == 0
    assert emulator.members(SEGMENT) == {r[0] for r in rows}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda p: p.write_bytes(b"garbage"), "unreadable state file", id="corrupt"),
        pytest.param(None, "the state is for segment 1234, the job names segment 99", id="foreign"),
        pytest.param("version", "state format version 0", id="outdated"),
    ],
)
def test_a_bad_state_stops_the_job_and_changes_nothing(
    tmp_path, cli, emulator, change, message
) -> None:
    config = settings_file(tmp_path)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 10))
    assert cli("run", job, "--config", config).code == 0
    state = tmp_path / "state" / "list.parquet"
    if change is None:
        job = make_job(tmp_path, segment_id=99)
    elif change == "version":
        import pyarrow.parquet as pq

        table = pq.read_table(state)
        meta = json.loads(table.schema.metadata[b"np6sync"])
        pq.write_table(
            table.replace_schema_metadata({b"np6sync": json.dumps({**meta, "version": 0})}), state
        )
    else:
        change(state)
    before = state_snapshot(tmp_path / "state")
    emulator.reset_calls()
    write_csv(tmp_path / "list.csv", emails(0, 20))
    result = cli("run", job, "--config", config)
    assert result.code == 2
    assert message in result.out + result.err and "--full-refresh" in result.out + result.err
    assert emulator.calls == []
    assert state_snapshot(tmp_path / "state") == before

    rebuilt = cli("run", job, "--config", config, "--full-refresh")
    assert rebuilt.code == 0, rebuilt.out
    assert cli("run", job, "--config", config).code == 0


def test_the_key_never_leaks_even_when_np6_echoes_headers(tmp_path, cli, monkeypatch) -> None:
    with Emulator(API_KEY, echo_headers_on_error=True, fault_rate=1.0, fault_kinds=("500",)) as np6:
        monkeypatch.setenv("NP6_BASE_URL", np6.url)
        config = settings_file(tmp_path, retry={"max_attempts": 2, "initial_wait": 0.001})
        job = make_job(tmp_path)
        write_csv(tmp_path / "list.csv", emails(0, 5))
        result = cli("run", job, "--config", config, "-vv", "--report-json", tmp_path / "r.json")
    assert result.code == 1
    assert "HTTP 500" in result.out
    everything = result.out + result.err + (tmp_path / "r.json").read_text()
    everything += "".join(
        p.read_bytes().decode(errors="replace") for p in (tmp_path / "state").iterdir()
    )
    assert API_KEY not in everything


def test_a_clear_without_an_answer_makes_the_next_run_reload(tmp_path, cli, emulator) -> None:
    config = settings_file(tmp_path, retry={"max_attempts": 1})
    # No look-ups before the clear: the fault below must hit the DELETE.
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.5, "lookup_sample": 0})
    write_csv(tmp_path / "list.csv", emails(0, 100))
    assert cli("run", job, "--config", config).code == 0

    write_csv(tmp_path / "list.csv", emails(10, 100))
    # The description answers; NP6 empties the segment, but that answer never arrives.
    emulator.inject("none", "lost")
    failed = cli("run", job, "--config", config)
    assert failed.code == 1 and "DELETE" in failed.out
    assert emulator.members(SEGMENT) == set()

    write_csv(tmp_path / "list.csv", emails(0, 100))  # as it was: the old state would match
    emulator.reset_calls()
    resumed = cli("run", job, "--config", config)
    assert resumed.code == 0, resumed.out
    changes = [c.method for c in emulator.calls if c.method != "GET"]
    assert changes[0] == "DELETE"  # reloaded, not trusted
    assert emulator.members(SEGMENT) == emails_set(0, 100)
