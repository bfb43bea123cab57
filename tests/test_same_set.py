"""A new file with the very keys of the state: planned from the state's print, without
reading the state's keys; and every doubt reads them. Through the real CLI against the
emulator, with the print's threshold lowered (sync.state.local.PRINT_KEYS)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job, settings_file, write_csv
from conftest import run_job as run
from sync.core.hashing import SetPrint, _digests, hasher, set_print
from sync.core.keys import KEY_TYPE
from sync.emulator import Emulator
from sync.job.same_set import Checked, same_set
from sync.state import local
from sync.state.local import StateStore
from sync.state.seal import COUNTS, SourceProof, write_seal

COUNTED = ("status", "action", "rows_read", "rows_rejected", "duplicate_keys", "keys")
COUNTED += ("added", "removed", "rejects_by_reason", "exit_code")
KEYS = [f"user{n}@example.com" for n in range(60)]


@pytest.fixture(autouse=True)
def printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "PRINT_KEYS", 1)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return settings_file(tmp_path)


def job_file(tmp_path: Path, **overrides: object) -> Path:
    targets = {"columns": ["email"], "transforms": {"email": ["strip", "lower"]}}
    return make_job(tmp_path, targets=targets, **overrides)


def shuffled(keys: list[str], seed: int = 7) -> list[list[str]]:
    """The keys in another order, one twice in another case, and a rejected (empty) row."""
    rows = [[k] for k in keys] + [[keys[3].upper()], [""]]
    random.Random(seed).shuffle(rows)
    return rows


def read_state(report: dict) -> bool:
    """Whether the run read the state's keys (a full run does; a same-set run does not)."""
    return "state_read" in report["phase_s"]


def state_of(tmp_path: Path) -> Path:
    return tmp_path / "state" / "list.parquet"


def metadata(path: Path) -> dict:
    meta: dict = json.loads(pq.read_schema(path).metadata[b"np6sync"])
    return meta


def rewrite_metadata(path: Path, **changes: object) -> None:
    table = pq.read_table(path)
    meta = {**metadata(path), **changes}
    pq.write_table(table.replace_schema_metadata({b"np6sync": json.dumps(meta)}), path)


def sealed(store: StateStore, shape: str = "the job") -> StateStore:
    """``store`` vouched for by a seal, as after a run of the job ``shape``."""
    source = store.path.with_name("sealed-source.csv")
    source.write_text("email\n")
    proof = SourceProof.take(source)
    assert proof is not None
    write_seal(store.path, shape, proof, dict.fromkeys(COUNTS, 0))
    return store


def first_load(tmp_path: Path, cli, config: Path, emulator: Emulator, **job: object) -> Path:
    path = job_file(tmp_path, **job)
    write_csv(tmp_path / "list.csv", [[k] for k in KEYS])
    assert run(cli, path, config)["status"] == "succeeded"
    assert emulator.members(SEGMENT) == set(KEYS)
    return path


# --- the print -------------------------------------------------------------------------


def test_a_print_ignores_order_and_repeats_and_sees_one_key_changed() -> None:
    keys = pa.array(KEYS)
    again = pa.array([*reversed(KEYS), KEYS[0], KEYS[5]])
    one_off = pa.array([*KEYS[:-1], "someone@example.com"])
    assert set_print(keys)[0] == set_print(again)[0]
    assert set_print(keys)[0].count == len(KEYS)
    assert set_print(one_off)[0] != set_print(keys)[0]
    assert set_print(keys[:-1])[0] != set_print(keys)[0]


def test_only_a_print_of_this_hasher_with_whole_numbers_is_taken() -> None:
    good = set_print(pa.array(KEYS))[0]
    assert SetPrint.from_json(good.as_json()) == good
    for bad in (
        {**good.as_json(), "hasher": "polars 0.0.1"},
        {**good.as_json(), "count": -1},
        {**good.as_json(), "high": 1 << 64},
        {**good.as_json(), "low": "12"},
        {**good.as_json(), "low": True},
        {"count": good.count, "high": good.high, "hasher": hasher()},
        None,
        [1, 2, 3],
    ):
        assert SetPrint.from_json(bad) is None, bad


def test_a_state_records_its_print_only_when_it_has_no_deferred_removals(tmp_path) -> None:
    store = StateStore(tmp_path / "s.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS))
    assert SetPrint.from_json(metadata(store.path)["key_set"]) == set_print(pa.array(KEYS))[0]
    pending = pa.table({"key": [KEYS[0]], "since": ["2026-01-01"]})
    store.save(pa.array(KEYS), pending)
    assert "key_set" not in metadata(store.path)
    store.save(iter([pa.array(KEYS)]))  # in parts: a folded run's state is not printed
    assert "key_set" not in metadata(store.path)


def same(store: StateStore, keys: list[str], shape: str = "the job") -> Checked:
    return same_set(store, pa.array(keys), shape=shape)


def test_a_same_set_is_folded_whole_and_can_read_the_state_back(tmp_path) -> None:
    store = StateStore(tmp_path / "s.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS))
    sealed(store)
    checked = same(store, [*reversed(KEYS), KEYS[9]])
    folded = checked.folded
    assert folded is not None and checked.reread is not None and checked.digests is None
    assert (folded.held, folded.count, folded.in_source.type) == (60, 60, pa.bool_())
    assert folded.in_source.true_count == len(folded.in_source) == 60
    assert folded.added.type == folded.gone.type == KEY_TYPE
    assert len(folded.added) == len(folded.gone) == 0
    assert folded.every().to_pylist() == KEYS  # a plan that sends every key reads them
    assert [k for part in checked.reread() for k in part.to_pylist()] == KEYS

    other = [*KEYS[:-1], "someone@example.com"]
    missed = same(store, other)
    assert missed.folded is None and missed.reread is None
    assert missed.digests is not None and missed.digests.equals(_digests(pa.array(other)))
    # A full refresh never asks: its route does not print (tests/test_route.py).


def test_only_a_state_its_job_s_seal_vouches_for_is_trusted_to_its_print(tmp_path) -> None:
    store = StateStore(tmp_path / "s.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS))
    assert same(store, KEYS) == Checked()  # no seal
    sealed(store, "another job")
    assert same(store, KEYS) == Checked()
    sealed(store)
    assert same(store, KEYS).folded is not None
    # Another tool rewrites the state, keeping its metadata (pyarrow does): 10 keys fewer.
    pq.write_table(pq.read_table(store.path).slice(10), store.path)
    assert metadata(store.path)["key_set"]["count"] == len(KEYS)
    assert same(store, KEYS) == Checked()
    sealed(store)  # the journal of an unfinished run, on a state the seal vouches for
    store.journal_path.write_text("")
    assert same(store, KEYS) == Checked()


@pytest.mark.parametrize("change", ["hasher", "count", "high", "low", "rows"])
def test_a_print_that_does_not_match_the_source_s_is_not_taken(tmp_path, change) -> None:
    store = StateStore(tmp_path / "s.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS))
    key_set = metadata(store.path)["key_set"]
    changed = {"hasher": "polars 0.0.1", "count": 61, "high": 0, "low": 0, "rows": 61}[change]
    rewrite_metadata(store.path, key_set={**key_set, change: changed})
    sealed(store)  # as if np6-sync had written it so
    assert same(store, KEYS).folded is None


def test_the_print_threshold_counts_keys_at_and_over_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(local, "PRINT_KEYS", len(KEYS))
    store = StateStore(tmp_path / "s.parquet", SEGMENT, {"columns": ["email"]})
    store.save(pa.array(KEYS))
    assert metadata(store.path)["key_set"]["rows"] == len(KEYS)
    assert same(sealed(store), KEYS[::-1]).folded is not None
    store.save(pa.array(KEYS[:-1]))
    assert "key_set" not in metadata(store.path)
    store.save(pa.array(KEYS))
    assert same(sealed(store), KEYS[:-1]) == Checked()


# --- through the command line ------------------------------------------------------------


def test_the_same_keys_in_another_order_are_planned_without_reading_the_state(
    tmp_path, emulator, cli, config, monkeypatch
) -> None:
    job = first_load(tmp_path, cli, config, emulator)
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    emulator.reset_calls()
    same = run(cli, job, config)
    assert not read_state(same)
    assert same["status"] == "no_changes" and emulator.calls == []
    assert emulator.members(SEGMENT) == set(KEYS)

    monkeypatch.setattr(local, "PRINT_KEYS", 1 << 40)  # the same file, planned in full
    write_csv(tmp_path / "list.csv", shuffled(KEYS, seed=8))
    full = run(cli, job, config)
    assert read_state(full)
    assert {k: same[k] for k in COUNTED} == {k: full[k] for k in COUNTED}
    assert same["rows_rejected"] == 1 and same["duplicate_keys"] == 1 and same["keys"] == 60


def test_one_key_replaced_by_another_is_sent_and_removed(tmp_path, emulator, cli, config) -> None:
    job = first_load(tmp_path, cli, config, emulator)
    now = [*KEYS[:-1], "newcomer@example.com"]  # as many keys, one of them new
    write_csv(tmp_path / "list.csv", shuffled(now))
    report = run(cli, job, config)
    assert read_state(report)
    assert (report["added"], report["removed"], report["status"]) == (1, 1, "succeeded")
    assert emulator.members(SEGMENT) == set(now)
    write_csv(tmp_path / "list.csv", shuffled(now, seed=3))
    assert not read_state(run(cli, job, config))  # the new state is printed too


def test_a_journal_on_record_is_replayed_not_trusted_to_the_print(
    tmp_path, emulator, cli, config
) -> None:
    """A run died after NP6 acknowledged a key the state file does not hold yet: the
    file's print matches the source, the segment does not; the journal says so."""
    job = first_load(tmp_path, cli, config, emulator)
    stray = "stray@example.com"
    emulator.set_members(SEGMENT, [*KEYS, stray])
    store = StateStore(state_of(tmp_path), SEGMENT, metadata(state_of(tmp_path))["key_definition"])
    with store.open_journal("append") as journal:
        journal.added([stray])
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    report = run(cli, job, config)
    assert read_state(report) and report["removed"] == 1
    assert emulator.members(SEGMENT) == set(KEYS)


def test_deferred_removals_are_planned_from_the_state(tmp_path, emulator, cli, config) -> None:
    job = first_load(
        tmp_path, cli, config, emulator, sync={"removals": "defer", "defer_removals_ratio": 0.5}
    )
    write_csv(tmp_path / "list.csv", shuffled(KEYS[1:]))
    assert run(cli, job, config)["pending_removals"] == 1
    assert "key_set" not in metadata(state_of(tmp_path))
    write_csv(tmp_path / "list.csv", shuffled(KEYS))  # the key is back: nothing to defer
    back = run(cli, job, config)
    assert read_state(back) and back["pending_removals"] == 0
    definition = metadata(state_of(tmp_path))["key_definition"]
    assert not len(StateStore(state_of(tmp_path), SEGMENT, definition).load().pending)
    assert "key_set" in metadata(state_of(tmp_path))


def test_a_full_refresh_reloads_whatever_the_print(tmp_path, emulator, cli, config) -> None:
    job = first_load(tmp_path, cli, config, emulator)
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    emulator.reset_calls()
    report = run(cli, job, config, "--full-refresh")
    assert report["action"] == "reload"
    assert any(c.method == "DELETE" for c in emulator.calls)
    assert emulator.members(SEGMENT) == set(KEYS)


def test_a_state_rewritten_by_another_tool_is_read(tmp_path, emulator, cli, config) -> None:
    """Ten targets left the segment outside np6-sync, and an operator dropped their keys
    from the state to have them sent again; pyarrow kept the file's metadata, print
    included: the seal no longer vouches for the file."""
    job = first_load(tmp_path, cli, config, emulator)
    state = state_of(tmp_path)
    pq.write_table(pq.read_table(state).slice(10), state)
    emulator.set_members(SEGMENT, KEYS[10:])
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    emulator.reset_calls()
    report = run(cli, job, config)
    assert read_state(report) and (report["added"], report["status"]) == (10, "succeeded")
    assert sum(c.method == "PUT" for c in emulator.calls) == 1
    assert emulator.members(SEGMENT) == set(KEYS)


def test_a_state_holding_a_key_twice_is_read(tmp_path, emulator, cli, config) -> None:
    job = first_load(tmp_path, cli, config, emulator)
    definition = metadata(state_of(tmp_path))["key_definition"]
    StateStore(state_of(tmp_path), SEGMENT, definition).save(pa.array([*KEYS, KEYS[0]]))
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    report = run(cli, job, config)
    assert read_state(report) and report["status"] == "no_changes"
    assert emulator.members(SEGMENT) == set(KEYS)


def test_a_large_local_source_has_polars_imported_while_it_is_read(tmp_path: Path) -> None:
    from sync.config import load_job
    from sync.job.same_set import HASHED_BYTES, will_hash

    job = load_job(job_file(tmp_path))
    assert not will_hash(job)  # no file yet: its reader will say so
    (tmp_path / "list.csv").write_bytes(b"email\n" + b"x" * (HASHED_BYTES - 8) + b"\n")
    assert not will_hash(job)
    (tmp_path / "list.csv").write_bytes(b"email\n" + b"x" * (HASHED_BYTES - 7) + b"\n")
    assert will_hash(job)
    script = (
        "import sys, threading\n"
        "from sync.core.hashing import import_beside\n"
        "assert 'polars' not in sys.modules\n"
        "import_beside()\n"
        "for thread in threading.enumerate():\n"
        "    if thread.name == 'np6sync-import':\n"
        "        thread.join()\n"
        "assert 'polars' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_full_refresh_over_a_state_of_another_key_definition_rebuilds_it(
    tmp_path, emulator, cli, config
) -> None:
    first_load(tmp_path, cli, config, emulator)
    job = make_job(tmp_path, targets={"columns": ["email"]})  # transforms gone: foreign
    write_csv(tmp_path / "list.csv", shuffled(KEYS))
    run(cli, job, config, code=2)  # the state is not this job's
    report = run(cli, job, config, "--full-refresh")
    assert report["action"] == "reload" and report["status"] == "succeeded"
    assert emulator.members(SEGMENT) == {k for [k] in shuffled(KEYS) if k}
