"""Parquet sources: read the key columns and write each value the way a person would.

``123`` and never ``123.0``, decimals with their exact digits, ISO 8601 dates and times,
``true``/``false``. A true Parquet null stays null: the key builder rejects it with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.errors import SourceError

# Whole floats below this are written through int64, which keeps every digit.
_INT64_LIMIT = 2.0**63


def open_file(path: Path) -> pq.ParquetFile:
    return pq.ParquetFile(str(path))


def column_names(parquet: pq.ParquetFile) -> list[str]:
    return [str(name) for name in parquet.schema_arrow.names]


def read_columns(path: Path, parquet: pq.ParquetFile, columns: Sequence[str]) -> pa.Table:
    """Text columns, except binary ones, which the caller checks and names bad rows of."""
    table = parquet.read(columns=list(dict.fromkeys(columns)), use_threads=True)
    return pa.table(
        [_as_text(path, name, table.column(name)) for name in columns], names=list(columns)
    )


def _as_text(path: Path, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    types = pa.types
    if types.is_string(kind) or types.is_large_string(kind):
        return column
    if types.is_binary(kind) or types.is_large_binary(kind):
        # Some writers store text without the UTF-8 annotation.
        return column
    if types.is_dictionary(kind):
        # pandas categoricals: write the values, whatever their type.
        return _as_text(path, name, column.cast(kind.value_type))
    if types.is_null(kind):
        return column.cast(pa.string())
    if types.is_boolean(kind) or types.is_integer(kind) or types.is_date(kind):
        return column.cast(pa.string())
    if types.is_decimal(kind):
        # Exact digits at the column's scale: 12.30 stays 12.30 (Parquet has no negative scale).
        return column.cast(pa.string())
    if types.is_floating(kind):
        return _float_text(column)
    if types.is_timestamp(kind) or types.is_time(kind):
        return _iso_8601(column.cast(pa.string()))
    raise SourceError(f"{path}: column {name!r} is of type {kind}, which cannot be a key")


def _float_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole numbers without ``.0``: pandas writes an integer column holding NaN as floats."""
    if pa.types.is_float16(column.type):
        column = column.cast(pa.float32())
    whole = pc.and_(pc.equal(pc.floor(column), column), pc.less(pc.abs(column), _INT64_LIMIT))
    # Arrow writes 123456789012.0 as 1.23456789012e+11: ids need their digits.
    as_int = pc.cast(pc.if_else(whole, column, 0.0).cast(pa.float64()), pa.int64())
    text = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(column, pa.string()))
    # NaN is how pandas marks a missing number: it is no more a key than a null is.
    return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.string()), text)


def _iso_8601(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Arrow's ``2024-01-31 12:00:00.500000+0100`` as ``2024-01-31T12:00:00.5+01:00``."""
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    text = pc.replace_substring_regex(text, r"\.0+(Z|[+-]\d{4})?$", r"\1")
    text = pc.replace_substring_regex(text, r"(\.\d*?[1-9])0+(Z|[+-]\d{4})?$", r"\1\2")
    return pc.replace_substring_regex(text, r"([+-]\d{2})(\d{2})$", r"\1:\2")
