"""Real-world input files, end to end: the real command line against the emulator.

A bad file stops the run before anything is sent or saved; the files that real exports
produce (dialects, encodings, compressions, Parquet types) reach the segment as written.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, emails, make_job, state_snapshot, write_csv
from corpus import compress, csv_text, write
from sync.emulator import Emulator

# Values that type inference or null detection would change: they must reach NP6 as written.
EXACT = ["000123", "+33612345678", "1e5", "NA", "null", "nan", "TRUE", "N/A", "0x1F"]
GOOD = [row[0] for row in emails(0, 20)]


def _csv_bytes(rows: list[list[str]], header: list[str] | None = None, **kwargs: Any) -> bytes:
    encoding = kwargs.pop("encoding", "utf-8")
    return csv_text([header or ["email", "name"], *rows], **kwargs).encode(encoding)


def _named(values: list[str]) -> list[list[str]]:
    return [[value, f"name {i}"] for i, value in enumerate(values)]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _write_good(path: Path, encoding: str = "utf-8") -> None:
    """A valid source of GOOD, in the format the name asks for."""
    if path.suffix == ".parquet":
        path.write_bytes(_parquet_bytes(pa.table({"email": GOOD, "name": GOOD})))
    else:
        write(path, _csv_bytes(_named(GOOD), encoding=encoding))


# --- 1. a bad file: exit 2, nothing sent, state and segment untouched ---------------------

Spoil = Callable[[Path], None]


def _replace(data: bytes) -> Spoil:
    return lambda path: path.write_bytes(data)


def _half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_first_page(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:4] + b"\0" * 60 + data[64:])


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _unreadable(path: Path) -> None:
    path.chmod(0)


BAD_INPUTS = [
    pytest.param("list.csv", {}, Path.unlink, ["file not found"], id="missing"),
    pytest.param("list.csv", {}, _replace(b""), ["the file is empty (0 bytes)"], id="empty-csv"),
    pytest.param(
        "list.parquet", {}, _replace(b""), ["the file is empty (0 bytes)"], id="empty-parquet"
    ),
    pytest.param(
        "list.parquet",
        {},
        _half,
        ["cannot read as Parquet (damaged, truncated or not Parquet)"],
        id="truncated-parquet",
    ),
    pytest.param(
        "list.parquet",
        {},
        _zero_first_page,
        ["cannot read as Parquet (damaged, truncated or not Parquet)"],
        id="corrupt-parquet",
    ),
    pytest.param(
        "list.csv.gz",
        {},
        _half,
        ["cannot read it: Truncated compressed stream"],
        id="truncated-gzip",
    ),
    pytest.param(
        "list.csv.gz",
        {},
        _replace(b"\x1f\x8b" + b"junk" * 50),
        ["cannot read it: zlib inflate failed"],
        id="corrupt-gzip",
    ),
    pytest.param("list.csv", {}, _directory, ["is a directory, not a file"], id="directory"),
    pytest.param("list.csv", {}, _unreadable, ["permission denied"], id="unreadable"),
    pytest.param(
        "list.csv",
        {},
        _replace(b"email,name\r\nok@x.fr,a\r\nb\xe9@x.fr,b\r\n"),
        ["column 'email', row 3", "e9", "not valid utf-8", "set source.encoding"],
        id="not-utf8",
    ),
    pytest.param(
        "list.csv",
        {"encoding": "cp1252"},
        _replace(b"email,name\r\nok@x.fr,a\r\nb\x81@x.fr,b\r\n"),
        ["81 at byte offset", "(line 3)", "cannot be decoded as cp1252"],
        id="not-cp1252",
    ),
    pytest.param(
        "list.csv",
        {},
        _replace(b" Email ,name\r\nok@x.fr,a\r\n"),
        [
            "column 'email' not found; the file has ' Email ' which differs only by case/spaces",
            "(the file's columns: ' Email ', 'name')",
        ],
        id="key-column-case-and-spaces",
    ),
    pytest.param(
        "list.csv",
        {},
        _replace(b"emial,name\r\nok@x.fr,a\r\n"),
        ["column 'email' not found; the closest is 'emial'", "(the file's columns: 'emial'"],
        id="key-column-misspelt",
    ),
    pytest.param(
        "list.parquet",
        {},
        _replace(_parquet_bytes(pa.table({"mail": ["a@x.fr"], "id": [1]}))),
        ["column 'email' not found; the closest is 'mail'", "(the file's columns: 'mail', 'id')"],
        id="parquet-key-column-missing",
    ),
    pytest.param(
        "list.parquet",
        {},
        _replace(_parquet_bytes(pa.table({"email": [["a@x.fr"]], "name": ["a"]}))),
        ["column 'email' is of type list<", "which cannot be a key"],
        id="parquet-key-column-of-lists",
    ),
    pytest.param(
        "list.csv",
        {},
        _replace(b"email,name,email\r\nok@x.fr,a,b@x.fr\r\n"),
        ["column 'email' appears 2 times in the header"],
        id="duplicate-key-column",
    ),
    pytest.param(
        "list.csv",
        {},
        _replace(b"email,name\r\nok@x.fr,a\r\nb@x.fr\r\n"),
        ["Row #3", "Expected 2 columns, got 1"],
        id="ragged-row",
    ),
]


@contextmanager
def _folder(tmp_path: Path, as_nobody: bool) -> Iterator[Path]:
    """Where the case's files live: tmp_path, unless the run must act as nobody."""
    if not as_nobody or os.geteuid() != 0:
        yield tmp_path
        return
    # pytest's base temp folder is root-only, and the job loader makes paths absolute:
    # nobody could not even reach tmp_path. A folder directly in the (1777) temp dir can be.
    with tempfile.TemporaryDirectory(prefix="np6-sync-test-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        yield folder


@contextmanager
def _as_nobody_if_root(folder: Path, as_nobody: bool) -> Iterator[None]:
    """root reads any file: to meet a mode-0 source, the run acts as nobody, who owns the
    job's folder and state but is denied the source like any owner of a mode-0 file."""
    if not as_nobody or os.geteuid() != 0:
        yield
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, 65534, 65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.parametrize(("name", "source", "spoil", "phrases"), BAD_INPUTS)
def test_a_bad_file_stops_the_run_and_changes_nothing(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    name: str,
    source: dict[str, str],
    spoil: Spoil,
    phrases: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    as_nobody = spoil is _unreadable
    with _folder(tmp_path, as_nobody) as folder:
        monkeypatch.chdir(folder)  # a working directory nobody may enter, without settings
        job = make_job(folder, source={"path": name, **source})
        path = folder / name
        _write_good(path, source.get("encoding", "utf-8"))
        first = cli("run", job)
        assert first.code == 0, first.out + first.err
        assert emulator.members(SEGMENT) == set(GOOD)
        state = state_snapshot(folder / "state")
        assert "list.parquet" in state
        emulator.reset_calls()

        spoil(path)
        with _as_nobody_if_root(folder, as_nobody):
            result = cli("run", job)

        output = result.out + result.err
        assert result.code == 2, output
        assert f"list: error: {path}: " in output
        for phrase in phrases:
            assert phrase in output
        assert emulator.calls == []
        assert state_snapshot(folder / "state") == state
        assert emulator.members(SEGMENT) == set(GOOD)


# --- 2. a mostly broken file: refused by the rejected-rows safeguard ----------------------


@pytest.mark.parametrize(
    ("rows", "refusal", "forced"),
    [
        pytest.param(
            # 6 of 20 rows have lost their email: 30% rejected, more than the 20% allowed.
            [*emails(0, 14), *[[" "]] * 6],
            "6 of 20 rows were rejected (30.0%), more than sync.max_rejected_ratio (20.0%)",
            {f"user{n}@example.com" for n in range(14)},
            id="mostly-rejected",
        ),
        pytest.param([], "the source has no rows", set(), id="header-only"),
    ],
)
def test_a_mostly_broken_file_is_refused_unless_forced(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    rows: list[list[str]],
    refusal: str,
    forced: set[str],
) -> None:
    job = make_job(tmp_path, sync={"max_rejected_ratio": 0.2})
    write_csv(tmp_path / "list.csv", emails(0, 20))
    assert cli("run", job).code == 0
    state = state_snapshot(tmp_path / "state")
    emulator.reset_calls()

    write_csv(tmp_path / "list.csv", rows)
    refused = cli("run", job, "--report-json", tmp_path / "report.json")

    assert refused.code == 3, refused.out + refused.err
    assert f"list: refused: {refusal}" in refused.out
    assert emulator.calls == []
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(20)}
    # The state is untouched; a rejects file is left to show what went wrong.
    after = state_snapshot(tmp_path / "state")
    rejects = after.pop("list.rejects.csv", b"")
    assert rejects.count(b'"empty email"') == len(rows) - len(forced)
    assert after == state
    report = json.loads((tmp_path / "report.json").read_text())["jobs"][0]
    assert (report["status"], report["exit_code"]) == ("refused", 3)
    assert report["refusals"] == [refusal]

    result = cli("run", job, "--force")

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == forced
    assert next(c.method for c in emulator.calls if c.method != "GET") == "DELETE"


# --- 3. dialects, encodings, compressions and Parquet types, as the segment sees them -----

FRENCH = ["élodie@exemple.fr", "€uro", "cœur", "l\u2019été"]
AWKWARD = ["a,b", 'say "hi"', "two\nlines", "crlf\r\nin", "semi;colon", "pi|pe"]
# A line end inside a key is a control character: parsed as one value, then rejected.
KEYABLE = [v for v in AWKWARD if "\n" not in v]
TOLERANT = {"max_rejected_ratio": 0.5}


def _pandas(frame: dict[str, Any]) -> bytes:
    sink = pa.BufferOutputStream()
    pd.DataFrame(frame).to_parquet(sink, index=False)
    return bytes(sink.getvalue().to_pybytes())


def _arrow(column: pa.Array) -> bytes:
    return _parquet_bytes(pa.table({"email": column, "name": [str(i) for i in range(len(column))]}))


MATRIX = [
    pytest.param(
        "list.csv",
        _csv_bytes(_named(EXACT + FRENCH), delimiter=";", encoding="cp1252"),
        {"delimiter": ";", "encoding": "cp1252"},
        {},
        EXACT + FRENCH,
        id="semicolon-cp1252-crlf",
    ),
    pytest.param(
        "list.tsv",
        _csv_bytes(_named(EXACT), delimiter="\t", lineterminator="\n"),
        {},
        {},
        EXACT,
        id="tab-tsv",
    ),
    pytest.param(
        "list.csv",
        _csv_bytes(_named(EXACT + AWKWARD), delimiter="|"),
        {"delimiter": "auto"},
        TOLERANT,
        EXACT + KEYABLE,
        id="pipe-auto",
    ),
    pytest.param(
        "list.csv",
        _csv_bytes([[v, "x, y; z"] for v in EXACT + AWKWARD], delimiter=";"),
        {"delimiter": "auto"},
        TOLERANT,
        EXACT + KEYABLE,
        id="semicolon-auto-commas-in-values",
    ),
    pytest.param(
        "list.csv",
        _csv_bytes(_named(AWKWARD + FRENCH)),
        {},
        TOLERANT,
        KEYABLE + FRENCH,
        id="quoted-fields",
    ),
    pytest.param(
        "list.csv",
        b"\xef\xbb\xbf" + _csv_bytes(_named(EXACT + FRENCH)),
        {},
        {},
        EXACT + FRENCH,
        id="utf8-bom",
    ),
    *[
        pytest.param(
            f"list.csv{suffix}",
            compress(_csv_bytes(_named(EXACT + AWKWARD)), suffix),
            {},
            TOLERANT,
            EXACT + KEYABLE,
            id=suffix.lstrip("."),
        )
        for suffix in (".gz", ".bz2", ".zst", ".zip")
    ],
    pytest.param(
        "list.parquet",
        _pandas({"email": EXACT + FRENCH}),
        {},
        {},
        EXACT + FRENCH,
        id="parquet-text",
    ),
    pytest.param(
        "list.parquet",
        _pandas({"email": [7, 123456789012, -1, 0]}),
        {},
        {},
        ["7", "123456789012", "-1", "0"],
        id="parquet-int",
    ),
    pytest.param(
        "list.parquet",
        _pandas({"email": pd.array([1, None, 123456789012], dtype="Int64")}),
        {},
        {"max_rejected_ratio": 0.5},
        ["1", "123456789012"],
        id="parquet-nullable-Int64",
    ),
    pytest.param(
        "list.parquet",
        _pandas({"email": [1.0, None, 123456789012.0]}),
        {},
        {"max_rejected_ratio": 0.5},
        ["1", "123456789012"],
        id="parquet-int-with-NaN-as-float",
    ),
    pytest.param(
        "list.parquet",
        _arrow(
            pa.array([decimal.Decimal(v) for v in ["12.30", "0.05", "100.00"]], pa.decimal128(6, 2))
        ),
        {},
        {},
        ["12.30", "0.05", "100.00"],
        id="parquet-decimal",
    ),
    pytest.param(
        "list.parquet",
        _arrow(pa.array([dt.date(2024, 1, 31), dt.date(1999, 12, 1)])),
        {},
        {},
        ["2024-01-31", "1999-12-01"],
        id="parquet-date",
    ),
    pytest.param(
        "list.parquet",
        _pandas({"email": pd.Categorical(["000123", "NA", "000123", "nan", "TRUE"])}),
        {},
        {},
        ["000123", "NA", "nan", "TRUE"],
        id="parquet-dictionary",
    ),
    pytest.param(
        "list.parquet",
        _arrow(pa.array([300, 7, 300]).dictionary_encode()),
        {},
        {},
        ["300", "7"],
        id="parquet-dictionary-of-ints",
    ),
]


@pytest.mark.parametrize(("name", "data", "source", "sync", "expected"), MATRIX)
def test_real_world_files_reach_the_segment_as_written(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    name: str,
    data: bytes,
    source: dict[str, str],
    sync: dict[str, float],
    expected: list[str],
) -> None:
    (tmp_path / name).write_bytes(data)
    job = make_job(tmp_path, source={"path": name, **source}, sync=sync)

    result = cli("run", job)

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == set(expected)


def test_two_key_columns_from_parquet_types(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    frame = {
        "customer_id": pd.array([123, 4, None], dtype="Int64"),
        "since": [dt.date(2024, 1, 31), dt.date(1999, 12, 1), dt.date(2000, 1, 1)],
        "segment": pd.Categorical(["NA", "000123", "NA"]),
    }
    (tmp_path / "list.parquet").write_bytes(_pandas(frame))
    job = make_job(
        tmp_path,
        source={"path": "list.parquet"},
        targets={"columns": ["segment", "customer_id", "since"], "separator": "|"},
        sync={"max_rejected_ratio": 0.5},
    )

    result = cli("run", job)

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == {"NA|123|2024-01-31", "000123|4|1999-12-01"}
    assert "rejected rows: 1 missing customer_id" in result.out


# --- 4. transforms ------------------------------------------------------------------------


def test_digits_and_nfkc_transforms(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    rows = [
        ["+33 6 12-34-56-78", "ﬁne"],  # the ligature ﬁ is "fi" in NFKC
        ["\uff10\uff16 \uff11\uff12 \uff13\uff14", "\uff23\uff41\uff46\u00e9"],  # full-width
        ["(0)1.23", "e\u0301t\u00e9"],  # a combining accent is composed
        ["n/a", "x"],  # no digit at all: empty, rejected
    ]
    write_csv(tmp_path / "list.csv", rows, header=["phone", "ref"])
    job = make_job(
        tmp_path,
        targets={
            "columns": ["phone", "ref"],
            "separator": "#",
            "transforms": {"phone": ["nfkc", "digits"], "ref": ["nfkc", "upper"]},
        },
        sync={"max_rejected_ratio": 0.5},
    )

    result = cli("run", job)

    assert result.code == 0, result.out + result.err
    # Full-width digits count once NFKC has made them ASCII: "digits" keeps 0-9 only.
    assert emulator.members(SEGMENT) == {"33612345678#FINE", "061234#CAFÉ", "0123#\u00c9T\u00c9"}
    assert "rejected rows: 1 empty phone" in result.out


# --- 5. the rejects file and the report ---------------------------------------------------


def test_rejected_rows_are_listed_with_spreadsheet_row_numbers(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    rows = [
        ["a@x.fr", "1", "note"],  # row 2
        ["", "2", "no email"],  # row 3
        ["b@x.fr", "3", "two\nlines"],  # row 4, over two lines of the file
        ["   ", "4", "spaces"],  # row 5: empty once stripped; the raw value is kept
        ["c@x.fr", "", "no id"],  # row 6
        ["a@x.fr", "1", "duplicate"],  # row 7
        *[[f"u{i}@x.fr", str(i), ""] for i in range(10, 24)],
    ]
    write_csv(tmp_path / "list.csv", rows, header=["email", "id", "note"])
    job = make_job(
        tmp_path,
        targets={"columns": ["email", "id"], "separator": ":"},
        sync={"max_rejected_ratio": 0.2},
    )
    report_path = tmp_path / "report.json"

    result = cli("run", job, "--report-json", report_path)

    assert result.code == 0, result.out + result.err
    rejects_path = tmp_path / "state" / "list.rejects.csv"
    with rejects_path.open(newline="") as f:
        assert list(csv.reader(f)) == [
            ["row", "reason", "email", "id"],
            ["3", "empty email", "", "2"],
            ["5", "empty email", "   ", "4"],
            ["6", "empty id", "c@x.fr", ""],
        ]
    report = json.loads(report_path.read_text())["jobs"][0]
    assert report["rejects_by_reason"] == {"empty email": 2, "empty id": 1}
    assert report["rejects_file"] == str(rejects_path)
    assert (report["rows_read"], report["rows_rejected"], report["duplicate_keys"]) == (20, 3, 1)
    assert report["keys"] == 16 == len(emulator.members(SEGMENT))
    assert f"rejected rows: 2 empty email, 1 empty id (rows in {rejects_path})" in result.out

    # A run without rejects removes the old rejects file.
    write_csv(
        tmp_path / "list.csv", [r for r in rows if r[0].strip() and r[1]], ["email", "id", "note"]
    )
    assert cli("run", job, "--report-json", report_path).code == 0
    assert not rejects_path.exists()
    report = json.loads(report_path.read_text())["jobs"][0]
    assert (report["rejects_by_reason"], report["rejects_file"]) == ({}, None)


def test_key_columns_named_row_and_reason_keep_the_rejects_file_straight(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    # Regression: the rejects table was a dict keyed by name, so a key column named "row"
    # or "reason" replaced the row numbers or the reasons (and the counts by reason).
    rows = [["r1", "ok"], ["", "no row"], ["r3", ""], *[[f"r{i}", "ok"] for i in range(4, 10)]]
    write_csv(tmp_path / "list.csv", rows, header=["row", "reason"])
    job = make_job(
        tmp_path, targets={"columns": ["row", "reason"]}, sync={"max_rejected_ratio": 0.5}
    )
    report_path = tmp_path / "report.json"

    result = cli("run", job, "--report-json", report_path)

    assert result.code == 0, result.out + result.err
    with (tmp_path / "state" / "list.rejects.csv").open(newline="") as f:
        assert list(csv.reader(f)) == [
            ["row", "reason", "row", "reason"],
            ["3", "empty row", "", "no row"],
            ["4", "empty reason", "r3", ""],
        ]
    report = json.loads(report_path.read_text())["jobs"][0]
    assert report["rejects_by_reason"] == {"empty row": 1, "empty reason": 1}
    assert "r1ok" in emulator.members(SEGMENT)


# --- 6. validate --------------------------------------------------------------------------


def test_validate_names_the_problem_of_a_bad_source(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    (tmp_path / "list.csv").write_bytes(b"E-mail;name\r\na@x.fr;a\r\n")
    job = make_job(tmp_path)

    result = cli("validate", job)

    assert result.code == 2
    assert f"{job}: cannot run" in result.err
    assert f"{tmp_path / 'list.csv'}: column 'email' not found" in result.err
    assert "the header holds ';', not ','" in result.err
    assert emulator.calls == []
    assert not (tmp_path / "state").exists()


def test_validate_names_the_problems_of_a_bad_job_file(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 3))
    job = make_job(tmp_path, targets={"transforms": {"email": ["title"]}})

    result = cli("validate", job)

    assert result.code == 2
    assert "1 problem(s)" in result.err
    assert "targets.transforms.email[0]: Input should be 'strip', 'lower'" in result.err
    assert emulator.calls == []


def test_validate_counts_a_good_source(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    rows = [["000123", "a"], ["+33612345678", "b"], ["", "c"], ["000123", "d"], ["NA", ""]]
    rows += [[" ", "e"]]
    write_csv(tmp_path / "list.csv", rows, header=["id", "name"])
    job = make_job(tmp_path, targets={"columns": ["id"]})

    result = cli("validate", job, "--samples", "3")

    assert result.code == 0, result.err
    assert f"{job}: job list -> segment {SEGMENT}" in result.out
    for line in [
        "rows        6",
        "valid keys  3",
        "duplicates  1",
        "rejected    2",
        "  2 empty id",
        "sample      000123",
        "sample      +33612345678",
        "sample      NA",
    ]:
        assert line in result.out
    assert emulator.calls == []
    assert not (tmp_path / "state").exists()
