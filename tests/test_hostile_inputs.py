"""Hostile and odd input files, end to end: the real command line against the emulator.

Every file is generated here. Where the bug was slowness, the run is a subprocess with a
time bound far above what the fixed code needs and far below what the bug took; no test
measures time itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, emails, make_job, state_snapshot, write_csv
from sync.emulator import Emulator

GOOD = [row[0] for row in emails(0, 20)]


def _run_bounded(args: list[str | Path], env: dict[str, str], seconds: float) -> Any:
    """The CLI as a subprocess that must end within ``seconds`` (TimeoutExpired fails)."""
    return subprocess.run(
        [sys.executable, "-m", "sync", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds,
    )


def _refused_untouched(
    tmp_path: Path, emulator: Emulator, result: Any, phrases: list[str], absent: list[str]
) -> None:
    output = result.out + result.err
    assert result.code == 2, output
    for phrase in phrases:
        assert phrase in output
    for phrase in absent:
        assert phrase not in output
    assert emulator.calls == []
    assert emulator.members(SEGMENT) == set()
    assert not (tmp_path / "state" / "list.parquet").exists()


# --- one suffix table ---------------------------------------------------------------------


def test_a_compressed_parquet_name_is_one_thing_to_the_job_and_the_reader(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    # The job loader took x.parquet.gz for Parquet, the reader for "cannot tell the format".
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"email": GOOD}), sink)
    (tmp_path / "list.parquet.gz").write_bytes(gzip.compress(sink.getvalue().to_pybytes()))
    job = make_job(tmp_path, source={"path": "list.parquet.gz"})

    result = cli("run", job)

    assert result.code == 2, result.out + result.err
    assert "a compressed Parquet file cannot be read; decompress it" in result.out + result.err
    assert "cannot tell the format" not in result.out + result.err
    assert emulator.calls == []


# --- the CSV header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "phrases"),
    [
        pytest.param(
            "list.csv",
            # 16 MB after a quote that never closes: the quadratic scan took minutes.
            b'email,"name\r\n' + b"a@x.fr,b\r\n" * 1_600_000,
            ["no end to the header line in the first 1 MB", "a quote that never closes"],
            id="unbalanced-quote-16MB",
        ),
        pytest.param(
            "list.csv.gz",
            # 4 KB on disk, 4 MB without a line end once inflated: took 25 s.
            gzip.compress(b"x" * 4_000_000, 9),
            ["no end to the header line in the first 1 MB", "not a CSV file?"],
            id="gzip-bomb-without-newline",
        ),
    ],
)
def test_a_header_without_end_is_refused_fast(
    tmp_path: Path, emulator: Emulator, env: dict[str, str], name: str, data: bytes, phrases: Any
) -> None:
    (tmp_path / name).write_bytes(data)
    job = make_job(tmp_path, source={"path": name})

    result = _run_bounded(["run", job], env, seconds=30)

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    for phrase in phrases:
        assert phrase in output
    assert emulator.calls == []


def test_a_wide_header_under_the_bound_is_read(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    header = [f"column_{i:06d}" for i in range(40_000)] + ["email"]  # 560 KB
    write_csv(tmp_path / "list.csv", [["x"] * 40_000 + [e] for e in GOOD], header)

    result = cli("run", make_job(tmp_path))

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == set(GOOD)


def test_blank_lines_before_the_header_count_in_row_numbers(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    # Spreadsheet rows: 1-2 blank, 3 header, 4 a row, 5 an empty email, 6 a short row.
    (tmp_path / "list.csv").write_bytes(b"\r\n\r\nemail,name\r\na@x.fr,1\r\n ,2\r\nb@x.fr\r\n")
    job = make_job(tmp_path, sync={"max_rejected_ratio": 1.0})

    ragged = cli("run", job)

    assert ragged.code == 2, ragged.out + ragged.err
    assert "Row #6: Expected 2 columns, got 1" in ragged.out + ragged.err

    (tmp_path / "list.csv").write_bytes(b"\r\n\r\nemail,name\r\na@x.fr,1\r\n ,2\r\n")
    assert cli("run", job).code == 0
    with (tmp_path / "state" / "list.rejects.csv").open(newline="") as f:
        assert list(csv.reader(f))[1:] == [["5", "empty email", " "]]


def test_a_utf16_file_read_as_utf8_names_the_encoding(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    (tmp_path / "list.csv").write_bytes("email\r\na@x.fr\r\n".encode("utf-16"))
    job = make_job(tmp_path)

    result = cli("run", job)

    assert result.code == 2, result.out + result.err
    assert "UTF-16 byte-order mark: set source.encoding: utf-16" in result.out + result.err
    assert cli("run", make_job(tmp_path, source={"encoding": "utf-16"})).code == 0
    assert emulator.members(SEGMENT) == {"a@x.fr"}


# --- long rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("megabytes", [pytest.param(3, id="3MB"), pytest.param(65, id="65MB")])
def test_a_long_row_anywhere_is_read(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], megabytes: int
) -> None:
    with (tmp_path / "list.csv").open("w") as f:
        f.write("email,note\n")
        f.writelines(f"{email},short\n" for email in GOOD[:10])
        f.write(f'long@x.fr,"{"x" * (megabytes << 20)}"\n')
        f.writelines(f"{email},short\n" for email in GOOD[10:])

    result = cli("run", make_job(tmp_path))

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == {*GOOD, "long@x.fr"}


# --- invisible characters in keys ---------------------------------------------------------

INVISIBLE = {
    "nul\x00@x.fr": "control character in email",
    "esc\x1b@x.fr": "control character in email",
    "tab\tin@x.fr": "control character in email",
    "c1\x85@x.fr": "control character in email",
    "zw\u200bsp@x.fr": "zero-width character in email",
    "zwnj\u200c@x.fr": "zero-width character in email",
    "zwj\u200d@x.fr": "zero-width character in email",
    "wj\u2060@x.fr": "zero-width character in email",
    "bom\ufeff@x.fr": "zero-width character in email",
}


def test_keys_with_control_or_zero_width_characters_are_rejected(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    write_csv(tmp_path / "list.csv", [[v] for v in [*GOOD, *INVISIBLE]])

    # 9 of 29 rows: more than the default 5% of rejects, like any other reject.
    refused = cli("run", make_job(tmp_path))

    assert refused.code == 3, refused.out + refused.err
    assert "9 of 29 rows were rejected" in refused.out
    assert emulator.calls == []

    result = cli("run", make_job(tmp_path, sync={"max_rejected_ratio": 0.5}))

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == set(GOOD)
    with (tmp_path / "state" / "list.rejects.csv").open(newline="", encoding="utf-8") as f:
        listed = {row[2]: row[1] for row in list(csv.reader(f))[1:]}
    assert listed == INVISIBLE
    assert "rejected rows: 4 control character in email, 5 zero-width character in email" in (
        result.out
    )


def test_remove_zero_width_cleans_keys_a_job_asks_it_for(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    write_csv(tmp_path / "list.csv", [[v] for v in [*GOOD, *INVISIBLE]])
    transforms = {"email": ["remove_zero_width", "strip"]}
    job = make_job(tmp_path, targets={"transforms": transforms}, sync={"max_rejected_ratio": 0.5})

    result = cli("run", job)

    assert result.code == 0, result.out + result.err
    cleaned = {"zwsp@x.fr", "zwnj@x.fr", "zwj@x.fr", "wj@x.fr", "bom@x.fr"}
    assert emulator.members(SEGMENT) == set(GOOD) | cleaned
    assert "rejected rows: 4 control character in email" in result.out


# --- Parquet ------------------------------------------------------------------------------


def _parquet(tmp_path: Path, column: pa.Array, **options: Any) -> Path:
    path = tmp_path / "list.parquet"
    names = [f"n{i}" for i in range(len(column))]
    pq.write_table(pa.table({"email": column, "name": names}), path, **options)
    return path


def _int96(tmp_path: Path, values: list[dt.datetime]) -> Path:
    column = pa.array(values, pa.timestamp("us"))
    options = {"use_dictionary": False, "compression": "none"}
    return _parquet(tmp_path, column, use_deprecated_int96_timestamps=True, **options)


def _julian(when: dt.datetime) -> bytes:
    """The 12 bytes of an INT96 timestamp: nanoseconds of the day, then the Julian day."""
    nanos = (when - when.replace(hour=0, minute=0, second=0)).total_seconds() * 10**9
    return struct.pack("<qI", int(nanos), when.toordinal() + 1_721_425)


def test_int96_timestamps_reach_the_year_9999(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    last = dt.datetime(9999, 12, 31, 23, 59, 59)
    _int96(tmp_path, [last, dt.datetime(2024, 1, 31, 12, 0, 0, 500000), dt.datetime(1, 1, 1)])
    job = make_job(tmp_path, source={"path": "list.parquet"})

    result = cli("run", job)

    assert result.code == 0, result.out + result.err
    expected = {"9999-12-31T23:59:59", "2024-01-31T12:00:00.5", "0001-01-01T00:00:00"}
    assert emulator.members(SEGMENT) == expected


@pytest.mark.parametrize(
    "days",
    [
        pytest.param(3_000_000, id="year-10237"),
        # Past what microseconds hold: read so, the value wraps around to another date.
        pytest.param(150_000_000, id="year-412700-wraps"),
    ],
)
def test_an_int96_timestamp_past_9999_is_refused_with_its_row(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], days: int
) -> None:
    when = dt.datetime(2024, 1, 31, 12, 0, 0)
    path = _int96(tmp_path, [dt.datetime(2000, 1, 1), when])
    data = path.read_bytes()
    assert data.count(_julian(when)) == 1
    nanos, day = struct.unpack("<qI", _julian(when))
    path.write_bytes(data.replace(_julian(when), struct.pack("<qI", nanos, day + days)))
    job = make_job(tmp_path, source={"path": "list.parquet"})

    result = cli("run", job)

    phrases = ["column 'email', row 2: a date or time outside the years 1 to 9999"]
    _refused_untouched(tmp_path, emulator, result, phrases, ["value out of range"])


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(
            pa.array([0, 20_000 * 366 * 86400], pa.int64()).cast(pa.timestamp("s")), id="ts-s"
        ),
        pytest.param(pa.array([0, -(10**9)], pa.int32()).view(pa.date32()), id="date32"),
        pytest.param(pa.array([0, 10**15], pa.int64()).view(pa.date64()), id="date64"),
    ],
)
def test_dates_arrow_cannot_write_are_refused_with_their_row(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], column: pa.Array
) -> None:
    _parquet(tmp_path, column)
    job = make_job(tmp_path, source={"path": "list.parquet"})

    result = cli("run", job)

    phrases = ["column 'email', row 2: a date or time outside the years 1 to 9999"]
    _refused_untouched(tmp_path, emulator, result, phrases, ["value out of range"])


def test_float16_values_are_written_in_their_own_shortest_text(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    import numpy as np

    values = np.array([10.305, 0.1, 3.14159, 65504, 1.5, -2.0], dtype=np.float16)
    _parquet(tmp_path, pa.array(values))

    result = cli("run", make_job(tmp_path, source={"path": "list.parquet"}))

    assert result.code == 0, result.out + result.err
    assert emulator.members(SEGMENT) == {"10.305", "0.1", "3.14", "65504", "1.5", "-2"}


def test_a_page_whose_checksum_fails_is_a_damaged_file(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    path = _parquet(
        tmp_path, pa.array(GOOD), write_page_checksum=True, compression="none", use_dictionary=False
    )
    data = path.read_bytes()
    assert data.count(b"user7@") == 1
    path.write_bytes(data.replace(b"user7@", b"usex7@"))  # same length, other bytes

    result = cli("run", make_job(tmp_path, source={"path": "list.parquet"}))

    phrases = ["cannot read as Parquet (damaged", "CRC checksum verification failed"]
    _refused_untouched(tmp_path, emulator, result, phrases, [])


def test_a_binary_key_column_is_called_binary(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any]
) -> None:
    # Geometry as WKB: a point's bytes are not text.
    point = struct.pack("<BIdd", 1, 1, 2.35, 48.85)
    _parquet(tmp_path, pa.array([b"ok@x.fr", point], pa.binary()))

    result = cli("run", make_job(tmp_path, source={"path": "list.parquet"}))

    phrases = ["column 'email', row 2", "holds binary data, not text"]
    _refused_untouched(tmp_path, emulator, result, phrases, ["source.encoding"])


def _encrypted(tmp_path: Path, plaintext_footer: bool) -> None:
    import base64

    import pyarrow.parquet.encryption as pe

    class Kms(pe.KmsClient):
        def __init__(self, config: Any) -> None:
            super().__init__()

        def wrap_key(self, key: bytes, master_key_identifier: str) -> bytes:
            return base64.b64encode(key)

        def unwrap_key(self, wrapped: bytes, master_key_identifier: str) -> bytes:
            return base64.b64decode(wrapped)

    config = pe.EncryptionConfiguration(
        footer_key="footer",
        column_keys={"columns": ["email"]},
        plaintext_footer=plaintext_footer,
        double_wrapping=False,
    )
    properties = pe.CryptoFactory(Kms).file_encryption_properties(pe.KmsConnectionConfig(), config)
    table = pa.table({"email": GOOD})
    path = tmp_path / "list.parquet"
    with pq.ParquetWriter(path, table.schema, encryption_properties=properties) as writer:
        writer.write_table(table)


@pytest.mark.parametrize("plaintext_footer", [False, True], ids=["footer", "columns-only"])
def test_an_encrypted_parquet_file_is_called_encrypted(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], plaintext_footer: bool
) -> None:
    _encrypted(tmp_path, plaintext_footer)

    result = cli("run", make_job(tmp_path, source={"path": "list.parquet"}))

    _refused_untouched(tmp_path, emulator, result, ["the Parquet file is encrypted"], ["damaged"])


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(pa.array([{"k": 1}] * 2000, pa.map_(pa.string(), pa.int64())), id="map"),
        pytest.param(pa.array([[f"u{i}@x.fr"] for i in range(2000)]), id="list"),
        pytest.param(pa.array([{"mail": f"u{i}@x.fr"} for i in range(2000)]), id="struct"),
    ],
)
def test_a_nested_key_column_is_refused_from_the_schema(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], column: pa.Array
) -> None:
    path = _parquet(
        tmp_path, column, write_page_checksum=True, compression="none", use_dictionary=False
    )
    # Spoil the key column's pages: a reader that read them would call the file damaged.
    data = bytearray(path.read_bytes())
    # The key column is written first, right after the 4-byte magic number.
    data[100:164] = bytes(b ^ 0x55 for b in data[100:164])
    path.write_bytes(bytes(data))

    result = cli("run", make_job(tmp_path, source={"path": "list.parquet"}))

    phrases = ["column 'email' is of type", "which cannot be a key"]
    _refused_untouched(tmp_path, emulator, result, phrases, ["damaged"])


# --- job files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name: deep\nsegment_id: " + "[" * 900 + "]" * 900 + "\n", id="flow"),
        pytest.param(
            "".join("  " * i + f"k{i}:\n" for i in range(900)) + "  " * 900 + "v\n", id="block"
        ),
    ],
)
def test_a_job_file_nested_900_deep_is_a_bad_job_file(
    tmp_path: Path, emulator: Emulator, env: dict[str, str], text: str
) -> None:
    (tmp_path / "deep.yaml").write_text(text)
    write_csv(tmp_path / "list.csv", emails(0, 20))
    good = make_job(tmp_path)

    # A real process: a RecursionError traceback would show on its stderr.
    result = _run_bounded(["run", tmp_path / "deep.yaml", good], env, seconds=60)

    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"{tmp_path / 'deep.yaml'}" in output
    assert "not valid YAML: nested too deeply to read" in output
    assert "Traceback" not in output
    assert "RecursionError" not in output
    # The other job of the run still ran.
    assert emulator.members(SEGMENT) == set(GOOD)
    assert "list.parquet" in state_snapshot(tmp_path / "state")
