"""Parquet sources: read the key columns and write each value the way a person would.

``123`` and never ``123.0``, decimals with their exact digits, ISO 8601 dates and times,
``true``/``false``. A true Parquet null stays null: the key builder rejects it with a reason.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.errors import SourceError

# Whole floats below this are written through int64, which keeps every digit.
_INT64_LIMIT = 2.0**63


# What ISO 8601 text can hold: the years 1 to 9999, as seconds from 1970 (UTC).
_EPOCH = dt.datetime(1970, 1, 1)
_FIRST_SECOND = int((dt.datetime(1, 1, 1) - _EPOCH).total_seconds())
_END_SECOND = int((dt.datetime(9999, 12, 31) - _EPOCH).total_seconds()) + 86400
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}  # ns cannot leave 1677..2262
_TYPES = pa.types
_KEY_TYPES: tuple[Callable[[pa.DataType], bool], ...] = (
    *(_TYPES.is_string, _TYPES.is_large_string, _TYPES.is_binary, _TYPES.is_large_binary),
    *(_TYPES.is_null, _TYPES.is_boolean, _TYPES.is_integer, _TYPES.is_decimal),
    *(_TYPES.is_floating, _TYPES.is_date, _TYPES.is_timestamp, _TYPES.is_time),
)


def open_file(path: Path) -> pq.ParquetFile:
    with open(path, "rb") as file:
        file.seek(max(path.stat().st_size - 4, 0))
        encrypted_footer = file.read(4) == b"PARE"
    if encrypted_footer:
        raise _encrypted(path)
    with _encryption_named(path):
        # Spark's INT96 read as nanoseconds wraps past 2262; microseconds reach year 9999.
        return pq.ParquetFile(
            str(path), coerce_int96_timestamp_unit="us", page_checksum_verification=True
        )


def column_names(parquet: pq.ParquetFile) -> list[str]:
    return [str(name) for name in parquet.schema_arrow.names]


def read_columns(path: Path, parquet: pq.ParquetFile, columns: Sequence[str]) -> pa.Table:
    """Text columns, except binary ones, which the caller checks and names bad rows of."""
    wanted = list(dict.fromkeys(columns))
    for name in wanted:
        _check_key_type(path, name, parquet.schema_arrow.field(name).type)
    with _encryption_named(path):
        table = parquet.read(columns=wanted, use_threads=True)
        _check_int96(path, parquet, wanted)
    return pa.table(
        [_as_text(path, name, table.column(name)) for name in columns], names=list(columns)
    )


def _check_key_type(path: Path, name: str, kind: pa.DataType) -> None:
    """Refuse from the schema, before reading: a nested column can take long to read."""
    if _TYPES.is_dictionary(kind):
        _check_key_type(path, name, kind.value_type)
    elif _TYPES.is_fixed_size_binary(kind):
        raise SourceError(f"{path}: column {name!r} holds binary data ({kind}), not text")
    elif not any(check(kind) for check in _KEY_TYPES):
        raise SourceError(f"{path}: column {name!r} is of type {kind}, which cannot be a key")


def _check_int96(path: Path, parquet: pq.ParquetFile, columns: list[str]) -> None:
    """Read INT96 key columns again in seconds, which never overflow, to find the values
    that microseconds cannot hold either (they wrap around silently)."""
    schema = parquet.schema
    leaves = [schema.column(i) for i in range(len(schema))]
    int96 = [c.name for c in leaves if c.physical_type == "INT96" and c.name in columns]
    if not int96:
        return
    seconds = pq.ParquetFile(str(path), coerce_int96_timestamp_unit="s")
    table = seconds.read(columns=int96, use_threads=True)
    for name in int96:
        _check_range(path, name, table.column(name))


@contextmanager
def _encryption_named(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if "crypt" in str(exc):
            raise _encrypted(path) from None
        raise


def _encrypted(path: Path) -> SourceError:
    return SourceError(
        f"{path}: the Parquet file is encrypted, and np6-sync reads no encrypted Parquet: "
        "export the key columns without encryption"
    )


def _as_text(path: Path, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if _TYPES.is_string(kind) or _TYPES.is_large_string(kind):
        return column
    if _TYPES.is_binary(kind) or _TYPES.is_large_binary(kind):
        # Some writers store text without the UTF-8 annotation.
        return column
    if _TYPES.is_dictionary(kind):
        # pandas categoricals: write the values, whatever their type.
        return _as_text(path, name, column.cast(kind.value_type))
    if _TYPES.is_floating(kind):
        return _float_text(column)
    if _TYPES.is_date(kind) or _TYPES.is_timestamp(kind):
        _check_range(path, name, column)
    text = column.cast(pa.string())
    # Decimals keep their exact digits at the column's scale: 12.30 stays 12.30.
    return _iso_8601(text) if _TYPES.is_timestamp(kind) or _TYPES.is_time(kind) else text


def _check_range(path: Path, name: str, column: pa.ChunkedArray) -> None:
    """Arrow writes a date or time past the year 9999 as placeholder text, or with more
    than four digits of year: refuse it, naming its row."""
    kind = column.type
    if _TYPES.is_date32(kind):
        low, end, values = _FIRST_SECOND // 86400, _END_SECOND // 86400, column.cast(pa.int32())
    elif _TYPES.is_date64(kind) or kind.unit in _PER_SECOND:
        per_second = 1_000 if _TYPES.is_date64(kind) else _PER_SECOND[kind.unit]
        low, end = _FIRST_SECOND * per_second, _END_SECOND * per_second
        values = column.cast(pa.int64())
    else:
        return
    outside = pc.or_(pc.less(values, low), pc.greater_equal(values, end))
    rows = pc.indices_nonzero(pc.fill_null(outside, False))
    if len(rows):
        raise SourceError(
            f"{path}: column {name!r}, row {rows[0].as_py() + 1}: a date or time outside the "
            "years 1 to 9999, which cannot be written as ISO 8601 text"
        )


def _float_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole numbers without ``.0``: pandas writes an integer column holding NaN as floats."""
    if pa.types.is_float16(column.type):
        column = _float16_as_float64(column)
    whole = pc.and_(pc.equal(pc.floor(column), column), pc.less(pc.abs(column), _INT64_LIMIT))
    # Arrow writes 123456789012.0 as 1.23456789012e+11: ids need their digits.
    as_int = pc.cast(pc.if_else(whole, column, 0.0).cast(pa.float64()), pa.int64())
    text = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(column, pa.string()))
    # NaN is how pandas marks a missing number: it is no more a key than a null is.
    return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.string()), text)


def _float16_as_float64(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each float16 as the float64 of its own shortest text (10.305, not float32's
    10.3046875). A float16 has only 65536 values: each distinct one is worked out once."""
    bits = pa.chunked_array([chunk.view(pa.uint16()) for chunk in column.chunks], pa.uint16())
    distinct = pc.unique(bits).drop_null()
    texts = pa.array([_shortest_float16(b) for b in distinct.to_pylist()], pa.float64())
    return pc.take(texts, pc.index_in(bits, distinct))


def _shortest_float16(bits: int) -> float:
    exact: float = struct.unpack("<e", struct.pack("<H", bits))[0]
    if not math.isfinite(exact) or exact.is_integer():
        return exact  # whole numbers keep every digit, as ids need
    for digits in range(1, 6):
        # The nearest text of this length may miss while its neighbour reads back:
        # 0.015625 rounds to 0.01562, but it is 0.01563 that names the same float16.
        mantissa, exponent = f"{exact:.{digits - 1}e}".split("e")
        step = Decimal(1).scaleb(1 - digits)
        nearest = Decimal(mantissa)
        around = [m.scaleb(int(exponent)) for m in (nearest, nearest - step, nearest + step)]
        for candidate in sorted(around, key=lambda c: abs(c - Decimal(exact))):
            if _float16_bits(float(candidate)) == bits:
                return float(candidate)
    return exact


def _float16_bits(value: float) -> int | None:
    try:
        bits: int = struct.unpack("<H", struct.pack("<e", value))[0]
    except OverflowError:  # rounded past float16's largest value
        return None
    return bits


def _iso_8601(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Arrow's ``2024-01-31 12:00:00.500000+0100`` as ``2024-01-31T12:00:00.5+01:00``."""
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    text = pc.replace_substring_regex(text, r"\.0+(Z|[+-]\d{4})?$", r"\1")
    text = pc.replace_substring_regex(text, r"(\.\d*?[1-9])0+(Z|[+-]\d{4})?$", r"\1\2")
    return pc.replace_substring_regex(text, r"([+-]\d{2})(\d{2})$", r"\1:\2")
