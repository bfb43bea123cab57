"""source.where: rows chosen by a condition, through the command line and the key builder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job, write_csv
from sync.config import load_job
from sync.errors import ConfigError, SourceError
from sync.job.source import load_keys

HEADER = ("email", "optin", "country", "age")
ROWS = [
    ["a@x.com", "Y", "FRA", "40"],
    ["b@x.com", "Y", "BEL", "17"],
    ["c@x.com", "N", "FRA", "50"],
    ["d@x.com", "", "FRA", "60"],
    ["e@x.com", "Y", "DEU", "30"],
    ["", "Y", "FRA", "33"],  # a rejected row the condition keeps
    ["", "N", "FRA", "33"],  # a rejected row it leaves out: not counted as rejected
]


def _job(tmp_path: Path, where: str, **overrides: object) -> Path:
    write_csv(tmp_path / "list.csv", ROWS, header=HEADER)
    return make_job(tmp_path, source={"path": "list.csv", "where": where}, **overrides)


def test_where_keeps_the_rows_it_names(tmp_path: Path) -> None:
    keyset = load_keys(load_job(_job(tmp_path, "optin = 'Y' AND country IN ('FRA', 'BEL')")))
    assert keyset.keys.to_pylist() == ["a@x.com", "b@x.com"]
    assert (keyset.rows_read, keyset.rows_rejected, keyset.rows_filtered) == (3, 1, 4)
    assert keyset.rejected.column("row").to_pylist() == [7]  # its row in the file


def test_values_are_text_and_numbers_need_a_cast(tmp_path: Path) -> None:
    adults = load_keys(load_job(_job(tmp_path, "CAST(age AS INT) >= 18 AND optin = ''")))
    assert adults.keys.to_pylist() == ["d@x.com"]  # an empty cell is the empty string
    with pytest.raises(ConfigError, match=r"source\.where: cannot be evaluated"):
        load_job(_job(tmp_path, "age >= 18"))


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("optin = ", "does not parse"),
        ("optin = 'Y'; DROP TABLE x", "does not parse"),
        ("optin", "is not true or false"),
        ("1 = 1", "names no column"),
        ("nosuch(optin)", "does not parse"),
    ],
)
def test_a_bad_condition_is_a_job_error(tmp_path: Path, where: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"source\.where: {problem}") as caught:
        load_job(_job(tmp_path, where))
    assert caught.value.exit_code == 2


def test_a_condition_naming_a_missing_column_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"column 'optn' not found; the closest is 'optin'"):
        load_keys(load_job(_job(tmp_path, "optn = 'Y'")))


def test_a_missing_parquet_value_is_null(tmp_path: Path) -> None:
    table = pa.table({"email": ["a@x.com", "b@x.com", "c@x.com"], "optin": ["Y", None, ""]})
    pq.write_table(table, tmp_path / "list.parquet")
    path = make_job(tmp_path, source={"path": "list.parquet", "where": "optin IS NULL"})
    assert load_keys(load_job(path)).keys.to_pylist() == ["b@x.com"]
    path = make_job(tmp_path, source={"path": "list.parquet", "where": "optin <> 'Y'"})
    assert load_keys(load_job(path)).keys.to_pylist() == ["c@x.com"]  # NULL <> 'Y' is NULL


def test_run_sends_the_kept_rows_and_counts_the_others(cli, emulator, tmp_path: Path) -> None:
    job = _job(tmp_path, "optin = 'Y'", sync={"max_rejected_ratio": 0.5, "min_rows": 3})
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.err
    assert emulator.members(SEGMENT) == {"a@x.com", "b@x.com", "e@x.com"}
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert (report["rows_read"], report["rows_filtered"], report["rows_rejected"]) == (7, 3, 1)


def test_left_out_rows_count_toward_no_safeguard(cli, emulator, tmp_path: Path) -> None:
    # 1 of 4 kept rows is rejected (25%); counted over all 7 rows it would be 2 (29%).
    job = _job(tmp_path, "optin = 'Y'", sync={"max_rejected_ratio": 0.26, "min_rows": 4})
    result = cli("run", job, "--report-json", tmp_path / "r.json")
    assert result.code == 3
    report = json.loads((tmp_path / "r.json").read_text())["jobs"][0]
    assert report["refusals"] == ["the source has 3 valid row(s), fewer than sync.min_rows (4)"]
    assert emulator.members(SEGMENT) == set()


def test_a_condition_keeping_nothing_is_refused(cli, emulator, tmp_path: Path) -> None:
    result = cli("run", _job(tmp_path, "country = 'ITA'"))
    assert result.code == 3
    assert "source.where keeps none of the source's 7 rows" in result.out + result.err


def test_validate_shows_what_the_condition_keeps(cli, tmp_path: Path) -> None:
    result = cli("validate", _job(tmp_path, "optin = 'Y'"))
    assert result.code == 0, result.err
    assert "kept        4 (left out: 3)" in result.out


def test_a_bad_condition_exits_2_through_the_cli(cli, emulator, tmp_path: Path) -> None:
    result = cli("run", _job(tmp_path, "optin = = 'Y'"))
    assert result.code == 2
    assert "source.where: does not parse" in result.out + result.err
    assert emulator.calls == []
