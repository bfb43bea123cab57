"""Read the key columns of a CSV or Parquet source into text, exactly as the file holds them.

The only reader of input files. Only the requested columns are read, and nothing is
re-typed: ``000123``, ``+33612345678``, ``NA`` or an empty cell come back as written.
Every problem with the file is a ``SourceError`` whose one-line message names the file.
Parsing lives in ``csv_source`` and ``parquet_source``; this module holds what both share:
the file checks, the header checks and the mapping of low-level errors.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from sync.errors import SourceError
from sync.read import csv_source, parquet_source
from sync.read.csv_header import DELIMITERS
from sync.read.csv_source import one_line
from sync.read.formats import Format, compression_of, expected_names, infer_format

# A header list longer than this is cut in messages: they must stay one readable line.
_MAX_NAMES_SHOWN = 30
# The header's names nearest a missing column, best first.
_CLOSEST = 3


@dataclass(frozen=True)
class SourceSpec:
    """The job's ``source:`` block, already validated by the job loader."""

    path: Path
    format: Format | None = None
    delimiter: str = ","
    encoding: str = "utf-8"


@dataclass(frozen=True)
class SourceTable:
    """The requested columns, in the requested order, all ``string`` or all ``large_string``.

    Row ``i`` of the table is spreadsheet row ``first_row + i`` (CSV blank lines between
    data rows are not rows, so they are not counted).
    """

    table: pa.Table
    first_row: int
    path: str


def read_source(spec: SourceSpec, columns: Sequence[str]) -> SourceTable:
    """Read ``columns`` of the source as text; SourceError names the file and the problem."""
    if not columns:
        raise ValueError("read_source needs at least one column")
    fmt = checked_format(spec)
    with mapped_errors(spec.path, fmt):
        if fmt == "csv":
            header = csv_source.read_header(spec.path, spec.delimiter, spec.encoding)
            check_columns(spec.path, header.names, columns, header.delimiter)
            table = csv_source.read_columns(spec.path, header, columns)
            first_row = header.first_row
        else:
            parquet = parquet_source.open_file(spec.path)
            check_columns(spec.path, parquet_source.column_names(parquet), columns, None)
            table = parquet_source.read_columns(spec.path, parquet, columns)
            first_row = 1
        table = validated_text(spec.path, table, first_row, fmt)
    return SourceTable(table=table, first_row=first_row, path=str(spec.path))


def read_header(spec: SourceSpec) -> list[str]:
    """The column names the file has, in file order."""
    fmt = checked_format(spec)
    with mapped_errors(spec.path, fmt):
        if fmt == "csv":
            return csv_source.read_header(spec.path, spec.delimiter, spec.encoding).names
        return parquet_source.column_names(parquet_source.open_file(spec.path))


def checked_format(spec: SourceSpec) -> Format:
    """Check the file is there and readable-looking, then settle its format."""
    path = spec.path
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"{path}: file not found") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied: cannot read the file") from None
    if stat.S_ISDIR(info.st_mode):
        raise SourceError(f"{path}: is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied: cannot read the file")
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    fmt = spec.format or infer_format(path.name)
    if fmt is None:
        raise SourceError(
            f"{path}: cannot tell the format from the file name (expected {expected_names()}); "
            "set source.format"
        )
    if fmt == "parquet" and compression_of(path.name):
        # Parquet compresses its pages itself, and its reader needs to seek in the file.
        raise SourceError(f"{path}: a compressed Parquet file cannot be read; decompress it")
    return fmt


@contextmanager
def mapped_errors(path: Path, fmt: Format) -> Iterator[None]:
    """Turn what the OS and pyarrow raise into one-line SourceErrors naming the file."""
    try:
        yield
    except SourceError:
        raise
    except PermissionError as exc:
        raise SourceError(f"{path}: permission denied: cannot read the file") from exc
    except FileNotFoundError as exc:
        raise SourceError(f"{path}: file not found") from exc
    except (OSError, pa.ArrowException) as exc:
        what = "as Parquet (damaged, truncated or not Parquet)" if fmt == "parquet" else "it"
        raise SourceError(f"{path}: cannot read {what}: {one_line(exc)}") from exc


def check_columns(
    path: Path, names: list[str], columns: Sequence[str], delimiter: str | None
) -> None:
    problems = []
    for column in columns:
        count = names.count(column)
        if count > 1:
            problems.append(f"column {column!r} appears {count} times in the header")
        elif count == 0:
            problems.append(_missing(column, names))
    if not problems:
        return
    shown = ", ".join(_name(n) for n in names[:_MAX_NAMES_SHOWN])
    if len(names) > _MAX_NAMES_SHOWN:
        shown += f", ... ({len(names) - _MAX_NAMES_SHOWN} more)"
    hint = _header_hint(names, delimiter)
    if any("@" in n for n in names):
        hint += "; the first line holds e-mail addresses: has the file a header line?"
    raise SourceError(f"{path}: {'; '.join(problems)} (the file's columns: {shown}){hint}")


def _missing(column: str, names: list[str]) -> str:
    def loose(name: str) -> str:
        return name.strip().casefold()

    # A near-identical header is reported, never matched: silently reading ' Email ' for
    # 'email' would hide a changed export that may also have changed its values.
    same = [n for n in names if loose(n) == loose(column)]
    if same:
        return (
            f"column {column!r} not found; the file has {same[0]!r} "
            "which differs only by case/spaces"
        )
    headers = [n for n in names if "@" not in n]  # not a first row of e-mail addresses
    close = difflib.get_close_matches(column, headers, n=_CLOSEST, cutoff=0.6)
    if len(close) > 1:
        return f"column {column!r} not found; the closest are {', '.join(map(repr, close))}"
    if close:
        return f"column {column!r} not found; the closest is {close[0]!r}"
    return f"column {column!r} not found"


def _name(name: str) -> str:
    # A file without a header line: its first row, personal data, is not to be shown.
    return "(an e-mail address)" if "@" in name else repr(name)


def _header_hint(names: list[str], delimiter: str | None) -> str:
    if names and names[0].startswith("\u00ef\u00bb\u00bf"):
        return "; the file starts with a UTF-8 byte-order mark: set source.encoding to utf-8"
    if delimiter is not None and len(names) == 1:
        others = [d for d in DELIMITERS if d != delimiter and d in names[0]]
        if others:
            return (
                f"; the header holds {others[0]!r}, not {delimiter!r}: "
                f"set source.delimiter to {others[0]!r} or 'auto'"
            )
    return ""


def validated_text(path: Path, table: pa.Table, first_row: int, fmt: Format) -> pa.Table:
    """Cast binary columns to text, naming the row of the first value that is not UTF-8;
    Parquet text columns are checked the same way.

    All columns come out of one type, so that they can be joined element-wise: string,
    or large_string when the file holds one (pandas writes its str columns so).
    """
    columns = []
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        declared_text = fmt == "parquet" and _is_text(column.type)
        if declared_text:
            # pyarrow checks no Parquet text column for UTF-8 as it reads: a value that is
            # not would be counted as a key, then fail as it is sent. Looked at as bytes, it
            # is checked as a binary column is (a few ms a million values).
            column = column.cast(_binary_type(column.type))
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            try:
                column = column.cast(_text_type(column.type))
            except pa.ArrowInvalid:
                raise _utf8_error(path, name, column, first_row, fmt, declared_text) from None
        columns.append(column)
    large = any(pa.types.is_large_string(c.type) for c in columns)
    kind = pa.large_string() if large else pa.string()
    return pa.table([c.cast(kind) for c in columns], names=table.column_names)


def _text_type(binary: pa.DataType) -> pa.DataType:
    return pa.large_string() if pa.types.is_large_binary(binary) else pa.string()


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _binary_type(text: pa.DataType) -> pa.DataType:
    return pa.large_binary() if pa.types.is_large_string(text) else pa.binary()


def _utf8_error(
    path: Path,
    name: str,
    column: pa.ChunkedArray,
    first_row: int,
    fmt: Format,
    declared_text: bool = False,
) -> SourceError:
    # Only on failure: skip the chunks that cast, then decode the bad one value by value.
    row = first_row
    for chunk in column.chunks:
        if _casts(chunk):
            row += len(chunk)
            continue
        for offset, value in enumerate(chunk.to_pylist()):
            try:
                (value or b"").decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = value[exc.start : exc.end].hex(" ")
                where = f"{path}: column {name!r}, row {row + offset}: byte(s) {bad} at offset"
                if declared_text:
                    return SourceError(
                        f"{where} {exc.start} of the value are not valid utf-8, though the "
                        "file declares the column as text: the file is damaged or its writer "
                        "stored bytes that are not text; correct the value where it comes from"
                    )
                if fmt == "parquet":
                    # source.encoding is for CSV: Parquet binary that is not UTF-8 is data.
                    return SourceError(
                        f"{where} {exc.start} of the value are not valid utf-8: the column "
                        "holds binary data, not text, and cannot be a key"
                    )
                return SourceError(
                    f"{where} {exc.start} of the value are not valid utf-8 ({exc.reason}); set "
                    "source.encoding to the file's encoding (often cp1252 or latin-1)"
                )
    return SourceError(f"{path}: column {name!r} holds text that is not valid utf-8")


def _casts(chunk: pa.Array) -> bool:
    try:
        chunk.cast(_text_type(chunk.type))
    except pa.ArrowInvalid:
        return False
    return True
