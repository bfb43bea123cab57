"""Input edges found in third-party test corpora (issue 24, holes 12 and 13), end to end.

Each file is run through the real command line against the emulator, read whole and
folded (``FOLD_BYTES`` 0 folds every file, a few rows a batch): a file the reader cannot
take exits 2 naming the problem (never a value: the values are personal data), and
nothing is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job
from sync import folding
from sync.emulator import Emulator
from sync.read import batches

GOOD = [f"user{n}@example.com" for n in range(500)]
# A value broken mid-way: 0xc3 opens a two-byte UTF-8 sequence that 'h' does not continue.
BROKEN = b"TREL\xc3hello"
FOLDS = [pytest.param(False, id="whole"), pytest.param(True, id="folded")]


@pytest.fixture
def fold(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    def choose(folded: bool) -> None:
        monkeypatch.setattr(folding, "FOLD_BYTES", 0 if folded else 1 << 40)
        monkeypatch.setattr(batches, "BATCH_ROWS", 64)

    return choose


def _run(cli: Callable[..., Any], job: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    report = job.with_name("report.json")
    report.unlink(missing_ok=True)
    result = cli(*args, job, "--report-json", report)
    return result, json.loads(report.read_text())["jobs"][0]


# --- P#12: a Parquet string column that is not UTF-8 -------------------------------------


def _string_column(values: list[bytes], dictionary: bool) -> pa.Array:
    """Text as the schema says, with bytes pyarrow does not check on write or on read."""
    array = pa.array(values, pa.binary()).view(pa.string())
    return array.dictionary_encode() if dictionary else array


@pytest.mark.parametrize("folded", FOLDS)
@pytest.mark.parametrize(
    "dictionary", [pytest.param(False, id="string"), pytest.param(True, id="dictionary")]
)
def test_a_parquet_text_column_that_is_not_utf8_is_refused_before_sending(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
    dictionary: bool,
) -> None:
    fold(folded)
    values = [v.encode() for v in GOOD]
    values.insert(250, BROKEN)  # spreadsheet row 251: Parquet has no header row
    source = tmp_path / "list.parquet"
    pq.write_table(pa.table({"email": _string_column(values, dictionary)}), source)
    job = make_job(tmp_path, source={"path": "list.parquet"})

    for command in ("plan", "run", "run"):  # a later run fails the same way, sending nothing
        result, report = _run(cli, job, command)
        output = result.out + result.err
        assert result.code == 2, output
        assert f"{source}: column 'email', row 251: " in output
        assert "not valid utf-8" in output
        assert "TREL" not in output and "hello" not in output and "this is a bug" not in output
        assert report["status"] == "failed" and report["targets_sent"] == 0
        assert emulator.calls == []
    assert emulator.members(SEGMENT) == set()
