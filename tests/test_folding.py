"""A large source folded against the state as it is read (sync.job.fold), end to end.

Each scenario runs the same steps twice through the real CLI against the emulator: once
reading the source whole (the files are small), once folding it in batches of a few rows
(``FOLD_BYTES`` and ``BATCH_ROWS`` lowered). Both must leave their segment and state with
the same keys and report the same figures.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job, settings_file, write_csv
from sync.config import load_job
from sync.core.plan import Holding
from sync.emulator import Emulator
from sync.job import route
from sync.read import batches
from sync.state.local import StateStore

OTHER = 99  # the emulator's second segment: the folded runs'
IDS = [f"{n:08d}" for n in range(400)]
# What may differ between a whole and a folded run of the same step.
_OWN = {"name", "segment_id", "duration_s", "phase_s", "rejects_file", "retry_wait_s"}
_OWN |= {"rate_limit_wait_s", "lowest_concurrency", "route", "route_reason"}


@pytest.fixture
def twins(tmp_path, emulator, cli, monkeypatch):
    """Run a step in both folders; the reports of the whole and the folded run."""
    settings = settings_file(tmp_path)
    whole, folded = tmp_path / "whole", tmp_path / "folded"

    def run(*args: str, code: int = 0) -> tuple[dict, dict]:
        reports = []
        for folder, fold in ((whole, False), (folded, True)):
            monkeypatch.setattr(route, "FOLD_BYTES", 0 if fold else 1 << 40)
            monkeypatch.setattr(batches, "BATCH_ROWS", 7)
            monkeypatch.setattr(batches, "BLOCK_BYTES", 200)  # a few rows a block
            report = folder / "report.json"
            job = folder / "list.yaml"
            # The seal would answer an unchanged file without reading it: fold it anyway.
            for seal in (folder / "state").glob("*.seal.json"):
                seal.unlink()
            result = cli("run", job, "--config", settings, "--report-json", report, *args)
            assert result.code == code, result.out + result.err
            reports.append(json.loads(report.read_text())["jobs"][0])
        return reports[0], reports[1]

    return whole, folded, run


def _jobs(whole: Path, folded: Path, path: str = "list.csv", **job: object) -> None:
    for folder, segment in ((whole, SEGMENT), (folded, OTHER)):
        folder.mkdir(exist_ok=True)
        make_job(folder, segment_id=segment, **{"source": {"path": path}, **job})


def _same(emulator: Emulator, pair: tuple[dict, dict], *, folded: bool = True) -> dict:
    whole, fold = pair
    assert {k: v for k, v in whole.items() if k not in _OWN} == {
        k: v for k, v in fold.items() if k not in _OWN
    }
    assert emulator.members(SEGMENT) == emulator.members(OTHER)
    # A folded run reads and folds in one phase: it has no phase of its own for keys.
    assert ("keys" in whole["phase_s"], "keys" in fold["phase_s"]) == (True, not folded)
    return fold


def _state_keys(folder: Path) -> list[str]:
    job = load_job(folder / "list.yaml")
    holding = StateStore(job.state_path, job.segment_id, job.targets.definition()).load()
    return sorted(holding.keys.to_pylist())


def _write_ids(whole: Path, folded: Path, ids: list[str]) -> None:
    for folder in (whole, folded):
        write_csv(folder / "list.csv", [[i] for i in ids], header=["target_id"])


def test_ids_added_removed_refused_and_reloaded_alike(twins, emulator) -> None:
    whole, folded, run = twins
    _jobs(
        whole, folded, targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"max_removed_ratio": 0.5, "chunk_size": 10},
    )  # fmt: skip
    rows = [*IDS[:300], IDS[5], "not-an-id", IDS[7]]  # duplicates and a rejected row
    _write_ids(whole, folded, rows)
    first = _same(emulator, run(), folded=False)  # no state yet: the folded run reads whole
    assert (first["keys"], first["duplicate_keys"], first["rows_rejected"]) == (300, 2, 1)
    assert _same(emulator, run())["status"] == "no_changes"

    _write_ids(whole, folded, IDS[10:350])  # 50 new, 10 leave: one by one
    step = _same(emulator, run())
    assert (step["action"], step["added"], step["removed"]) == ("update", 50, 10)
    assert emulator.members(OTHER) == set(IDS[10:350])

    _write_ids(whole, folded, IDS[:100])  # 250 of 340 would leave: refused
    refused = _same(emulator, run(code=3))
    assert refused["status"] == "refused" and emulator.members(OTHER) == set(IDS[10:350])

    _write_ids(whole, folded, IDS[150:400])  # 140 of 340 leave: a reload is cheaper
    reload = _same(emulator, run())
    assert (reload["action"], reload["keys"]) == ("reload", 250)
    assert emulator.members(OTHER) == set(IDS[150:400])
    assert _state_keys(whole) == _state_keys(folded) == sorted(IDS[150:400])


def test_deferred_removals_are_recorded_then_applied_alike(twins, emulator) -> None:
    whole, folded, run = twins
    _jobs(
        whole, folded, targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"removals": "defer", "defer_removals_ratio": 0.05, "max_removed_ratio": 0.5},
    )  # fmt: skip
    _write_ids(whole, folded, IDS[:200])
    _same(emulator, run(), folded=False)
    _write_ids(whole, folded, IDS[3:200])  # 3 of 200: deferred
    deferred = _same(emulator, run())
    assert deferred["pending_removals"] == 3 and emulator.members(OTHER) == set(IDS[:200])
    assert _same(emulator, run())["pending_removals"] == 3  # still waiting, still recorded
    _write_ids(whole, folded, IDS[20:200])  # 20 of 200 now: past the ratio, applied
    applied = _same(emulator, run())
    assert applied["pending_removals"] == 0 and emulator.members(OTHER) == set(IDS[20:200])
    assert _state_keys(whole) == _state_keys(folded) == sorted(IDS[20:200])


def test_rejects_filters_and_transforms_alike(twins, emulator) -> None:
    whole, folded, run = twins
    _jobs(
        whole, folded, targets={"columns": ["email", "shop"], "transforms": {"email": ["strip",
        "lower"]}}, source={"path": "list.csv", "where": "country = 'FR'"},
    )  # fmt: skip
    rows = [[f" User{n}@Example.com ", f"s{n % 3}", "FR" if n % 4 else "BE"] for n in range(60)]
    rows[9][0] = ""  # rejected (row 11 of the file)
    rows[30][1] = "a\tb"  # rejected: a control character
    rows.append([" user7@example.com", "s1", "FR"])  # a duplicate after the transforms
    for folder in (whole, folded):
        write_csv(folder / "list.csv", rows, header=["email", "shop", "country"])
    _same(emulator, run(), folded=False)
    for folder in (whole, folded):
        write_csv(folder / "list.csv", rows[5:], header=["email", "shop", "country"])
    report = _same(emulator, run())
    assert report["rows_filtered"] == 13 and report["duplicate_keys"] == 1
    rejects = [(f / "state" / "list.rejects.csv").read_text() for f in (whole, folded)]
    assert rejects[0] == rejects[1] and '6,"empty email",""' in rejects[1]  # row 11 - 5 rows


def test_a_parquet_source_is_folded_and_one_of_numbers_read_whole(twins, emulator) -> None:
    whole, folded, run = twins
    _jobs(whole, folded, "list.parquet", targets={"columns": ["email", "number"]})
    numbers = pa.array(range(100), pa.int64())
    for folder in (whole, folded):
        table = pa.table({"email": [f"u{n}@x.org" for n in range(100)], "number": numbers})
        pq.write_table(table, folder / "list.parquet", row_group_size=9)
    _same(emulator, run(), folded=False)
    for folder in (whole, folded):
        table = pa.table({"email": [f"u{n}@x.org" for n in range(5, 120)], "number": range(115)})
        pq.write_table(table, folder / "list.parquet", row_group_size=9)
    # Numbers are written as text by the whole read: the folded run reads whole too, and
    # folds that one batch.
    report = _same(emulator, run())
    assert report["keys"] == 115

    _jobs(whole, folded, "text.parquet", targets={"columns": ["email"]})
    for folder in (whole, folded):
        text = pa.table({"email": [f"u{n}@x.org" for n in range(100)]})
        pq.write_table(text, folder / "text.parquet", row_group_size=9)
    _same(emulator, run("--full-refresh", "--force"), folded=False)
    for folder in (whole, folded):
        text = pa.table({"email": [f"u{n}@x.org" for n in range(3, 103)]})
        pq.write_table(text, folder / "text.parquet", row_group_size=9)
    assert _same(emulator, run())["added"] == 3


def test_a_damaged_csv_fails_alike_naming_its_row(twins, emulator) -> None:
    whole, folded, run = twins
    _jobs(whole, folded)
    for folder in (whole, folded):
        write_csv(folder / "list.csv", [[f"u{n}@x.org"] for n in range(50)])
    _same(emulator, run(), folded=False)
    for folder in (whole, folded):
        lines = ["email"] + [f"u{n}@x.org" for n in range(50)]
        lines[30] = 'u29@x.org,"extra'  # a second field, whose quote never closes
        (folder / "list.csv").write_text("\n".join(lines) + "\n")
    failed = run(code=2)  # the whole read names the problem, whichever run reads
    assert failed[0]["error"] == failed[1]["error"].replace("/folded/", "/whole/")
    assert "Row #31" in failed[1]["error"] and failed[1]["status"] == "failed"
    assert emulator.members(OTHER) == {f"u{n}@x.org" for n in range(50)}


def test_a_stop_signal_while_folding_sends_nothing(tmp_path, emulator, monkeypatch) -> None:
    from sync.job.context import RunOptions
    from sync.job.run import run_job
    from sync.np6.client import NP6Client

    monkeypatch.setattr(route, "FOLD_BYTES", 0)
    monkeypatch.setattr(batches, "BATCH_ROWS", 10)
    job_file = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.org"] for n in range(100)])
    job = load_job(job_file)
    store = StateStore(job.state_path, job.segment_id, job.targets.definition())
    store.save(pa.array([f"u{n}@x.org" for n in range(50)], pa.string()))
    before = job.state_path.read_bytes()
    stop = threading.Event()

    class StopAfterTheFirstBatch:
        def start(self, phase: str, total: int) -> None:
            self.phase = phase

        def advance(self, amount: int) -> None:
            stop.set()

        def finish(self) -> None:
            pass

    connected: list[NP6Client] = []
    report = run_job(
        job, RunOptions(), lambda: connected.pop(), stop=stop, progress=StopAfterTheFirstBatch()
    )
    assert (report.status, report.exit_code) == ("failed", 1)
    assert "stopped by a signal before anything was sent" in (report.error or "")
    assert emulator.calls == [] and job.state_path.read_bytes() == before


def test_a_folded_plan_of_a_reload_gathers_no_keys(tmp_path, monkeypatch) -> None:
    """A plan shows the PUTs of a reload from the count: the keys stay unread."""
    from sync.core.fold import fold_array
    from sync.core.plan import make_plan

    job = load_job(make_job(tmp_path, sync={"mode": "reload", "chunk_size": 50}))
    held = pa.array([f"k{n}" for n in range(120)], pa.string())
    source = pa.array([f"k{n}" for n in range(10, 130)], pa.string())
    gathered: list[int] = []

    def pick(mask: pa.BooleanArray) -> pa.Array:
        gathered.append(mask.true_count)
        return held.filter(mask)

    folded = fold_array(source, held)
    folded = type(folded)(folded.held, folded.in_source, folded.added, folded.gone, pick)
    plan = make_plan(Holding(held[:0]), folded, job.sync)
    assert (plan.action, plan.send_every, len(plan.send)) == ("reload", True, 0)
    assert plan.put_requests(50) == 3 and gathered == []
    sent = plan.gathered(folded).send
    assert sorted(sent.to_pylist()) == sorted(source.to_pylist()) and gathered == [110]


def test_json_logs_carry_the_rows_read_while_folding(tmp_path, emulator, cli, monkeypatch):
    monkeypatch.setattr(route, "FOLD_BYTES", 0)
    monkeypatch.setattr(batches, "BATCH_ROWS", 10)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.org"] for n in range(50)])
    assert cli("run", job).code == 0
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.org"] for n in range(55)])
    result = cli("run", job, "--log-format", "json")
    assert result.code == 0, result.out + result.err
    lines = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    read = [line for line in lines if line.get("phase") == "read"]
    assert read and read[-1]["done"] == 55 and read[-1]["final"] is True
    # A file read in batches has no known total: its rows are counted, not a share.
    assert read[-1]["msg"].startswith("read: 55 rows, ") and read[-1]["total"] == 0
    assert emulator.members(SEGMENT) == {f"u{n}@x.org" for n in range(55)}


def test_a_state_that_cannot_be_trusted_stops_a_folded_run_before_sending(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    monkeypatch.setattr(route, "FOLD_BYTES", 0)
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.org"] for n in range(30)])
    assert cli("run", job).code == 0
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.org"] for n in range(40)])
    state = tmp_path / "state" / "list.parquet"
    good = state.read_bytes()

    make_job(tmp_path, targets={"columns": ["email"], "transforms": {"email": ["lower"]}})
    emulator.reset_calls()
    other = cli("run", job)  # the state was built with another key definition
    assert other.code == 2 and "another key definition" in other.out
    assert emulator.calls == [] and state.read_bytes() == good

    make_job(tmp_path)
    state.write_bytes(good[: len(good) // 2])  # a torn state file
    torn = cli("run", job)
    assert torn.code == 2 and "unreadable state file" in torn.out
    assert emulator.calls == [] and emulator.members(SEGMENT) == {f"u{n}@x.org" for n in range(30)}


def test_a_source_that_cannot_be_folded_says_why_it_is_read_whole(
    tmp_path, emulator, cli, monkeypatch
):
    monkeypatch.setattr(route, "FOLD_BYTES", 0)
    targets = {"columns": ["email", "number"]}
    job = make_job(tmp_path, source={"path": "list.parquet"}, targets=targets)
    for count in (20, 25):  # the first run has no state to fold against
        table = pa.table({"email": [f"u{n}@x.org" for n in range(count)], "number": range(count)})
        pq.write_table(table, tmp_path / "list.parquet", row_group_size=9)
        result = cli("run", job, "--log-format", "json", "-v")
        assert result.code == 0, result.out + result.err
    lines = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    whole = [line for line in lines if line.get("msg", "").startswith("reading the source")]
    assert [(line["msg"], line["job"]) for line in whole] == [
        ("reading the source whole: key columns that are not text", "list")
    ]
