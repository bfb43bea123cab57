"""Issue 24's holes in removals, end to end against the emulator: an import that dropped a
pending clear (P#4), a kept key equal but for case (P#6), a look-up's 404 read as "no
contact" (P#7), a lost state on a filled segment (P#8), the cost of an incomplete
segment and a read-back that checked nothing (P#9)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import API_KEY, SEGMENT, emails, make_job, settings_file, write_csv
from sync.config import load_job
from sync.core.keys import KEY_TYPE
from sync.core.twins import case_twins
from sync.emulator import Emulator, make_contacts
from sync.emulator.contacts import target_id
from sync.state.store import store_for

CONTACTS = make_contacts(f"user{n}@example.com" for n in range(6000))  # user{n}: target_id(n)
NO_ROUTE = b'No route found for "GET /targets"'  # a proxy's, or an older NP6's, 404


@pytest.fixture
def account() -> dict[str, Any]:
    return {}  # a test parametrizes it with the Emulator's settings


@pytest.fixture
def emulator(account: dict[str, Any]) -> Iterator[Emulator]:
    with Emulator(API_KEY, segments=[SEGMENT], contacts=CONTACTS, **account) as server:
        yield server


@pytest.fixture
def settings() -> dict[str, Any]:
    return {}  # a test parametrizes it with config/np6.yaml's keys


@pytest.fixture
def cli(cli, tmp_path: Path, settings: dict[str, Any]):
    """The command line with quick settings; ``run``, ``verify`` and ``check`` read them."""
    config = settings_file(tmp_path, concurrency=8, **settings)

    def run(*args: str | Path):
        extra = ("--config", config) if args[0] in ("run", "verify", "check") else ()
        return cli(*args, *extra)

    return run


def ids(start: int, stop: int) -> set[str]:
    return {target_id(n) for n in range(start, stop)}


def calls(emulator: Emulator, method: str, prefix: str) -> list:
    return [c for c in emulator.calls if c.method == method and c.path.startswith(prefix)]


def report(path: Path) -> dict[str, Any]:
    job_report: dict[str, Any] = json.loads(path.read_text())["jobs"][0]
    return job_report


def filled(tmp_path: Path, cli, emulator: Emulator, count: int, **sync: object) -> Path:
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.5, **sync})
    write_csv(tmp_path / "list.csv", emails(0, count))
    result = cli("run", job)
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(0, count)
    emulator.reset_calls()
    return job


def killed_while_clearing(job: Path) -> None:
    """What a run killed after journaling "clearing", its DELETE answered but not yet
    acknowledged in the journal, leaves behind."""
    with store_for(load_job(job)).open_journal("reload") as journal:
        journal.record({"event": "clearing"})


# --- P#4: an import never discards a pending journal ------------------------------------


def test_an_import_from_a_file_refuses_while_a_clear_is_pending(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, 400)
    killed_while_clearing(job)
    emulator.set_members(SEGMENT, {target_id(0)})  # cleared, one PUT through: 1 of 400

    result = cli("state", "import", job, "--from", tmp_path / "list.csv")
    assert result.code == 2, result.out + result.err
    assert "np6-sync run" in result.err and "journal" in result.err
    assert (tmp_path / "state" / "list.parquet.journal").exists()
    assert emulator.calls == []

    result = cli("run", job)  # finishes the journal: the clear was never acknowledged
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(0, 400)
    assert "no_changes" in cli("run", job).out


def test_an_import_from_the_segment_replaces_a_pending_journal(tmp_path, emulator, cli) -> None:
    held = [target_id(n) for n in range(400)]
    job = make_job(tmp_path, targets={"identify_by": "id", "columns": ["id"]})
    write_csv(tmp_path / "list.csv", [[t] for t in held], header=("id",))
    assert cli("run", job).code == 0
    killed_while_clearing(job)
    emulator.set_members(SEGMENT, held[:1])

    result = cli("state", "import", job, "--from-segment")
    assert result.code == 0, result.out + result.err
    assert "1 targets adopted" in result.out
    assert "replaced the journal" in result.out
    assert not (tmp_path / "state" / "list.parquet.journal").exists()
    emulator.reset_calls()
    assert cli("run", job).code == 0
    assert sorted(t for c in calls(emulator, "PUT", "/") for t in c.targets) == held[1:]
    assert emulator.members(SEGMENT) == set(held)


# --- P#6: a kept key equal but for case keeps its contact -------------------------------


def case_twin(tmp_path: Path, cli, emulator: Emulator) -> tuple[Path, object]:
    """user7 leaves as user7@example.com and stays as User7@Example.com; user0..2 leave."""
    job = filled(tmp_path, cli, emulator, 100, removals="per_target")
    rows = [r for r in emails(3, 110) if r != ["user7@example.com"]] + [["User7@Example.com"]]
    write_csv(tmp_path / "list.csv", rows)
    return job, cli("run", job, "--report-json", tmp_path / "r.json")


def test_a_kept_key_equal_but_for_case_keeps_its_contact(tmp_path, emulator, cli) -> None:
    job, result = case_twin(tmp_path, cli, emulator)
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(3, 110)  # target_id(7) among them
    looked_up = calls(emulator, "GET", "/targets?")
    assert len(looked_up) == 5  # the 4 leaving keys, and the one kept key they collide with
    assert len(calls(emulator, "DELETE", "/targets/")) == 3
    assert "example.com" not in (tmp_path / "r.json").read_text().lower()
    assert "no_changes" in cli("run", job).out
    assert emulator.members(SEGMENT) == ids(3, 110)


def test_case_twins_pair_each_leaving_key_with_the_kept_keys_equal_but_for_case() -> None:
    leaving = pa.array(["u7@example.org", "gone@x.fr", "Mixed@X.fr"], KEY_TYPE)
    kept = [
        pa.chunked_array([["U7@Example.org", "other@x.fr"], ["u7@EXAMPLE.ORG"]], KEY_TYPE),
        pa.array(["mixed@x.fr", "U7@Example.org"], KEY_TYPE),
    ]
    pairs = sorted(zip(*case_twins(leaving, kept).to_pydict().values(), strict=True))
    assert pairs == [
        ("Mixed@X.fr", "mixed@x.fr"),
        ("u7@example.org", "U7@Example.org"),
        ("u7@example.org", "u7@EXAMPLE.ORG"),
    ]
    assert case_twins(leaving[:0], kept).num_rows == 0
    assert case_twins(leaving, [pa.array(["a@b.c"], KEY_TYPE)]).num_rows == 0


def test_the_plan_looks_up_the_kept_twins_too(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, 100, removals="per_target")
    rows = [r for r in emails(3, 100) if r != ["user7@example.com"]] + [["User7@Example.com"]]
    write_csv(tmp_path / "list.csv", rows)
    result = cli("run", job, "--dry-run")
    assert "0 PUT" not in result.out and "5 GET (contact look-ups)" in result.out, result.out
    assert emulator.calls == []


@pytest.mark.parametrize("account", [{"fold_case": False}])
@pytest.mark.parametrize("settings", [{"unicity_folds_case": False}])
def test_an_account_that_matches_case_exactly_removes_the_twin(tmp_path, emulator, cli) -> None:
    _, result = case_twin(tmp_path, cli, emulator)
    assert result.code == 0, result.out + result.err
    # User7@Example.com names no contact here: the contact of user7 leaves.
    assert emulator.members(SEGMENT) == ids(3, 110) - {target_id(7)}
    assert len(calls(emulator, "GET", "/targets?")) == 4


@pytest.mark.parametrize(
    ("account", "settings", "said", "code"),
    [
        pytest.param({}, {}, "matches unicity values whatever their case", 0, id="folds"),
        pytest.param(
            {"fold_case": False}, {}, "matches unicity values exactly, case included", 0,
            id="exact",
        ),
        pytest.param(
            {}, {"unicity_folds_case": False}, "set unicity_folds_case: true", 3,
            id="folds-but-the-settings-say-not",
        ),
    ],
)  # fmt: skip
def test_check_tells_whether_the_account_folds_case(  # type: ignore[no-untyped-def]
    tmp_path, emulator, cli, said: str, code: int
) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 40))
    result = cli("check", job)
    assert result.code == code, result.out + result.err
    assert said in result.out
    assert "example.com" not in result.out.lower() + result.err.lower()
    assert emulator.members(SEGMENT) == set()


# --- P#7: only a 200 with a list proves that no contact holds a value -------------------


@pytest.mark.parametrize("account", [{"lookup_route": False, "no_route_body": NO_ROUTE}])
def test_a_look_up_404_that_speaks_of_targets_reloads_instead(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, 50, removals="per_target")
    write_csv(tmp_path / "list.csv", emails(2, 50))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(2, 50)
    got = report(tmp_path / "r.json")
    assert got["action"] == "reload" and "answered 404" in got["lookup_fallback"]
    assert got["targets_removed"] == 0  # none was removed one by one
    assert got["lookups_not_found"] == 0
    assert "no_changes" in cli("run", job).out


# --- P#8: a lost state on a segment that is not empty -----------------------------------


@pytest.mark.parametrize(
    ("identify_by", "remedy"),
    [
        pytest.param("unicity", "--full-refresh", id="unicity"),
        pytest.param("id", "state import", id="id"),
    ],
)
def test_a_lost_state_on_a_filled_segment_stops_the_run(  # type: ignore[no-untyped-def]
    tmp_path, emulator, cli, identify_by: str, remedy: str
) -> None:
    if identify_by == "id":
        job = make_job(tmp_path, targets={"identify_by": "id", "columns": ["id"]})
        write_csv(tmp_path / "list.csv", [[target_id(n)] for n in range(190)], header=("id",))
    else:
        job = make_job(tmp_path)
        write_csv(tmp_path / "list.csv", emails(0, 190))
    emulator.set_members(SEGMENT, ids(0, 210))  # 20 of them left the list with the state

    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 3, result.out + result.err
    assert remedy in result.out + result.err and "--force" in result.out + result.err
    assert report(tmp_path / "r.json")["status"] == "refused"
    assert calls(emulator, "PUT", "/") == [] and emulator.members(SEGMENT) == ids(0, 210)
    assert not (tmp_path / "state" / "list.parquet").exists()

    if identify_by == "id":
        assert cli("state", "import", job, "--from-segment").code == 0
        assert cli("run", job).code == 0
    else:
        assert cli("run", job, "--full-refresh").code == 0
    assert emulator.members(SEGMENT) == ids(0, 190)


def test_force_passes_the_lost_state_safeguard(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 190))
    emulator.set_members(SEGMENT, ids(0, 210))
    refused = cli("run", job)
    assert refused.code == 3, refused.out + refused.err
    result = cli("run", job, "--force")
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(0, 210)  # adopted as it is: --force's choice


# --- P#9: the incomplete segment weighs in the cost; a read-back that checked too few ---


@pytest.mark.parametrize(
    ("factor", "action"),
    [
        pytest.param(None, "update", id="default-5"),
        pytest.param(1, "reload", id="factor-1"),
    ],
)
def test_auto_weighs_the_incomplete_segment(  # type: ignore[no-untyped-def]
    tmp_path, emulator, cli, factor: int | None, action: str
) -> None:
    """100 of 5,000 leave: 200 requests one by one, 99 for a reload."""
    sync = {} if factor is None else {"reload_cost_factor": factor}
    job = filled(tmp_path, cli, emulator, 5000, **sync)
    write_csv(tmp_path / "list.csv", emails(100, 5000))
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == ids(100, 5000)
    got = report(tmp_path / "r.json")
    assert got["action"] == action
    assert "sync.reload_cost_factor" in got["reason"]
    clears = calls(emulator, "DELETE", "/segments/")
    assert len(clears) == (1 if action == "reload" else 0)
    if action == "update":
        assert got["targets_removed"] == 100


def test_verify_in_unicity_mode_fails_when_it_checked_too_few(tmp_path, emulator, cli) -> None:
    job = filled(tmp_path, cli, emulator, 200)
    result = cli("verify", job)
    assert result.code == 1, result.out + result.err
    assert "checked 0 of 200" in result.out
    assert emulator.members(SEGMENT) == ids(0, 200)
