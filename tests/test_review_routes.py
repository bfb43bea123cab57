"""A hostile review of the routes and the API (issue O, after the one-route change): each
finding reproduced against the emulator, then fixed where the two ways met."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_holes_routes import _amounts, _fold_every_file, _report

import sync
from conftest import API_KEY, CLOCK_IN_SQL, SEGMENT, emails, make_job, settings_file, write_csv
from sync.emulator import Emulator
from sync.read.where import check, traits


@pytest.mark.parametrize(
    "where",
    [
        "STRPTIME(at, '%Y-%m-%d %H:%M:%S') <= LOCALTIMESTAMP",
        "STRPTIME(at, '%Y-%m-%d %H:%M:%S') <= LOCALTIMESTAMP()",
        "STRPTIME(at, '%Y-%m-%d %H:%M:%S') <= CURRENT_TIMESTAMP",
        "DATE(at) <= CURRENT_DATE",
        "STRPTIME(at, '%Y-%m-%d %H:%M:%S') < NOW()",
    ],
)
def test_every_spelling_of_the_clock_is_never_sealed(where: str) -> None:
    assert traits(where).clock


def test_a_clock_word_inside_quotes_is_a_value() -> None:
    assert not traits("status = 'NOW'").clock


def test_a_where_on_localtimestamp_is_read_again_not_sealed(tmp_path, emulator, cli) -> None:
    rows = [[f"user{n}@example.com", "2020-01-01 00:00:00"] for n in range(20)]
    write_csv(tmp_path / "list.csv", rows, header=["email", "at"])
    where = "STRPTIME(at, '%Y-%m-%d %H:%M:%S') <= LOCALTIMESTAMP"
    job = make_job(tmp_path, source={"path": "list.csv", "where": where})
    config = settings_file(tmp_path)
    if not CLOCK_IN_SQL:  # polars 1.x: no LOCALTIMESTAMP; the job is refused as it loads
        refused = cli("run", job, "--config", config)
        assert refused.code == 2 and "source.where" in refused.out + refused.err
        return
    assert cli("run", job, "--config", config).code == 0
    report = tmp_path / "r.json"

    assert cli("run", job, "--config", config, "--report-json", report).code == 0
    got = _report(report)
    assert got["route"] == "whole" and "reads the date or time" in got["route_reason"]


@pytest.mark.parametrize(
    "where",
    [
        "CAST(amount AS INT) > QUANTILE_CONT(CAST(amount AS INT), 0.9)",
        "CAST(amount AS INT) > QUANTILE_DISC(CAST(amount AS INT), 0.9)",
        "VAR(CAST(amount AS DOUBLE)) > 1",
        "STDEV_SAMP(CAST(amount AS DOUBLE)) > 1",
        "CAST(`amount` AS DOUBLE) > 20 * AVG(CAST(`amount` AS DOUBLE))",
    ],
)
def test_aggregates_sqlglot_does_not_name_are_refused_at_load(where: str) -> None:
    with pytest.raises(ValueError, match="looks at other rows"):
        check(where)


def test_a_backquoted_aggregate_is_refused_before_anything_is_sent(
    tmp_path, emulator, cli, monkeypatch
) -> None:
    _fold_every_file(monkeypatch)
    table, _ = _amounts()
    write_csv(tmp_path / "list.csv", table, header=["email", "amount"])
    where = "CAST(`amount` AS DOUBLE) > 20 * AVG(CAST(`amount` AS DOUBLE))"
    job = make_job(tmp_path, source={"path": "list.csv", "where": where})
    result = cli("run", job, "--config", settings_file(tmp_path))
    assert result.code == 2 and "source.where" in result.out + result.err
    assert emulator.calls == []


def test_a_condition_no_dialect_parses_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be analysed"):
        traits("email ==== 'x'")


def test_a_seal_speaks_of_one_account(tmp_path, cli, monkeypatch) -> None:
    """The same job folder pointed at another NP6 (staging, then production) is not
    answered from the first account's seal."""
    write_csv(tmp_path / "list.csv", emails(0, 50))
    job = make_job(tmp_path)
    with (
        Emulator(API_KEY, segments=[SEGMENT]) as staging,
        Emulator(API_KEY, segments=[SEGMENT]) as production,
    ):
        monkeypatch.setenv("NP6_BASE_URL", staging.url)
        assert cli("run", job, "--config", settings_file(tmp_path)).code == 0
        monkeypatch.setenv("NP6_BASE_URL", production.url)
        report = tmp_path / "r.json"
        cli("run", job, "--config", settings_file(tmp_path), "--report-json", report)
        assert _report(report)["route"] != "sealed"


def test_a_regex_built_from_a_value_is_not_quoted(tmp_path, emulator, cli) -> None:
    rows = [[f"user{n}@example.com", f"ref{n}@example.com"] for n in range(10)]
    rows.append(["jane@example.com", "+secret.referrer@example.org"])
    write_csv(tmp_path / "list.csv", rows, header=["email", "referrer"])
    job = make_job(tmp_path, source={"path": "list.csv", "where": "STRPOS(email, referrer) = 0"})
    report = tmp_path / "r.json"
    result = cli("run", job, "--config", settings_file(tmp_path), "--report-json", report)
    everything = result.out + result.err + report.read_text()
    assert result.code == 2, everything
    assert "secret.referrer" not in everything and "could not evaluate it" in everything


def test_an_api_path_is_the_callers_relative_to_its_working_directory(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job = make_job(jobs)  # source.path: list.csv, beside the job

    write_csv(jobs / "list.csv", emails(0, 10))  # yesterday's export
    work = tmp_path / "work"
    write_csv(work / "list.csv", emails(100, 110))  # today's, where the caller works
    monkeypatch.chdir(work)
    settings = {"base_url": emulator.url, "max_requests_per_second": 10_000}
    report = sync.run(job, source="list.csv", api_key=API_KEY, settings=settings)
    assert report.exit_code == 0
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(100, 110)}


def test_an_api_fan_out_that_sent_returns_its_report_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(API_KEY, segments=[201, 202]) as emulator:
        rows = [[f"u{n}@x.org", "gold" if n % 2 else "tin", str(n)] for n in range(20)]
        rows.append(["bad@x.org", "tin", "n/a"])
        write_csv(tmp_path / "crm.csv", rows, header=["email", "tier", "points"])
        job = {
            "name": "tiers",
            "source": {"path": "crm.csv"},
            "targets": {"columns": ["email"]},
            "sync": {"max_removed_ratio": 1.0, "min_rows": 1},
            "segments": [
                {"name": "gold", "segment_id": 201, "where": "tier = 'gold'"},
                {"name": "big", "segment_id": 202, "where": "CAST(points AS INT) > 10"},
            ],
        }
        monkeypatch.chdir(tmp_path)
        settings = {"base_url": emulator.url, "max_requests_per_second": 10_000}
        report = sync.run(job, api_key=API_KEY, settings=settings)
        assert len(emulator.members(201)) == 10
        assert [(j.name, j.status) for j in report.jobs] == [
            ("gold", "succeeded"),
            ("big", "failed"),
        ]
        assert json.dumps(report.to_dict())  # the caller has the whole report
