"""Reproductions of the route holes of issue 24 (P#1, P#2, P#3, P#5) and the route slips of
issue 25 (O#6), end to end through the command line against the emulator.

Each landed as ``xfail(strict=True, raises=AssertionError)`` (branch history: seen failing
for the hole's reason) and lost the mark with its fix: a where's traits refused or never
sealed (sync/read/where.py, sync/job/route.py), the fallback reading the file's keys afresh
(sync/job/fallback.py), the fan-out's unmapped rows among those its where keeps, and the
seal's proof taking the file's identity before the read. The O#6 tests hold edges that
fail when the slip they name is planted.

"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import (
    API_KEY,
    CLOCK_IN_SQL,
    SEGMENT,
    emails,
    make_job,
    run_process,
    settings_file,
    state_snapshot,
    write_csv,
)
from sync.emulator import Emulator, make_contacts
from sync.emulator.contacts import target_id
from sync.emulator.routes import Answer
from sync.job import route
from sync.read import batches

ADDRESSES = [f"user{n}@example.com" for n in range(6000)]


def _report(path: Path) -> dict:
    report: dict = json.loads(path.read_text())["jobs"][0]
    return report


def _fold_every_file(monkeypatch: pytest.MonkeyPatch, rows: int = 500) -> None:
    """Fold every source, in batches of about ``rows`` (the route of a file of 64 MiB or
    more); CSV blocks of 2 KiB (some 80 rows) make up the batches."""
    monkeypatch.setattr(route, "FOLD_BYTES", 0)
    monkeypatch.setattr(batches, "BATCH_ROWS", rows)
    monkeypatch.setattr(batches, "BLOCK_BYTES", 2048)


# --- P#3: the fallback reload of a folded run -------------------------------------------


@pytest.fixture
def contacts_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An account whose contacts are the addresses, that refuses per-target removal:
    ``route-missing`` has no look-up (404), ``removal-405`` answers a DELETE of one target
    with 405."""
    refusal = request.param
    with Emulator(
        API_KEY,
        segments=[SEGMENT],
        contacts=make_contacts(ADDRESSES),
        lookup_route=refusal != "route-missing",
    ) as server:
        if refusal == "removal-405":
            answer = server.respond

            def respond(call, at):  # type: ignore[no-untyped-def]
                if call.method == "DELETE" and call.path.startswith("/targets/"):
                    return Answer(405, headers={"Allow": "GET"})
                return answer(call, at)

            server.respond = respond  # type: ignore[method-assign]
        yield server


@pytest.mark.parametrize(
    ("contacts_emulator", "joining"),
    [
        # "succeeded (reload)" today, 40 of the file's keys missing and 20 that left held:
        # the mask of the keys in the source was taken on the state before the look-ups
        # that found no contact took their keys out of it.
        pytest.param("removal-405", 0, id="removal-405"),
        # ArrowInvalid (exit 1) today: the state grew by the acknowledged additions.
        pytest.param("removal-405", 30, id="removal-405-with-additions"),
        pytest.param("route-missing", 30, id="route-missing-with-additions"),
    ],
    indirect=["contacts_emulator"],
)
def test_a_folded_fallback_reload_loads_exactly_the_files_keys(
    tmp_path, contacts_emulator, cli, monkeypatch, joining
) -> None:
    emulator = contacts_emulator
    monkeypatch.setenv("NP6_BASE_URL", emulator.url)
    config = settings_file(tmp_path, concurrency=4)
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.5, "removals": "per_target"})
    # 20 keys that name no contact of the account (a look-up finds none: they leave the
    # state without a DELETE), then 5,000 that do.
    nobody = [[f"nobody{n}@example.org"] for n in range(20)]
    write_csv(tmp_path / "list.csv", nobody + emails(0, 5000))
    assert cli("run", job, "--config", config).code == 0  # no state yet: read whole
    assert emulator.members(SEGMENT) == {target_id(n) for n in range(5000)}

    _fold_every_file(monkeypatch)
    kept = [*range(20, 2000), *range(2040, 5000), *range(5000, 5000 + joining)]
    write_csv(tmp_path / "list.csv", [[f"user{n}@example.com"] for n in kept])
    result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    got = _report(tmp_path / "r.json")
    assert (got["status"], got["action"]) == ("succeeded", "reload") and got["lookup_fallback"]
    held = emulator.members(SEGMENT)
    want = {target_id(n) for n in kept}
    assert (len(want - held), len(held - want)) == (0, 0), "missing, still held"


# --- P#1: a where over the whole file, evaluated per batch ------------------------------


def _amounts() -> tuple[list[list[str]], set[str]]:
    """2,000 rows; ``amount > 20 * AVG(amount)`` over the whole file keeps the 5 whales
    (20 x 275.87 = 5,517), but in a batch of the first 1,000 rows (average about 2) it
    keeps their rows of 100 too."""
    rows, amounts = [], []
    for n in range(2000):
        first_half = 100 if n % 100 == 0 else 1
        amount = first_half if n < 1000 else (100_000 if 1500 <= n < 1505 else 50)
        rows.append([f"user{n}@example.com", str(amount)])
        amounts.append(amount)
    average = sum(amounts) / len(amounts)
    return rows, {row[0] for row, a in zip(rows, amounts, strict=True) if a > 20 * average}


def _points() -> tuple[list[list[str]], set[str]]:
    """2,000 rows of points; the ten best of the whole file are rows 1990-1999."""
    rows = [[f"user{n}@example.com", str(n)] for n in range(2000)]
    return rows, {f"user{n}@example.com" for n in range(1990, 2000)}


@pytest.mark.parametrize(
    ("where", "rows"),
    [
        # 11 keys today where the condition selects 5.
        pytest.param(
            "CAST(amount AS DOUBLE) > 20 * AVG(CAST(amount AS DOUBLE))", _amounts, id="aggregate"
        ),
        # 40 keys today (the ten best of each batch) where it selects 10.
        pytest.param(
            "ROW_NUMBER() OVER (ORDER BY CAST(amount AS INT) DESC) <= 10", _points, id="window"
        ),
    ],
)
def test_a_where_over_the_whole_file_is_refused_or_evaluated_whole(
    tmp_path, emulator, cli, monkeypatch, where, rows
) -> None:
    header = ["email", "amount"]
    config = settings_file(tmp_path)
    job = make_job(tmp_path, sync={"max_removed_ratio": 1.0, "min_rows": 1})
    first = [[f"user{n}@example.com", "1"] for n in (1500, 1501, 3)]
    write_csv(tmp_path / "list.csv", first, header=header)
    assert cli("run", job, "--config", config).code == 0  # a state, from a whole read
    before = emulator.members(SEGMENT)

    _fold_every_file(monkeypatch)
    table, selected = rows()
    write_csv(tmp_path / "list.csv", table, header=header)
    job = make_job(tmp_path, source={"path": "list.csv", "where": where}, sync={"min_rows": 1})
    emulator.reset_calls()
    result = cli("run", job, "--config", config)
    if result.code == 2:  # refused when the job loads
        assert "source.where" in result.out + result.err
        assert emulator.calls == [] and emulator.members(SEGMENT) == before
    else:  # or evaluated over the whole file
        assert result.code == 0, result.out + result.err
        held = emulator.members(SEGMENT)
        assert (len(held), held == selected) == (len(selected), True)


def test_an_aggregate_as_a_row_condition_is_a_job_error(tmp_path, emulator, cli) -> None:
    # Today: exit 1, "unexpected ArrowInvalid ... this is a bug in np6-sync".
    write_csv(tmp_path / "list.csv", emails(0, 50))
    job = make_job(tmp_path, source={"path": "list.csv", "where": "COUNT(email) > 0"})
    result = cli("run", job, "--config", settings_file(tmp_path))
    assert (result.code, "source.where" in result.out + result.err) == (2, True), result.out
    assert emulator.calls == [] and emulator.members(SEGMENT) == set()


def test_what_the_load_check_accepts_runs(tmp_path, emulator, cli) -> None:
    """``CAST(col AS DATE)`` passes the check on zero rows, and polars 2 refuses it on
    the first row: the job must be refused when it loads, or run."""
    import polars

    from sync.config import load_job
    from sync.errors import ConfigError

    write_csv(
        tmp_path / "list.csv",
        [["a@x.org", "2020-03-01"], ["b@x.org", "2019-03-01"]],
        header=["email", "since"],
    )
    where = "CAST(since AS DATE) > '2020-01-01'"
    job = make_job(tmp_path, source={"path": "list.csv", "where": where})
    if int(polars.__version__.split(".")[0]) >= 2:
        try:
            load_job(job)  # today: loads, then the run fails reading the first row
            refused = ""
        except ConfigError as error:
            refused = str(error)
        assert "source.where" in refused, "loaded, to fail at run time"
    result = cli("run", job, "--config", settings_file(tmp_path))
    if result.code == 0:
        assert emulator.members(SEGMENT) == {"a@x.org"}
    else:
        assert (result.code, "source.where" in result.out) == (2, True)
        assert emulator.calls == []


# --- P#5 and O#6 (b): a fan-out and the job's where --------------------------------------

GOLD, SILVER = 201, 202
FAN_HEADER = ["email", "tier", "optin"]


@pytest.fixture
def fan_emulator() -> Iterator[Emulator]:
    with Emulator(API_KEY, segments=[GOLD, SILVER]) as server:
        yield server


def _fan_rows() -> list[list[str]]:
    """Opted-in rows of tiers gold and silver; the opted-out rows hold tiers no segment
    maps ("", "platinum") and gold ones."""
    rows = [[f"in{n}@x.org", ["gold", "silver"][n % 2], "Y"] for n in range(20)]
    rows += [[f"out{n}@x.org", ["", "platinum", "gold"][n % 3], "N"] for n in range(9)]
    return rows


def _fan_job(folder: Path, segment_by: dict) -> Path:
    job = {
        "name": "tiers",
        "source": {"path": "crm.csv", "where": "optin = 'Y'"},
        "targets": {"columns": ["email"]},
        "sync": {"max_removed_ratio": 1.0, "min_rows": 1},
        "segment_by": {"column": "tier", "segments": {"gold": GOLD, "silver": SILVER}} | segment_by,
    }
    path = folder / "tiers.yaml"
    path.write_text(json.dumps(job))  # JSON is YAML
    return path


@pytest.mark.parametrize("unmapped", ["refuse", "ignore"])
def test_unmapped_values_count_only_in_the_rows_the_job_keeps(
    tmp_path, fan_emulator, cli, monkeypatch, unmapped
) -> None:
    # Today: refuse exits 3, "6 row(s) hold a tier value that segment_by.segments does not
    # map", every one of them opted out; ignore reports rows_unmapped 6.
    monkeypatch.setenv("NP6_BASE_URL", fan_emulator.url)
    rows = _fan_rows()
    write_csv(tmp_path / "crm.csv", rows, header=FAN_HEADER)
    job = _fan_job(tmp_path, {"unmapped": unmapped})
    report = tmp_path / "r.json"
    result = cli("run", job, "--config", settings_file(tmp_path), "--report-json", report)
    assert result.code == 0, result.out + result.err
    lines = json.loads(report.read_text())["jobs"]
    assert [line["rows_unmapped"] for line in lines] == [0, 0]
    assert fan_emulator.members(GOLD) == {r[0] for r in rows if r[1:] == ["gold", "Y"]}
    assert fan_emulator.members(SILVER) == {r[0] for r in rows if r[1:] == ["silver", "Y"]}


def test_a_segments_where_adds_to_the_jobs_where(tmp_path, fan_emulator, cli, monkeypatch):
    """O#6: opted-out rows reach no segment, by segment_by or by segments' own where."""
    monkeypatch.setenv("NP6_BASE_URL", fan_emulator.url)
    rows = _fan_rows()
    write_csv(tmp_path / "crm.csv", rows, header=FAN_HEADER)
    config = settings_file(tmp_path)
    gold = {r[0] for r in rows if r[1:] == ["gold", "Y"]}
    silver = {r[0] for r in rows if r[1:] == ["silver", "Y"]}
    assert cli("run", _fan_job(tmp_path, {}), "--config", config).code == 0
    assert (fan_emulator.members(GOLD), fan_emulator.members(SILVER)) == (gold, silver)

    job = json.loads((tmp_path / "tiers.yaml").read_text())
    del job["segment_by"]
    job["segments"] = [
        {"name": "tiers.gold", "segment_id": GOLD, "where": "tier = 'gold'"},
        {"name": "tiers.silver", "segment_id": SILVER, "where": "tier <> 'gold'"},
    ]
    (tmp_path / "tiers.yaml").write_text(json.dumps(job))
    result = cli("run", tmp_path / "tiers.yaml", "--config", config)
    assert result.code == 0, result.out + result.err
    assert (fan_emulator.members(GOLD), fan_emulator.members(SILVER)) == (gold, silver)


# --- O#6 (c): a full refresh keeps the safeguards ----------------------------------------


def test_a_full_refresh_keeps_the_safeguards(tmp_path, emulator, cli) -> None:
    ids = [f"{n:08d}" for n in range(5000)]
    job = make_job(
        tmp_path,
        targets={"identify_by": "id", "columns": ["target_id"]},
        sync={"max_removed_ratio": 0.5},
    )
    write_csv(tmp_path / "list.csv", [[i] for i in ids], header=["target_id"])
    config = settings_file(tmp_path)
    assert cli("run", job, "--config", config).code == 0
    assert emulator.members(SEGMENT) == set(ids)
    state = state_snapshot(tmp_path / "state")

    write_csv(tmp_path / "list.csv", [[i] for i in ids[:100]], header=["target_id"])
    emulator.reset_calls()
    report = tmp_path / "r.json"
    result = cli("run", job, "--config", config, "--full-refresh", "--report-json", report)
    assert result.code == 3, result.out + result.err
    assert _report(report)["refusals"], result.out
    assert [c.method for c in emulator.calls if c.method != "GET"] == []
    assert emulator.members(SEGMENT) == set(ids)
    assert state_snapshot(tmp_path / "state") == state


# --- P#2: a where on the date, answered from the seal -----------------------------------


def test_a_where_on_the_date_is_not_answered_from_yesterdays_seal(tmp_path, emulator, env) -> None:
    """The same bytes on another day: a row whose date came must be sent. The day moves
    by the time zone, which CURRENT_DATE follows: UTC-12, then UTC+14 (26 hours on)."""
    later_day = datetime.now(timezone(timedelta(hours=14))).date()
    rows = [[f"user{n}@example.com", "2020-01-01"] for n in range(20)]
    rows.append(["comes@example.com", later_day.isoformat()])
    write_csv(tmp_path / "list.csv", rows, header=["email", "starts_on"])
    where = "DATE(starts_on) <= CURRENT_DATE"
    job = make_job(tmp_path, source={"path": "list.csv", "where": where})
    config = settings_file(tmp_path)
    args = ["run", job, "--config", config]
    if not CLOCK_IN_SQL:  # polars 1.x: no CURRENT_DATE; the job is refused as it loads
        refused = run_process(args, env, cwd=tmp_path)
        said = refused.stdout + refused.stderr
        assert refused.returncode == 2 and "source.where" in said, said
        return

    yesterday = run_process(args, {**env, "TZ": "Etc/GMT+12"}, cwd=tmp_path)

    assert yesterday.returncode == 0, yesterday.stdout + yesterday.stderr
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(20)}
    # Today: "no_changes", answered from the seal, and the row is never sent.
    today = run_process(args, {**env, "TZ": "Etc/GMT-14"}, cwd=tmp_path)
    assert today.returncode == 0, today.stdout + today.stderr
    assert "comes@example.com" in emulator.members(SEGMENT), today.stdout


# --- O#6 (a): no seal for bytes that changed while they were read -------------------------


def _changed_while_read(
    monkeypatch: pytest.MonkeyPatch, source: Path, rows: list[list[str]], then=lambda: None
) -> None:  # type: ignore[no-untyped-def]
    """The next read of ``source`` reads it, then another program rewrites it (other keys,
    another size) before the run ends; ``then`` is called once it did."""
    import sync.job.source

    real = sync.job.source.read_source

    def read_then_rewrite(spec, columns):  # type: ignore[no-untyped-def]
        table = real(spec, columns)
        monkeypatch.setattr(sync.job.source, "read_source", real)
        write_csv(source, rows)
        then()
        return table

    monkeypatch.setattr(sync.job.source, "read_source", read_then_rewrite)


def test_no_seal_vouches_for_bytes_that_changed_while_read(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    source = write_csv(tmp_path / "list.csv", emails(0, 100))
    job = make_job(tmp_path)
    config = settings_file(tmp_path)
    _changed_while_read(monkeypatch, source, emails(0, 110))
    assert cli("run", job, "--config", config).code == 0
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(100)}

    report = tmp_path / "r.json"
    result = cli("run", job, "--config", config, "--report-json", report)
    assert result.code == 0, result.out + result.err
    assert _report(report)["status"] != "no_changes", result.out
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(110)}


def test_no_seal_when_the_proof_thread_starts_after_the_change(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    """The same change, with the digest's thread scheduled late (a loaded machine): it
    then stats and hashes the new bytes, and today's seal vouches for them with the old
    keys; the next run answers "no changes" with 10 keys never sent."""
    import threading

    from sync.state import seal

    source = write_csv(tmp_path / "list.csv", emails(0, 100))
    job = make_job(tmp_path)
    config = settings_file(tmp_path)
    rewritten = threading.Event()
    take = seal.SourceProof.take.__func__  # type: ignore[attr-defined]

    def late(cls, path, *identity):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():
            rewritten.wait(10)
        return take(cls, path, *identity)

    monkeypatch.setattr(seal.SourceProof, "take", classmethod(late))
    _changed_while_read(monkeypatch, source, emails(0, 110), then=rewritten.set)
    assert cli("run", job, "--config", config).code == 0
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(100)}

    report = tmp_path / "r.json"
    result = cli("run", job, "--config", config, "--report-json", report)
    assert result.code == 0, result.out + result.err
    assert _report(report)["status"] != "no_changes", result.out
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(110)}
