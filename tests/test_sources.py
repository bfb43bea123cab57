from __future__ import annotations

import csv
import datetime as dt
import decimal
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import compress, csv_text, write, zip_bytes
from sync.errors import SourceError, UsageError
from sync.read.formats import infer_format
from sync.read.sources import SourceSpec, read_header, read_source

# Values that type inference or null detection would change: they must come back as written.
EXACT = ["000123", "+33612345678", "1e5", "NA", "null", "nan", "N/A", "TRUE", "", " spaced "]
EXACT += ["NULL", "None", "#N/A", "-", "1.0", "0x1F", "é"]
AWKWARD = ["a,b", 'say "hi"', "two\nlines", "crlf\r\nin", "lone\rcr", '"', '""', ",", "a;b|c\td"]


def _table(values: list[str], delimiter: str = ",", lineterminator: str = "\r\n") -> str:
    rows = [["email", "id"], *([v, str(i)] for i, v in enumerate(values))]
    return csv_text(rows, delimiter, lineterminator)


def _ids(values: list[str]) -> list[str]:
    return [str(i) for i in range(len(values))]


def _csv_cases() -> list[Any]:
    plain = _table(EXACT).encode()
    cases = [
        ("comma-lf", "data.csv", _table(EXACT, lineterminator="\n").encode(), {}, EXACT),
        ("comma-crlf", "data.csv", plain, {}, EXACT),
        ("semicolon", "data.csv", _table(EXACT, ";").encode(), {"delimiter": ";"}, EXACT),
        ("tab-tsv", "data.tsv", _table(EXACT, "\t").encode(), {"delimiter": "\t"}, EXACT),
        ("pipe-txt", "data.txt", _table(EXACT, "|").encode(), {"delimiter": "|"}, EXACT),
        ("quoted-fields", "data.csv", _table(AWKWARD).encode(), {}, AWKWARD),
        ("bom", "data.csv", b"\xef\xbb\xbf" + plain, {}, EXACT),
        ("bom-utf-8-sig", "data.csv", b"\xef\xbb\xbf" + plain, {"encoding": "utf-8-sig"}, EXACT),
        ("no-final-newline", "data.csv", plain.rstrip(b"\r\n"), {}, EXACT),
        ("format-given", "data.dat", plain, {"format": "csv"}, EXACT),
        ("upper-case-name", "DATA.CSV.GZ", plain, {}, EXACT),
    ]
    for delimiter in [",", ";", "\t", "|"]:
        data = _table(AWKWARD + EXACT, delimiter).encode()
        name = f"auto-{delimiter!r}"
        cases.append((name, "data.csv", data, {"delimiter": "auto"}, AWKWARD + EXACT))
    for suffix in [".gz", ".bz2", ".zst", ".zip"]:
        cases.append((suffix, f"data.csv{suffix}", _table(AWKWARD).encode(), {}, AWKWARD))
    french = ["é", "€uro", "cœur", "l\u2019été", "naïve", "ß"]
    for encoding in ["cp1252", "latin-1", "utf-16"]:
        values = [v for v in french if _encodable(v, encoding)]
        data = _table(values).encode(encoding)
        cases.append((encoding, "data.csv", data, {"encoding": encoding}, values))
    return [
        pytest.param(name, data, kwargs, values, id=case)
        for case, name, data, kwargs, values in cases
    ]


def _encodable(value: str, encoding: str) -> bool:
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize(("name", "data", "kwargs", "values"), _csv_cases())
def test_csv_values_come_back_exactly_as_written(
    tmp_path: Path, name: str, data: bytes, kwargs: dict[str, Any], values: list[str]
) -> None:
    path = write(tmp_path / name, data)

    source = read_source(SourceSpec(path, **kwargs), ["email", "id"])

    assert source.table.to_pydict() == {"email": values, "id": _ids(values)}
    assert all(t in (pa.string(), pa.large_string()) for t in source.table.schema.types)
    assert source.first_row == 2
    assert source.path == str(path)


def test_csv_columns_come_in_the_requested_order(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", csv_text([["a", "b", "c"], ["1", "2", "3"]]).encode())

    source = read_source(SourceSpec(path), ["c", "a"])

    assert source.table.column_names == ["c", "a"]
    assert source.table.to_pydict() == {"c": ["3"], "a": ["1"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('email\n""\nx\n', ["", "x"], id="one-column-empty-value"),
        pytest.param("email,id\n\na,1\n\n\nb,2\n\n", ["a", "b"], id="blank-lines-are-not-rows"),
        pytest.param("email,id\n  ,1\n", ["  "], id="whitespace-kept"),
        pytest.param('email,id\n"a"x,1\nb"c,2\n', ["ax", 'b"c'], id="stray-quotes-as-parsers-do"),
        pytest.param('"e,m\nail",id\na,1\n', None, id="quoted-header-name"),
        pytest.param("email,id\n", [], id="header-only"),
    ],
)
def test_csv_edge_cases(tmp_path: Path, text: str, expected: list[str] | None) -> None:
    path = write(tmp_path / "data.csv", text.encode())
    column = read_header(SourceSpec(path))[0]

    source = read_source(SourceSpec(path), [column])

    assert source.table.column(column).to_pylist() == (expected if expected is not None else ["a"])
    assert source.table.schema.field(column).type == pa.string()


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        pytest.param("email;name\nx;Doe, John\ny;Roe, Jane\n", ";", id="header-decides"),
        pytest.param("id;note, more\n1;x\n2;y\n", ";", id="steady-count-wins"),
        pytest.param("a,b;c\n1,2;3\n", ",", id="tie-prefers-comma"),
        pytest.param('"a|b"\t"c"\n1\t2\n', "\t", id="outside-quotes-only"),
        pytest.param("email\nx\n", ",", id="one-column"),
    ],
)
def test_auto_delimiter(tmp_path: Path, text: str, delimiter: str) -> None:
    path = write(tmp_path / "data.csv", text.encode())
    names = read_header(SourceSpec(path, delimiter="auto"))

    assert names == next(csv.reader([text.splitlines()[0]], delimiter=delimiter))


def test_csv_rows_across_many_blocks(tmp_path: Path) -> None:
    # More than pyarrow's 1 MiB block, so threads split the file, with line ends in values.
    values = [f"{i:06d}" if i % 7 else f"multi\nline {i}" for i in range(60_000)]
    data = _table(values).encode()
    for name in ["big.csv", "big.csv.gz"]:
        source = read_source(SourceSpec(write(tmp_path / name, data)), ["email", "id"])
        assert source.table.to_pydict() == {"email": values, "id": _ids(values)}


def test_first_row_counts_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", b"\r\n\r\nemail\r\na\r\n")

    assert read_source(SourceSpec(path), ["email"]).first_row == 4


def test_only_the_key_columns_are_decoded(tmp_path: Path) -> None:
    # A cp1252 comment column does not stop a utf-8 read of the keys.
    path = write(tmp_path / "data.csv", "email,comment\na@b.fr,été\n".encode("cp1252"))

    assert read_source(SourceSpec(path), ["email"]).table.to_pydict() == {"email": ["a@b.fr"]}


def test_read_header(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "data.csv", b"\xef\xbb\xbf email ;Id;x\r\n1;2;3\r\n")
    parquet_path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"b": ["1"], "a": ["2"]}), parquet_path)

    assert read_header(SourceSpec(csv_path, delimiter="auto")) == [" email ", "Id", "x"]
    assert read_header(SourceSpec(parquet_path)) == ["b", "a"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.tsv.zst", "csv"),
        ("a.txt.zip", "csv"),
        ("a.csv.bz2", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.parquet.gz", "parquet"),
        ("a.xlsx", None),
        ("csv", None),
    ],
)
def test_infer_format(name: str, expected: str | None) -> None:
    assert infer_format(name) == expected


# --- Parquet ---------------------------------------------------------------------------

T = dt.datetime(2024, 1, 31, 12, 0, 0)
T_HALF = dt.datetime(2024, 1, 31, 12, 0, 0, 500000)


def _arrow(array: pa.Array) -> Callable[[Path], None]:
    return lambda path: pq.write_table(pa.table({"k": array}), path)


def _pandas(series: pd.Series) -> Callable[[Path], None]:
    return lambda path: pd.DataFrame({"k": series}).to_parquet(path, index=False)


def _ints(kind: pa.DataType, low: int, high: int) -> Any:
    return pytest.param(
        _arrow(pa.array([low, 0, high, None], kind)), [str(low), "0", str(high), None], id=str(kind)
    )


PARQUET_CASES = [
    pytest.param(
        _arrow(pa.array(["000123", "NA", "", None, " x "])),
        ["000123", "NA", "", None, " x "],
        id="string",
    ),
    pytest.param(
        _arrow(pa.array(["+336", None], pa.large_string())), ["+336", None], id="large_string"
    ),
    pytest.param(
        _arrow(pa.array(["b", "a", "b", None]).dictionary_encode()),
        ["b", "a", "b", None],
        id="dictionary",
    ),
    pytest.param(
        _arrow(pa.array([7, 300, 7]).dictionary_encode()),
        ["7", "300", "7"],
        id="dictionary-of-ints",
    ),
    pytest.param(
        _pandas(pd.Series(pd.Categorical(["x", "y", "x"]))),
        ["x", "y", "x"],
        id="pandas-categorical",
    ),
    _ints(pa.int8(), -128, 127),
    _ints(pa.int16(), -32768, 32767),
    _ints(pa.int32(), -(2**31), 2**31 - 1),
    _ints(pa.int64(), -(2**63), 2**63 - 1),
    _ints(pa.uint8(), 0, 255),
    _ints(pa.uint16(), 0, 65535),
    _ints(pa.uint32(), 0, 2**32 - 1),
    _ints(pa.uint64(), 0, 2**64 - 1),
    pytest.param(
        _pandas(pd.Series([1, None, 123456789012], dtype="Int64")),
        ["1", None, "123456789012"],
        id="pandas-Int64-nulls",
    ),
    pytest.param(
        _pandas(pd.Series([123456789012, None, 7])),
        ["123456789012", None, "7"],
        id="pandas-int-with-NaN-is-float",
    ),
    pytest.param(
        _arrow(pa.array([1.5, -0.0, 2.0, 1e16, 0.1, float("nan"), None, float("inf"), 2.5e20])),
        ["1.5", "0", "2", "10000000000000000", "0.1", None, None, "inf", "2.5e+20"],
        id="float64",
    ),
    pytest.param(_arrow(pa.array([0.1, 3.0], pa.float32())), ["0.1", "3"], id="float32"),
    # From numpy's half floats: pyarrow before 17 builds float16 only from those.
    pytest.param(
        _arrow(pa.array(np.array([1.5, 2048.0], np.float16))), ["1.5", "2048"], id="float16"
    ),
    pytest.param(
        _arrow(
            pa.array(
                [decimal.Decimal(v) for v in ["12.30", "-0.05", "0.00"]] + [None],
                pa.decimal128(5, 2),
            )
        ),
        ["12.30", "-0.05", "0.00", None],
        id="decimal128",
    ),
    pytest.param(
        _arrow(
            pa.array([decimal.Decimal("123456789012345678901234567890.5")], pa.decimal256(40, 1))
        ),
        ["123456789012345678901234567890.5"],
        id="decimal256",
    ),
    pytest.param(_arrow(pa.array([dt.date(2024, 1, 31), None])), ["2024-01-31", None], id="date32"),
    pytest.param(
        _arrow(pa.array([dt.date(1999, 12, 1)], pa.date64())), ["1999-12-01"], id="date64"
    ),
    pytest.param(_arrow(pa.array([True, False, None])), ["true", "false", None], id="bool"),
    pytest.param(
        _arrow(pa.array([T, T_HALF, None], pa.timestamp("us"))),
        ["2024-01-31T12:00:00", "2024-01-31T12:00:00.5", None],
        id="timestamp-naive",
    ),
    pytest.param(
        _arrow(pa.array([T, T_HALF], pa.timestamp("ms", tz="UTC"))),
        ["2024-01-31T12:00:00Z", "2024-01-31T12:00:00.5Z"],
        id="timestamp-utc",
    ),
    pytest.param(
        _arrow(pa.array([T], pa.timestamp("ns", tz="Europe/Paris"))),
        ["2024-01-31T13:00:00+01:00"],
        id="timestamp-paris",
    ),
    pytest.param(
        _pandas(pd.Series([pd.Timestamp("2024-01-31 08:30")])),
        ["2024-01-31T08:30:00"],
        id="pandas-datetime",
    ),
    pytest.param(_arrow(pa.array([dt.time(12, 34, 56, 500000)])), ["12:34:56.5"], id="time"),
    pytest.param(_arrow(pa.nulls(2)), [None, None], id="all-null"),
    pytest.param(_arrow(pa.array([b"abc", "é".encode()])), ["abc", "é"], id="binary-holding-utf8"),
]


@pytest.mark.parametrize(("build", "expected"), PARQUET_CASES)
def test_parquet_values_are_written_as_a_person_would(
    tmp_path: Path, build: Callable[[Path], None], expected: list[str | None]
) -> None:
    path = tmp_path / "data.parquet"
    build(path)

    source = read_source(SourceSpec(path), ["k"])

    assert source.table.column("k").to_pylist() == expected
    assert source.table.schema.field("k").type in (pa.string(), pa.large_string())
    assert source.first_row == 1


def test_columns_share_one_text_type(tmp_path: Path) -> None:
    # pandas writes str columns as large_string (as string with pandas 2.2 and pyarrow 16);
    # keys are joined element-wise across columns, so the columns share one text type.
    path = tmp_path / "data.parquet"
    pd.DataFrame({"email": ["a@b.fr"], "id": [7]}).to_parquet(path, index=False)

    source = read_source(SourceSpec(path), ["email", "id"])

    email, number = source.table.schema.types
    assert email == number and email in (pa.string(), pa.large_string())

    assert source.table.to_pydict() == {"email": ["a@b.fr"], "id": ["7"]}


def test_parquet_many_row_groups_in_requested_order(tmp_path: Path) -> None:
    path = tmp_path / "data.pq"
    n = 10_000
    table = pa.table({"id": pa.array(range(n)), "email": [f"u{i}@x.fr" for i in range(n)]})
    pq.write_table(table, path, row_group_size=700)
    assert pq.ParquetFile(path).num_row_groups > 10

    source = read_source(SourceSpec(path), ["email", "id"])

    assert source.table.column_names == ["email", "id"]
    assert source.table.column("id").to_pylist() == [str(i) for i in range(n)]
    assert source.table.column("email").to_pylist() == [f"u{i}@x.fr" for i in range(n)]


# --- bad input: one line naming the file and the problem --------------------------------


def _file(name: str, data: bytes, **kwargs: Any) -> Callable[[Path], SourceSpec]:
    def make(tmp_path: Path) -> SourceSpec:
        return SourceSpec(write(tmp_path / name, data), **kwargs)

    return make


def _raw(name: str, data: bytes) -> Callable[[Path], SourceSpec]:
    def make(tmp_path: Path) -> SourceSpec:
        (tmp_path / name).write_bytes(data)
        return SourceSpec(tmp_path / name)

    return make


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"email": ["a@b.fr"] * 1000}), sink)
    return bytes(sink.getvalue().to_pybytes())


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zip_patched(flags: int = 0, method: int = 8) -> bytes:
    """A one-member zip whose headers claim encryption or an unknown compression method."""
    data = bytearray(compress(MANY, ".zip"))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flag_at
        data[at : at + 4] = flags.to_bytes(2, "little") + method.to_bytes(2, "little")
    return bytes(data)


def _zip_damaged() -> bytes:
    data = bytearray(compress(MANY, ".zip"))
    data[200:260] = b"\0" * 60
    return bytes(data)


def _directory(tmp_path: Path) -> SourceSpec:
    (tmp_path / "data.csv").mkdir()
    return SourceSpec(tmp_path / "data.csv")


OK_CSV = b"email,id\r\na@b.fr,1\r\n"
MANY = b"email,id\r\n" + b"".join(b"user%d@x.fr,%d\r\n" % (i, i) for i in range(5000))
GZ = compress(MANY, ".gz")
PARQUET = _parquet_bytes()
BAD_CASES = [
    pytest.param(lambda p: SourceSpec(p / "nope.csv"), ["file not found"], id="missing"),
    pytest.param(
        lambda p: SourceSpec(p / "nope" / "data.csv"), ["file not found"], id="missing-folder"
    ),
    pytest.param(_directory, ["is a directory"], id="directory"),
    pytest.param(_raw("data.csv", b""), ["empty (0 bytes)"], id="empty-csv"),
    pytest.param(_raw("data.parquet", b""), ["empty (0 bytes)"], id="empty-parquet"),
    pytest.param(
        _raw("data.csv.gz", compress(b"", ".gz")), ["no header line"], id="empty-after-gunzip"
    ),
    pytest.param(_raw("data.csv", b"\r\n\n\r\n"), ["no header line"], id="only-blank-lines"),
    pytest.param(
        _raw("data.parquet", PARQUET[: len(PARQUET) // 2]),
        ["Parquet", "magic bytes"],
        id="truncated-parquet",
    ),
    pytest.param(_raw("data.parquet", OK_CSV), ["Parquet"], id="csv-named-parquet"),
    pytest.param(
        _raw("data.parquet", PARQUET[:4] + b"\0" * 60 + PARQUET[64:]),
        ["Parquet"],
        id="corrupt-parquet",
    ),
    pytest.param(_raw("data.csv.gz", _half(GZ)), ["cannot read", "Truncated"], id="truncated-gzip"),
    pytest.param(
        _raw("data.csv.gz", b"\x1f\x8b" + b"junk" * 50), ["cannot read"], id="corrupt-gzip"
    ),
    pytest.param(_raw("data.csv.gz", OK_CSV), ["cannot read", "header"], id="not-gzip"),
    pytest.param(
        _raw("data.csv.bz2", _half(compress(MANY, ".bz2"))), ["cannot read"], id="truncated-bz2"
    ),
    pytest.param(
        _raw("data.csv.zst", _half(compress(MANY, ".zst"))), ["cannot read"], id="truncated-zst"
    ),
    pytest.param(
        _raw("data.xlsx", OK_CSV),
        ["cannot tell the format", "source.format"],
        id="unknown-extension",
    ),
    pytest.param(_raw("data.parquet.gz", GZ), ["compressed Parquet"], id="gzipped-parquet"),
    pytest.param(
        _raw("data.csv.zip", zip_bytes({"a.csv": OK_CSV, "b.csv": OK_CSV})),
        ["exactly one file", "holds 2: a.csv, b.csv"],
        id="zip-two-members",
    ),
    pytest.param(
        _raw("data.csv.zip", zip_bytes({"dir/": b""})),
        ["exactly one file", "holds 0"],
        id="zip-no-member",
    ),
    pytest.param(_raw("data.csv.zip", OK_CSV), ["damaged zip archive"], id="not-a-zip"),
    pytest.param(
        _raw("data.csv.zip", _zip_patched(flags=1)),
        ["cannot open 'data.csv'", "encrypted"],
        id="zip-encrypted",
    ),
    pytest.param(
        _raw("data.csv.zip", _zip_patched(method=99)),
        ["cannot open 'data.csv'", "compression"],
        id="zip-unknown-method",
    ),
    pytest.param(
        _raw("data.csv.zip", _zip_damaged()), ["damaged zip archive"], id="zip-damaged-data"
    ),
    pytest.param(
        _raw("data.csv", GZ),
        ["the file is gzip-compressed: name it data.csv.gz"],
        id="gzip-named-csv",
    ),
    pytest.param(
        _file("data.csv", b"email,id\r\na,1\r\n\xe9t\xe9,2\r\n"),
        ["column 'email', row 3", "e9", "not valid utf-8", "source.encoding"],
        id="not-utf8-key",
    ),
    pytest.param(
        _file("data.csv", b"em\xe9il,id\r\na,1\r\n"),
        ["e9 at byte offset 2", "(line 1)", "utf-8"],
        id="not-utf8-header",
    ),
    pytest.param(
        _file("data.csv", b"email,id\r\na,1\r\nb\x81,2\r\n", encoding="cp1252"),
        ["81 at byte offset 16", "(line 3)", "cp1252"],
        id="not-cp1252",
    ),
    pytest.param(
        _file("data.csv.gz", b"email,id\na,1\nb\x81,2\n", encoding="cp1252"),
        ["offset 14 of the decompressed data", "line 3"],
        id="not-cp1252-gzip",
    ),
    pytest.param(
        _file("data.csv", OK_CSV, encoding="klingon"),
        ["unknown encoding 'klingon'"],
        id="unknown-encoding",
    ),
    pytest.param(_file("data.csv", OK_CSV, delimiter=";;"), ["delimiter ';;'"], id="bad-delimiter"),
    pytest.param(
        _file("data.csv", b"email,id\r\na,1\r\nb\r\nc,3\r\n"),
        ["Row #3", "Expected 2 columns, got 1"],
        id="ragged-row",
    ),
    pytest.param(
        _file("data.csv", b'email,"id\r\na,1\r\n'),
        ["quote that never closes"],
        id="unbalanced-header-quote",
    ),
]


@pytest.mark.parametrize(("make", "phrases"), BAD_CASES)
def test_bad_input_is_one_line_naming_the_file(
    tmp_path: Path, make: Callable[[Path], SourceSpec], phrases: list[str]
) -> None:
    spec = make(tmp_path)

    with pytest.raises(SourceError) as caught:
        read_source(spec, ["email"])

    _assert_one_line(caught.value, spec, phrases)


def _assert_one_line(error: SourceError, spec: SourceSpec, phrases: list[str]) -> None:
    message = str(error)
    assert isinstance(error, UsageError)
    assert message.startswith(f"{spec.path}: ")
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message


@pytest.mark.parametrize(
    ("header", "columns", "phrases"),
    [
        pytest.param(
            " email ,id",
            ["Email"],
            ["column 'Email' not found; the file has ' email ' which differs only by case/spaces"],
            id="case-and-spaces",
        ),
        pytest.param(
            "email,id", ["emial"], ["'emial' not found; the closest is 'email'"], id="typo"
        ),
        pytest.param(
            "a,b",
            ["email", "id"],
            ["'email' not found", "'id' not found", "columns: 'a', 'b'"],
            id="several",
        ),
        pytest.param(
            "email;id",
            ["email"],
            ["the header holds ';'", "source.delimiter"],
            id="wrong-delimiter",
        ),
        pytest.param("email,id,email", ["email"], ["'email' appears 2 times"], id="duplicate"),
        pytest.param(
            ",".join(f"c{i}" for i in range(50)), ["x"], ["'c29', ... (20 more)"], id="long-header"
        ),
    ],
)
def test_missing_columns_are_named(
    tmp_path: Path, header: str, columns: list[str], phrases: list[str]
) -> None:
    spec = SourceSpec(write(tmp_path / "data.csv", f"{header}\r\n".encode()))

    with pytest.raises(SourceError) as caught:
        read_source(spec, columns)

    _assert_one_line(caught.value, spec, phrases)


def test_duplicate_header_names_not_read_are_no_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", b"email,,,note,note\r\na,,,x,y\r\n")

    assert read_source(SourceSpec(path), ["email"]).table.to_pydict() == {"email": ["a"]}


def test_bom_read_as_cp1252_is_explained(tmp_path: Path) -> None:
    spec = SourceSpec(write(tmp_path / "data.csv", b"\xef\xbb\xbf" + OK_CSV), encoding="cp1252")

    with pytest.raises(SourceError) as caught:
        read_source(spec, ["email"])

    _assert_one_line(caught.value, spec, ["'\u00ef\u00bb\u00bfemail'", "byte-order mark"])


def test_utf8_error_names_the_row_in_a_later_block(tmp_path: Path) -> None:
    rows = b"".join(b"user%d@x.fr,%d\r\n" % (i, i) for i in range(80_000))
    path = write(tmp_path / "data.csv", b"email,id\r\n" + rows + b"caf\xe9@x.fr,1\r\n")
    spec = SourceSpec(path)

    with pytest.raises(SourceError) as caught:
        read_source(spec, ["id", "email"])

    _assert_one_line(caught.value, spec, ["column 'email', row 80002", "e9 at offset 3"])


def test_parquet_missing_and_unusable_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"Email": ["a"], "tags": [["x"]]}), path)
    spec = SourceSpec(path)

    with pytest.raises(SourceError) as missing:
        read_source(spec, ["email"])
    with pytest.raises(SourceError) as unusable:
        read_source(spec, ["tags"])

    _assert_one_line(missing.value, spec, ["'email' not found", "'Email' which differs only"])
    _assert_one_line(unusable.value, spec, ["column 'tags' is of type list<", "cannot be a key"])


def test_every_float16_is_written_in_the_fewest_digits_that_read_back_to_it(
    tmp_path: Path,
) -> None:
    import numpy as np

    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"k": pa.array(values)}), path)

    texts = read_source(SourceSpec(path), ["k"]).table.column("k").to_pylist()

    for value, text in zip(values, texts, strict=True):
        if np.isnan(value):
            assert text is None
            continue
        assert np.float16(float(text)) == value, (value, text)
        if not float(value).is_integer():
            # numpy writes a float16 in the fewest digits that read back to it.
            assert _significant(text) <= _significant(str(value)), (value, text)


def _significant(text: str) -> int:
    return len(decimal.Decimal(text).normalize().as_tuple().digits)


def test_parquet_binary_that_is_not_utf8_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"k": pa.array([b"ok", b"ok", b"\xff"])}), path)
    spec = SourceSpec(path)

    with pytest.raises(SourceError) as caught:
        read_source(spec, ["k"])

    _assert_one_line(caught.value, spec, ["column 'k', row 3", "ff", "not valid utf-8"])
    # Parquet has no encoding to set: the advice is about the column, not source.encoding.
    assert "holds binary data, not text" in str(caught.value)
    assert "source.encoding" not in str(caught.value)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "data.csv").write_bytes(OK_CSV)
    (folder / "data.csv").chmod(0)
    if os.geteuid() != 0:
        _expect_permission_denied(folder / "data.csv")
        return
    # root reads any file: act as nobody for the read. A relative path, because nobody
    # cannot walk the root-only folders above tmp_path.
    folder.chmod(0o755)
    monkeypatch.chdir(folder)
    os.seteuid(65534)
    try:
        _expect_permission_denied(Path("data.csv"))
    finally:
        os.seteuid(0)


def _expect_permission_denied(path: Path) -> None:
    for read in (lambda spec: read_source(spec, ["email"]), read_header):
        with pytest.raises(SourceError) as caught:
            read(SourceSpec(path))
        _assert_one_line(caught.value, SourceSpec(path), ["permission denied"])


# --- what is written is what is read ----------------------------------------------------

WORDS = ["", " ", "NA", "null", "nan", "N/A", "TRUE", "000123", "+33612345678", "1e5", "None"]
WORDS += ['"', '""', ",", ";", "\t", "|", "\n", "\r\n", "\r", " lead", "trail "]
UTF8_CHARS = 'aZ0 ,;\t|"\n\réß€😀中\u2028\x85\x00\ufeff'
CP1252_CHARS = 'aZ0 ,;\t|"\n\réß€œ'


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, SourceSpec, list[str], dict[str, list[str]]]:
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    lineterminator = draw(st.sampled_from(["\r\n", "\n"]))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", "auto"]))
    suffix = draw(st.sampled_from([".csv", ".csv.gz"]))
    chars = CP1252_CHARS if encoding == "cp1252" else UTF8_CHARS
    words = [w for w in WORDS if _encodable(w, encoding)]
    if lineterminator == "\n":
        # Python's writer quotes a value holding "\r" only when "\r" is in its line
        # terminator; unquoted, a lone CR ends a record in CSV, so that output is malformed.
        chars = chars.replace("\r", "")
        words = [w for w in words if "\r" not in w]
    if delimiter == "auto":
        # "auto" trusts the header: names holding none of the candidates, and at least two
        # of them, or a one-column file is indistinguishable from one whose values hold ";".
        name = st.text("abcXYZ_ é0-", min_size=1, max_size=6)
        count = st.integers(2, 4)
    else:
        # A file starting with U+FEFF starts with a byte-order mark: it is dropped.
        name = st.text(chars.replace("\ufeff", ""), min_size=1, max_size=6)
        count = st.integers(1, 4)
    names = draw(st.lists(name, min_size=draw(count), max_size=4, unique=True))
    value = st.one_of(st.sampled_from(words), st.text(chars, max_size=8))
    rows = draw(st.lists(st.lists(value, min_size=len(names), max_size=len(names)), max_size=12))
    wanted = draw(st.permutations(names))[: draw(st.integers(1, len(names)))]
    text = csv_text([names, *rows], "," if delimiter == "auto" else delimiter, lineterminator)
    if delimiter == "auto":
        text = csv_text([names, *rows], draw(st.sampled_from(",;\t|")), lineterminator)
    spec_encoding = "utf-8" if encoding == "utf-8-sig" and draw(st.booleans()) else encoding
    expected = {c: [row[names.index(c)] for row in rows] for c in wanted}
    spec = SourceSpec(Path("."), delimiter=delimiter, encoding=spec_encoding)
    return text.encode(encoding), suffix, spec, wanted, expected


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(case=csv_files())
def test_csv_reads_back_what_python_csv_wrote(
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[bytes, str, SourceSpec, list[str], dict[str, list[str]]],
) -> None:
    data, suffix, spec, wanted, expected = case
    path = write(tmp_path_factory.mktemp("roundtrip") / f"data{suffix}", data)

    source = read_source(SourceSpec(path, delimiter=spec.delimiter, encoding=spec.encoding), wanted)

    assert source.table.to_pydict() == expected
