"""A DataFrame or an Arrow table as a source: its columns as text, as a Parquet file's.

Nullable integers give their digits (``1``, never ``1.0``), a float column's whole
numbers too; None, NaN and pd.NA are missing values (the key builder rejects them),
while the string ``"nan"`` is a value, as in a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from sync.errors import SourceError, UsageError
from sync.read import parquet_source, sources
from sync.read.sources import SourceTable

LABEL = "<DataFrame>"


def is_frame(value: object) -> bool:
    """A pandas or polars DataFrame, or an Arrow table (none imported to ask)."""
    module = type(value).__module__.split(".")[0]
    return isinstance(value, pa.Table) or (
        module in ("pandas", "polars") and type(value).__name__ == "DataFrame"
    )


def frame_source(frame: Any, columns: Sequence[str]) -> SourceTable:
    """``columns`` of the frame as text; SourceError names the column and the problem."""
    table = _arrow(frame)
    path = Path(LABEL)
    sources.check_columns(path, [str(n) for n in table.column_names], columns, None)
    text = []
    for name in dict.fromkeys(columns):
        column = table.column(name)
        parquet_source._check_key_type(path, name, column.type)
        text.append(parquet_source._as_text(path, name, column))
    table = pa.table(text, names=list(dict.fromkeys(columns)))
    return SourceTable(sources.validated_text(path, table, 1, "parquet"), 1, LABEL)


def _arrow(frame: Any) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    module = type(frame).__module__.split(".")[0]
    if module == "polars":
        import polars as pl

        # The oldest level gives large_string, not string_view, which the readers know.
        table: pa.Table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        return table
    if module == "pandas":
        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # An object column mixing numbers and strings, for instance.
            raise SourceError(f"{LABEL}: cannot read the DataFrame: {exc}") from None
    raise UsageError(
        "source must be a path, a pandas or polars DataFrame, or a pyarrow Table, "
        f"not {type(frame).__name__}"
    )
