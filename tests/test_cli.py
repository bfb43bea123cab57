"""End to end: the real command line against the emulator on a loopback port."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import API_KEY, SEGMENT, emails, make_job, settings_file, write_csv
from sync.emulator import Emulator


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return settings_file(tmp_path, concurrency=4)


def puts(emulator: Emulator) -> list:
    return [c for c in emulator.calls if c.method == "PUT"]


def emails_set(start: int, stop: int) -> set[str]:
    return {f"user{n}@example.com" for n in range(start, stop)}


def test_first_load_rerun_additions_and_removals(tmp_path, emulator, cli, config) -> None:
    # reload_cost_factor 1: removals take the cheaper way, here a reload (P#9's default 5
    # would remove the 10 one by one).
    job = make_job(tmp_path, sync={"reload_cost_factor": 1})
    report = tmp_path / "report.json"

    write_csv(tmp_path / "list.csv", emails(0, 120))
    result = cli("run", job, "--config", config, "--report-json", report)
    assert result.code == 0, result.err
    assert emulator.members(SEGMENT) == emails_set(0, 120)
    assert len(puts(emulator)) == 3
    first = json.loads(report.read_text())["jobs"][0]
    assert first["status"] == "succeeded" and first["action"] == "append"
    assert (first["added"], first["targets_sent"], first["targets_accepted"]) == (120, 120, 120)
    # get: the preflight's description of the segment
    assert first["requests"] == {"put": 3, "delete": 0, "post": 0, "retries": 0, "get": 1}

    emulator.reset_calls()
    result = cli("run", job, "--config", config, "--report-json", report)
    assert result.code == 0
    assert emulator.calls == []  # a rerun sends nothing at all
    assert json.loads(report.read_text())["jobs"][0]["status"] == "no_changes"

    write_csv(tmp_path / "list.csv", emails(0, 250))
    result = cli("run", job, "--config", config)
    assert result.code == 0
    sent = [t for call in puts(emulator) for t in call.targets]
    assert sorted(sent) == sorted(emails_set(120, 250))
    assert len(puts(emulator)) == math.ceil(130 / 50)
    assert emulator.members(SEGMENT) == emails_set(0, 250)

    emulator.reset_calls()
    write_csv(tmp_path / "list.csv", emails(10, 250))
    result = cli("run", job, "--config", config, "--report-json", report)
    assert result.code == 0
    assert next(c.method for c in emulator.calls if c.method != "GET") == "DELETE"
    assert len(puts(emulator)) == math.ceil(240 / 50)
    assert emulator.members(SEGMENT) == emails_set(10, 250)
    last = json.loads(report.read_text())["jobs"][0]
    assert (last["action"], last["removed"], last["added"]) == ("reload", 10, 0)
    assert last["requests"]["delete"] == 1


def test_two_column_keys_with_transforms_and_separator(tmp_path, emulator, cli, config) -> None:
    job = make_job(
        tmp_path,
        targets={
            "columns": ["email", "customer_id"],
            "separator": "|",
            "transforms": {"email": ["strip", "lower"]},
        },
        sync={"max_rejected_ratio": 0.5},
    )
    write_csv(
        tmp_path / "list.csv",
        [[" Ann@X.fr ", "000123"], ["bob@x.fr", "NA"], ["ann@x.fr", "000123"], ["", "7"]],
        header=["email", "customer_id"],
    )
    result = cli("run", job, "--config", config)
    assert result.code == 0, result.err
    assert emulator.members(SEGMENT) == {"ann@x.fr|000123", "bob@x.fr|NA"}
    rejects = (tmp_path / "state" / "list.rejects.csv").read_text()
    assert '5,"empty email","","7"' in rejects
    assert "rejected rows: 1 empty email" in result.out


def test_parquet_source(tmp_path, emulator, cli, config) -> None:
    frame = pd.DataFrame({"email": ["a@x.fr", "b@x.fr"], "customer_id": [123, 4]})
    frame.to_parquet(tmp_path / "list.parquet")
    job = make_job(
        tmp_path,
        source={"path": "list.parquet"},
        targets={"columns": ["email", "customer_id"], "separator": "#"},
    )
    result = cli("run", job, "--config", config)
    assert result.code == 0, result.err
    assert emulator.members(SEGMENT) == {"a@x.fr#123", "b@x.fr#4"}


def test_transient_errors_are_retried_and_the_run_succeeds(tmp_path, emulator, cli, config) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 200))
    emulator.inject("429", "503", "500", "drop", "lost")
    result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == emails_set(0, 200)
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert report["requests"]["retries"] == 5
    assert report["requests"]["put"] == 4
    assert report["targets_sent"] == 200


def test_a_wrong_key_fails_without_showing_any_key(
    tmp_path, emulator, cli, config, monkeypatch
) -> None:
    monkeypatch.setenv("NP6_API_KEY", "wrong-secret-value-42")
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 10))
    result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json", "-vv")
    assert result.code == 2  # nothing was sent: fix the key (tests/test_first_errors.py)
    output = result.out + result.err + (tmp_path / "r.json").read_text()
    assert "HTTP 401" in output and "x-request-id" in output and "NP6_API_KEY" in output
    assert "wrong-secret-value-42" not in output and API_KEY not in output
    for path in (tmp_path / "state").iterdir():
        assert b"wrong-secret-value-42" not in path.read_bytes()


def test_a_bad_job_file_names_every_problem_and_sends_nothing(tmp_path, emulator, cli) -> None:
    job = tmp_path / "bad.yaml"
    job.write_text(
        "name: bad\nsegment_id: zero\nsource:\n  path: list.xlsx\n  delimitr: ';'\n"
        "targets:\n  columns: []\nsync:\n  chunk_size: 51\n  mode: sometimes\n"
    )
    result = cli("run", job)
    assert result.code == 2
    for problem in [
        "segment_id: Input should be a valid integer",
        "source.format: cannot tell the format of 'list.xlsx'",
        "source.delimitr: unknown key",
        "targets.columns: List should have at least 1 item",
        "sync.chunk_size: Input should be less than or equal to 50",
        "sync.mode: Input should be 'auto', 'append' or 'reload'",
    ]:
        assert problem in result.out + result.err
    assert emulator.calls == []


def test_a_missing_key_is_a_usage_error(tmp_path, emulator, cli, monkeypatch) -> None:
    monkeypatch.delenv("NP6_API_KEY")
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 3))
    result = cli("run", job)
    assert result.code == 2
    assert "NP6_API_KEY" in result.err
    assert emulator.calls == []


def test_normalization_follows_a_run_that_changed_the_segment(
    tmp_path, emulator, cli, config
) -> None:
    job = make_job(tmp_path, normalization={"fields": {"34": ["FRA", "ESP"]}})
    write_csv(tmp_path / "list.csv", emails(0, 3))
    assert cli("run", job, "--config", config).code == 0
    assert emulator.normalizations(SEGMENT) == [{"fields": {"34": ["FRA", "ESP"]}}]
    assert cli("run", job, "--config", config).code == 0
    assert len(emulator.normalizations(SEGMENT)) == 1


def test_validate_reports_counts_and_sends_nothing(tmp_path, emulator, cli) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", [*emails(0, 5), ["user1@example.com"], [" "]])
    result = cli("validate", job, "--samples", "3")  # keys are shown only when asked
    assert result.code == 0
    assert "rows        7" in result.out
    assert "valid keys  5" in result.out
    assert "duplicates  1" in result.out
    assert "1 empty email" in result.out
    assert "sample      user0@example.com" in result.out
    assert emulator.calls == []


def test_validate_fails_on_a_missing_source(tmp_path, cli) -> None:
    job = make_job(tmp_path)
    result = cli("validate", job)
    assert result.code == 2
    assert "list.csv" in result.err


def test_demo_runs_the_example_and_reports(cli) -> None:
    result = cli("demo")
    assert result.code == 0, result.err
    assert result.out.count("succeeded") == 3
    assert "no_changes" in result.out
    assert "the emulated segment now holds 1,035 targets" in result.out
    assert '{"ts"' not in result.out + result.err  # the reports, not log lines


def test_an_incremental_run_sends_only_the_puts_it_needs(tmp_path, emulator, cli, config) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 1000))
    assert cli("run", job, "--config", config).code == 0
    write_csv(tmp_path / "list.csv", emails(0, 1101))
    emulator.reset_calls()
    assert cli("run", job, "--config", config).code == 0
    # One description of the segment before the first change, then only the PUTs.
    described = [("GET", f"/segments/{SEGMENT}")]
    puts = [("PUT", f"/segments/{SEGMENT}/targets")] * math.ceil(101 / 50)
    assert [(c.method, c.path) for c in emulator.calls] == described + puts


def test_the_request_rate_is_never_exceeded_in_any_second(tmp_path, emulator, cli) -> None:
    config = settings_file(tmp_path, concurrency=8, max_requests_per_second=10)
    job = make_job(tmp_path, sync={"chunk_size": 10})
    write_csv(tmp_path / "list.csv", emails(0, 250))
    assert cli("run", job, "--config", config).code == 0
    starts = sorted(c.at for c in emulator.calls)
    assert len(starts) == 1 + 25  # the segment's description, then the PUTs
    for start in starts:
        assert sum(1 for s in starts if start <= s < start + 1.0) <= 10


def test_429s_lower_the_concurrency_and_the_run_succeeds(tmp_path, emulator, cli) -> None:
    config = settings_file(tmp_path, concurrency=8)
    job = make_job(tmp_path, sync={"chunk_size": 10})
    write_csv(tmp_path / "list.csv", emails(0, 600))
    emulator.inject("429", "429-retry-after", "429")
    result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out
    assert emulator.members(SEGMENT) == emails_set(0, 600)
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert report["requests"]["retries"] == 3
    assert report["lowest_concurrency"] == 1  # 8 -> 4 -> 2 -> 1
    assert report["rate_limit_wait_s"] >= 1.0  # the Retry-After of 1 s was honoured
