"""Removals that cost what they should, read-back, and adopting a segment (id mode)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SEGMENT, make_job, write_csv
from sync.emulator import Emulator

IDS = [f"{n:08d}" for n in range(5000)]


def id_job(folder: Path, **sync: object) -> Path:
    return make_job(
        folder,
        targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"max_removed_ratio": 0.5, **sync},
    )


def write_ids(folder: Path, ids: list[str]) -> None:
    write_csv(folder / "list.csv", [[i] for i in ids], header=["target_id"])


def calls(emulator: Emulator, method: str, prefix: str = "") -> list:
    return [c for c in emulator.calls if c.method == method and c.path.startswith(prefix)]


def test_few_removals_are_sent_one_by_one_without_a_clear(tmp_path, emulator, cli) -> None:
    job = id_job(tmp_path)
    write_ids(tmp_path, IDS)
    assert cli("run", job).code == 0
    emulator.reset_calls()

    write_ids(tmp_path, IDS[10:])
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    assert len(calls(emulator, "DELETE", "/targets/")) == 10
    assert calls(emulator, "DELETE", "/segments/") == []
    assert calls(emulator, "PUT") == []
    assert emulator.members(SEGMENT) == set(IDS[10:])
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert (report["action"], report["removed"], report["targets_removed"]) == ("update", 10, 10)
    assert report["removal_costs"]["per_target"] == {"requests": 10, "incomplete_requests": 0}
    assert report["removal_costs"]["reload"] == {"requests": 1 + 100, "incomplete_requests": 100}
    assert cli("run", job).code == 0 and "no_changes" in cli("run", job).out


def test_a_dry_run_shows_what_each_strategy_would_cost(tmp_path, emulator, cli) -> None:
    job = id_job(tmp_path)
    write_ids(tmp_path, IDS[:500])
    assert cli("run", job).code == 0
    write_ids(tmp_path, IDS[3:500])
    result = cli("run", job, "--dry-run")
    assert "would send 0 PUT, 3 DELETE" in result.out
    assert "reload 11 requests (10 while the segment is incomplete)" in result.out
    assert "per_target 3 requests (0 while the segment is incomplete)" in result.out


def test_deferred_removals_wait_then_go_in_one_reload(tmp_path, emulator, cli) -> None:
    # reload_cost_factor 1: due removals go the cheaper way (P#9's default 5 would take
    # the 30 one by one).
    job = id_job(tmp_path, removals="defer", defer_removals_ratio=0.01, reload_cost_factor=1)
    write_ids(tmp_path, IDS[:1000])
    assert cli("run", job).code == 0
    emulator.reset_calls()

    write_ids(tmp_path, IDS[5:1000] + IDS[1000:1002])  # 5 leave (0.5%), 2 join
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    assert calls(emulator, "DELETE") == []
    assert emulator.members(SEGMENT) == set(IDS[:1002])  # the 5 are still there
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert report["pending_removals"] == 5 and report["oldest_pending_removal"]
    assert "5 deferred removal(s) wait in the segment" in result.out

    write_ids(tmp_path, IDS[8:1002])  # 3 more leave: 8 of 1002 is still under 1%
    assert cli("run", job).code == 0
    assert calls(emulator, "DELETE") == []

    # 30 pending: past 1%; one reload (21 requests) is cheaper than 30 DELETEs
    write_ids(tmp_path, IDS[30:1002])
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    assert len(calls(emulator, "DELETE", "/segments/")) == 1
    assert emulator.members(SEGMENT) == set(IDS[30:1002])
    assert json.loads((tmp_path / "r.json").read_text())["jobs"][0]["pending_removals"] == 0


def test_verify_finds_changes_behind_its_back_and_repair_fixes_them(
    tmp_path, emulator, cli
) -> None:
    job = id_job(tmp_path)
    write_ids(tmp_path, IDS[:300])
    assert cli("run", job).code == 0
    assert cli("verify", job).code == 0

    emulator.set_members(SEGMENT, [*IDS[5:300], "ZZZZZZZ1", "ZZZZZZZ2"])
    result = cli("verify", job)
    assert result.code == 1
    assert "5 missing, 2 extra" in result.out
    listing = (tmp_path / "state" / "list.verify.csv").read_text()
    assert '"00000000","missing"' in listing and '"ZZZZZZZ1","extra"' in listing

    repaired = cli("verify", job, "--repair")
    assert repaired.code == 0, repaired.out
    assert "after repair: the segment holds 300 targets: 0 missing, 0 extra" in repaired.out
    assert emulator.members(SEGMENT) == set(IDS[:300])
    emulator.reset_calls()
    assert "no_changes" in cli("run", job).out
    assert calls(emulator, "PUT") == []


def test_run_verify_fails_when_the_segment_differs(tmp_path, emulator, cli) -> None:
    job = id_job(tmp_path)
    write_ids(tmp_path, IDS[:100])
    assert cli("run", job, "--verify").code == 0
    emulator.set_members(SEGMENT, IDS[:99])
    result = cli("run", job, "--verify")
    assert result.code == 1
    assert "1 missing, 0 extra" in result.out


def test_verify_repair_needs_target_ids(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [["a@x.fr"]])
    result = cli("verify", job, "--repair")
    assert result.code == 2 and "identify_by: id" in result.err


def test_adopting_a_segment_then_sending_only_the_rest(tmp_path, emulator, cli) -> None:
    job = id_job(tmp_path)
    emulator.set_members(SEGMENT, IDS[:400])
    result = cli("state", "import", job, "--from-segment")
    assert result.code == 0 and "400 targets adopted" in result.out
    write_ids(tmp_path, IDS[:450])
    emulator.reset_calls()
    assert cli("run", job).code == 0
    sent = [t for c in calls(emulator, "PUT") for t in c.targets]
    assert sorted(sent) == IDS[400:450]

    shown = cli("state", "show", job)
    assert "keys        450" in shown.out and "segment 1234" in shown.out


def test_importing_a_list_the_segment_already_holds(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "held.csv", [[f"u{n}@x.fr"] for n in range(100)])
    emulator.set_members(SEGMENT, [f"u{n}@x.fr" for n in range(100)])
    result = cli("state", "import", job, "--from", tmp_path / "held.csv")
    assert result.code == 0 and "100 targets added to the state" in result.out
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.fr"] for n in range(130)])
    emulator.reset_calls()
    assert cli("run", job).code == 0
    assert len(calls(emulator, "PUT")) == 1
    assert emulator.members(SEGMENT) == {f"u{n}@x.fr" for n in range(130)}


def test_per_target_removals_need_target_ids_or_look_ups(tmp_path, cli) -> None:
    job = make_job(tmp_path, sync={"removals": "per_target", "lookups": False})
    result = cli("validate", job)
    assert result.code == 2
    assert "per_target needs targets.identify_by: id, or sync.lookups" in result.err
