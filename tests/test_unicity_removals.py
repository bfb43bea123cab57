"""Removals in unicity mode: a look-up of the contact's id, then a per-target DELETE."""

from __future__ import annotations

import json
import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_reliability import start_run, wait_for
from test_report_on_the_way import signalled_after

from conftest import API_KEY, SEGMENT, emails, make_job, run_process, settings_file, write_csv
from sync.emulator import Emulator, make_contacts
from sync.emulator.contacts import target_id
from sync.errors import EXIT_FAILED

ADDRESSES = [f"user{n}@example.com" for n in range(6000)]
CONTACTS = make_contacts(ADDRESSES)  # user{n} is contact target_id(n)


@pytest.fixture
def lookup_route() -> bool:
    return True  # a test parametrizes it False for an account without the look-up


@pytest.fixture
def emulator(lookup_route: bool) -> Iterator[Emulator]:
    """The account's contacts are the addresses."""
    with Emulator(
        API_KEY, segments=[SEGMENT], contacts=CONTACTS, lookup_route=lookup_route
    ) as server:
        yield server


def ids(start: int, stop: int) -> set[str]:
    return {target_id(n) for n in range(start, stop)}


def lookups(emulator: Emulator) -> list:
    return [c for c in emulator.calls if c.method == "GET" and c.path.startswith("/targets?")]


def deletes(emulator: Emulator, prefix: str) -> list:
    return [c for c in emulator.calls if c.method == "DELETE" and c.path.startswith(prefix)]


def report(path: Path) -> dict:
    return json.loads(path.read_text())["jobs"][0]


@pytest.fixture
def cli(cli, tmp_path: Path):
    """The command line with quick settings (no rate limit to wait for)."""
    config = settings_file(tmp_path, concurrency=8)

    def run(*args: str | Path):
        extra = ("--config", config) if args[0] in ("run", "verify") else ()
        return cli(*args, *extra)

    return run


def filled(tmp_path: Path, cli, emulator: Emulator, **sync: object) -> Path:
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.5, **sync})
    write_csv(tmp_path / "list.csv", emails(0, 5000))
    assert cli("run", job).code == 0
    assert emulator.members(SEGMENT) == ids(0, 5000)
    emulator.reset_calls()
    return job


def test_a_hundred_leave_with_two_requests_each_and_no_clear(tmp_path, emulator, cli) -> None:
    # 200 requests against 99 for a reload of 4,900: per_target is asked for (auto would
    # take it too, within sync.reload_cost_factor).
    job = filled(tmp_path, cli, emulator, removals="per_target")
    write_csv(tmp_path / "list.csv", emails(100, 5000))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    beyond_preflight = [c for c in emulator.calls if c.path != f"/segments/{SEGMENT}"]
    assert len(beyond_preflight) <= 200
    assert (len(lookups(emulator)), len(deletes(emulator, "/targets/"))) == (100, 100)
    assert deletes(emulator, "/segments/") == []
    assert emulator.members(SEGMENT) == ids(100, 5000)
    got = report(tmp_path / "r.json")
    assert (got["action"], got["targets_removed"], got["lookups"]) == ("update", 100, 100)
    assert got["removal_costs"]["per_target"]["requests"] == 200
    assert "user1@example.com" not in result.out + result.err
    history = (tmp_path / "state" / "list.parquet.history.jsonl").read_text()
    assert "@example.com" not in history
    emulator.reset_calls()
    assert "no_changes" in cli("run", job).out and emulator.calls == []


def test_auto_removes_one_by_one_when_that_costs_no_more(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator)
    write_csv(tmp_path / "list.csv", emails(10, 5000))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    changes = [c for c in emulator.calls if c.path != f"/segments/{SEGMENT}"]  # not preflight
    assert len(changes) == 20 and deletes(emulator, "/segments/") == []
    assert emulator.members(SEGMENT) == ids(10, 5000)
    assert "10 look-up(s) of contact ids" in report(tmp_path / "r.json")["reason"]
    # 60 leaving: 120 requests one by one, 99 for a reload: within reload_cost_factor (5).
    write_csv(tmp_path / "list.csv", emails(70, 5000))
    emulator.reset_calls()
    assert cli("run", job).code == 0
    assert deletes(emulator, "/segments/") == [] and len(deletes(emulator, "/targets/")) == 60
    assert emulator.members(SEGMENT) == ids(70, 5000)
    # 250 leaving: 500 requests, more than 5 times a reload's 95: a reload.
    write_csv(tmp_path / "list.csv", emails(320, 5000))
    emulator.reset_calls()
    assert cli("run", job).code == 0
    assert len(deletes(emulator, "/segments/")) == 1 and deletes(emulator, "/targets/") == []
    assert emulator.members(SEGMENT) == ids(320, 5000)


def test_the_plan_shows_its_look_ups(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator)
    write_csv(tmp_path / "list.csv", emails(3, 5000))
    result = cli("run", job, "--dry-run")
    assert "would send 0 PUT, 3 DELETE, 0 POST, 3 GET (contact look-ups)" in result.out
    assert "per_target 6 requests" in result.out
    assert emulator.calls == []


@pytest.mark.parametrize("lookup_route", [False])
def test_an_account_without_the_look_up_reloads_instead(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, removals="per_target")
    write_csv(tmp_path / "list.csv", emails(100, 5000))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert len(deletes(emulator, "/segments/")) == 1
    assert emulator.members(SEGMENT) == ids(100, 5000)
    got = report(tmp_path / "r.json")
    assert got["action"] == "reload" and "answered 404" in got["lookup_fallback"]
    assert "fell back to a reload" in result.out


@pytest.mark.parametrize("lookup_route", [False])
def test_the_fallback_reload_passes_the_safeguards(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, max_removed_ratio=0.5)
    write_csv(tmp_path / "list.csv", emails(100, 5000))
    emulator.reset_calls()
    assert cli("run", job, "--dry-run").code == 0
    assert emulator.calls == []


def test_looks_ups_turned_off_reload(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, lookups=False)
    write_csv(tmp_path / "list.csv", emails(10, 5000))
    assert cli("run", job).code == 0
    assert lookups(emulator) == [] and len(deletes(emulator, "/segments/")) == 1
    assert emulator.members(SEGMENT) == ids(10, 5000)


def test_a_key_without_contact_is_dropped_and_reported(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [*emails(0, 50), ["nobody@example.org"]])
    assert cli("run", job).code == 0
    write_csv(tmp_path / "list.csv", emails(0, 50))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    got = report(tmp_path / "r.json")
    assert got["lookups_not_found"] == 1 and got["targets_removed"] == 0  # none was made
    assert "1 leaving key(s) name no NP6 contact" in result.out
    assert "nobody@example.org" not in result.out + result.err
    assert emulator.members(SEGMENT) == ids(0, 50)
    assert "no_changes" in cli("run", job).out


def test_learned_ids_are_kept_and_a_stale_one_is_looked_up_again(tmp_path, emulator, cli):
    job = make_job(tmp_path, sync={"removals": "per_target"})
    write_csv(tmp_path / "list.csv", emails(0, 50))
    assert cli("run", job).code == 0
    set_known_ids(tmp_path, {"user0@example.com": "ZZZZZZZZ"})
    write_csv(tmp_path / "list.csv", emails(2, 50))
    emulator.reset_calls()
    result = cli("run", job)
    assert result.code == 0, result.out
    # user0: its stale id answers 404, then a look-up; user1: a look-up.
    assert len(lookups(emulator)) == 2 and len(deletes(emulator, "/targets/")) == 3
    assert emulator.members(SEGMENT) == ids(2, 50)


def test_deferred_removals_come_due_one_by_one(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, removals="defer", defer_removals_ratio=0.001)
    write_csv(tmp_path / "list.csv", emails(2, 5000))
    assert cli("run", job).code == 0
    assert emulator.calls == [] and emulator.members(SEGMENT) == ids(0, 5000)
    write_csv(tmp_path / "list.csv", emails(10, 5000))  # 10 pending: past 0.1%
    result = cli("run", job)
    assert result.code == 0, result.out
    assert len(lookups(emulator)) == 10 and deletes(emulator, "/segments/") == []
    assert emulator.members(SEGMENT) == ids(10, 5000)


def set_known_ids(tmp_path: Path, known: dict[str, str]) -> None:
    """Write ids into the state as if runs had learned them."""
    state = tmp_path / "state" / "list.parquet"
    table = pq.read_table(state)
    column = [[known[k]] if k in known else None for k in table["key"].to_pylist()]
    pq.write_table(table.set_column(2, "target_ids", pa.array(column)), state)


def test_verify_compares_the_ids_the_state_knows(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 20))
    assert cli("run", job).code == 0
    result = cli("verify", job)
    # No id known: nothing checked, so not verified (P#9: it used to exit 0).
    assert result.code == 1, result.out + result.err
    assert "20 key(s) whose contact id the state does not know" in result.out
    assert "NOT VERIFIED: checked 0 of 20 keys (0%)" in result.out
    set_known_ids(tmp_path, {f"user{n}@example.com": target_id(n) for n in range(20)})
    result = cli("verify", job)
    assert result.code == 0, result.out + result.err
    assert "equal as far as known ids tell (checked 20 of 20 keys (100%))" in result.out
    set_known_ids(tmp_path, {"user0@example.com": target_id(0), "user1@example.com": "ZZZZZZZZ"})
    result = cli("verify", job)
    assert result.code == 1
    assert "the state knows the ids of 2 of its 20 keys: 1 missing" in result.out
    assert "19 segment id(s) the state does not know (at least 1 extra)" in result.out
    assert "@example.com" not in result.out


def answered(emulator: Emulator, method: str, prefix: str) -> int:
    return sum(
        1
        for c in emulator.calls
        if c.method == method and c.path.startswith(prefix) and c.status in (200, 204)
    )


@pytest.mark.parametrize("trial", range(6))
def test_a_run_killed_during_look_ups_and_removals_is_finished_by_the_next(
    trial: int, tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    rng = random.Random(trial)
    config = settings_file(tmp_path)
    job = make_job(tmp_path, sync={"removals": "per_target", "max_removed_ratio": 0.5})
    write_csv(tmp_path / "list.csv", emails(0, 1000))
    assert run_process(["run", job, "--config", config], env).returncode == 0
    write_csv(tmp_path / "list.csv", emails(100, 1000))
    emulator.latency_s = 0.003
    emulator.reset_calls()

    process = start_run(job, config, env)
    kind = ("GET", "/targets?") if trial % 2 else ("DELETE", "/targets/")
    target = rng.randrange(1, 95)
    wait_for(lambda: answered(emulator, *kind) >= target or process.poll() is not None)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert (tmp_path / "state" / "list.parquet.journal").exists()  # killed mid-way
    wait_for(lambda: emulator.idle)  # what was in flight has landed
    emulator.latency_s = 0.0
    first = emulator.calls
    emulator.reset_calls()

    resumed = run_process(["run", job, "--config", config], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert emulator.members(SEGMENT) == ids(100, 1000)
    assert deletes(emulator, "/segments/") == []
    looked_up = Counter(c.path for c in first + emulator.calls if c.path.startswith("/targets?"))
    assert max(looked_up.values()) <= 2  # a look-up answered but not acted on: once more
    assert sum(n - 1 for n in looked_up.values()) <= 4  # only those in flight at the kill
    again = run_process(["run", job, "--config", config], env)
    assert again.returncode == 0 and "no_changes" in again.stdout


def test_look_ups_leave_no_personal_value_in_the_most_verbose_logs(
    tmp_path: Path, env: dict[str, str], emulator: Emulator
) -> None:
    config = settings_file(tmp_path)
    job = make_job(tmp_path, sync={"removals": "per_target"})
    write_csv(tmp_path / "list.csv", emails(0, 50))
    assert run_process(["run", job, "--config", config], env).returncode == 0
    write_csv(tmp_path / "list.csv", emails(5, 50))
    done = run_process(["run", job, "--config", config, "-vv"], env)
    assert done.returncode == 0, done.stderr
    assert "unicity=(value)" in done.stderr  # urllib3 logged each look-up's URL
    assert "example.com" not in done.stdout + done.stderr
    assert len(lookups(emulator)) == 5


@pytest.mark.parametrize("lookup_route", [False])
def test_a_stop_before_the_reload_instead_reports_what_its_preflight_said(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    import sync.verify.preflight

    job = filled(tmp_path, cli, emulator, removals="per_target")
    write_csv(tmp_path / "list.csv", emails(100, 5000))
    # The per-target push's preflight, then the reload's: a stop once it has spoken.
    signalled_after(monkeypatch, sync.verify.preflight, "preflight", call=2)
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == EXIT_FAILED, result.out + result.err
    got = report(tmp_path / "r.json")
    assert got["phase"] == "preflight"
    # Not "before anything was sent": the first push may have changed the segment.
    assert got["error"].startswith("stopped by a signal before the reload instead was sent")
    assert got["lookup_fallback"] and got["action"] == "reload"
    # What NP6 said before the reload (its preflight, the last), kept by the stop.
    [notice] = got["notices"]
    assert notice.startswith("cannot check the keys before the clear"), notice
    assert emulator.members(SEGMENT) == ids(0, 5000)


@pytest.mark.parametrize("lookup_route", [False])
def test_a_refused_reload_instead_reports_the_plan_it_would_have_replaced(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    import sync.job.fallback

    job = filled(tmp_path, cli, emulator, removals="per_target")
    write_csv(tmp_path / "list.csv", [*emails(100, 5000), ["user5500@example.com"]])
    # The same inputs as the plan they passed: only a refusal made up here refuses it.
    monkeypatch.setattr(sync.job.fallback, "check_safeguards", lambda *a: ["made up"])
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 3, result.out + result.err
    got = report(tmp_path / "r.json")
    assert (got["status"], got["phase"], got["refusals"]) == ("refused", "fallback", ["made up"])
    assert "the reload instead is refused: made up" in got["error"]
    assert (got["action"], got["added"], got["removed"]) == ("update", 1, 100)
    assert "answered 404" in got["lookup_fallback"]
    # The first push's addition stays, acknowledged; nothing was cleared.
    assert (got["targets_sent"], got["targets_accepted"]) == (1, 1)
    assert got["requests"]["put"] == 1 and got["requests"]["delete"] == 0
    assert deletes(emulator, "/segments/") == []
    assert emulator.members(SEGMENT) == ids(0, 5000) | ids(5500, 5501)
