"""A source read in batches of rows, for a run that folds the keys as it reads them.

The batches are the very text ``sources.read_source`` gives, a million rows or so at a
time, with the spreadsheet row of their first row. Anything unusual (a parse error, bytes
that do not decode, a row longer than a block, Parquet key columns that are not text) raises
``Unstreamable`` before the batch that meets it: the caller then reads the file whole, the
way that names the problem best.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from sync.read import csv_source, parquet_source
from sync.read.csv_source import CsvHeader
from sync.read.formats import Format
from sync.read.sources import (
    SourceSpec,
    SourceTable,
    check_columns,
    checked_format,
    mapped_errors,
    validated_text,
)

BATCH_ROWS = 1_000_000
# pyarrow's streaming CSV reader parses a block at a time and reads ahead: at the default
# block (1 MB) it stays near 100 MiB whatever the file's size, and parses as fast as the
# whole-file reader; 16 MB blocks took 900 MiB (measured, PERFORMANCE-NOTES' machine).
BLOCK_BYTES = 1 << 20
_TEXT = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)


class Unstreamable(Exception):
    """This source is read whole instead."""


def read_batches(
    spec: SourceSpec, columns: Sequence[str], rows: int | None = None
) -> Generator[SourceTable, None, None]:
    """``columns`` of the source as text, ``rows`` rows or so at a time (``BATCH_ROWS``);
    at least one batch, empty for a file without rows."""
    rows = rows or BATCH_ROWS
    fmt = checked_format(spec)
    path = spec.path
    with mapped_errors(path, fmt):
        if fmt == "csv":
            header = csv_source.read_header(path, spec.delimiter, spec.encoding)
            check_columns(path, header.names, columns, header.delimiter)
            batches, first_row = _csv(path, header, columns), header.first_row
        else:
            batches, first_row = _parquet(path, columns, rows), 1
        pending: list[pa.RecordBatch] = []
        row, size, shown = 0, 0, False
        for batch in batches:
            pending.append(batch)
            size += batch.num_rows
            if size >= rows:
                yield _text(path, pending, columns, first_row + row, fmt)
                row, size, pending, shown = row + size, 0, [], True
        if pending or not shown:
            yield _text(path, pending, columns, first_row + row, fmt)


def _text(
    path: Path,
    batches: list[pa.RecordBatch],
    columns: Sequence[str],
    first_row: int,
    fmt: Format,
) -> SourceTable:
    if batches:
        table = pa.Table.from_batches(batches).select(list(columns))
    else:
        table = pa.table({c: pa.array([], pa.string()) for c in dict.fromkeys(columns)})
        table = table.select(list(columns))
    return SourceTable(validated_text(path, table, first_row, fmt), first_row, str(path))


def _csv(path: Path, header: CsvHeader, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    with csv_source.open_bytes(path) as stream:
        try:
            reader = pacsv.open_csv(stream, **csv_source.options(header, columns, BLOCK_BYTES))
            yield from reader
        except (pa.ArrowInvalid, UnicodeDecodeError) as problem:
            raise Unstreamable(str(problem)) from problem


def _parquet(path: Path, columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
    parquet = parquet_source.open_file(path)
    check_columns(path, parquet_source.column_names(parquet), columns, None)
    wanted = list(dict.fromkeys(columns))
    schema = parquet.schema_arrow
    # Numbers, dates and the like are written as text by the whole read, which names the
    # row of a value it cannot write; such files are rare enough to be read whole.
    if not all(any(kind(schema.field(c).type) for kind in _TEXT) for c in wanted):
        raise Unstreamable("key columns that are not text")
    yield from parquet.iter_batches(batch_size=rows, columns=wanted, use_threads=True)
