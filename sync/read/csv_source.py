"""CSV sources: dialect, encoding and compression, read with pyarrow's multi-threaded parser.

The header is parsed here in Python from the first bytes of the file (to sniff the
delimiter, drop a byte-order mark and name columns in messages); the data goes through
``pyarrow.csv`` with every requested column typed as binary, so nothing is inferred,
trimmed or made null. ``sources`` turns the binary columns into text.
"""

from __future__ import annotations

import codecs
import csv
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.csv as pacsv

from sync.errors import SourceError

# What "auto" chooses among, in order of preference when the counts tie.
DELIMITERS = (",", ";", "\t", "|")
_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip"}
_CHUNK = 1 << 16
_ESCAPED = re.compile("[\udc80-\udcff]")
_SNIFF_RECORDS = 50
# A header record longer than this is taken for an unbalanced quote.
_MAX_HEADER_BYTES = 1 << 24


@dataclass(frozen=True)
class CsvHeader:
    names: list[str]
    delimiter: str
    codec: str  # Python's name for the encoding: "utf-8", "cp1252", ...
    first_row: int  # spreadsheet row of the first record after the header


def read_header(path: Path, delimiter: str, encoding: str) -> CsvHeader:
    codec = _codec(path, encoding)
    if delimiter != "auto" and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise SourceError(
            f"{path}: delimiter {delimiter!r} must be one character, not a quote or a line end"
        )
    scan_delimiters = "".join(DELIMITERS) if delimiter == "auto" else delimiter
    with open_bytes(path) as stream:
        raw = b""
        while True:
            chunk = stream.read(_CHUNK)
            raw += chunk
            at_eof = not chunk
            text = _decode_head(raw, codec, at_eof)
            records = _records(text, scan_delimiters, at_eof)
            if at_eof or any(record for record, _ in records):
                break
            if len(raw) > _MAX_HEADER_BYTES:
                raise SourceError(
                    f"{path}: no end to the header line in its first {len(raw)} bytes "
                    "(an unbalanced quote?)"
                )
    blank = 0
    while records and not records[0][0]:
        blank += 1
        records.pop(0)
    if not records:
        if text.strip("\r\n"):
            raise SourceError(f"{path}: the header line opens a quote that never closes")
        raise SourceError(f"{path}: the file has no header line")
    if _ESCAPED.search(records[0][0]):
        _raise_decode_error(path, raw, codec)
    if delimiter == "auto":
        delimiter = _sniff(records)
    try:
        names = next(csv.reader([records[0][0]], delimiter=delimiter))
    except csv.Error as exc:
        raise SourceError(f"{path}: cannot parse the header line: {exc}") from None
    return CsvHeader(names=names, delimiter=delimiter, codec=codec, first_row=2 + blank)


def read_columns(path: Path, header: CsvHeader, columns: Sequence[str]) -> pa.Table:
    """The requested columns as binary: the caller checks and names non-UTF-8 rows."""
    try:
        try:
            return _read(path, header, columns, use_threads=True)
        except pa.ArrowInvalid as exc:
            if "CSV parse error" not in str(exc):
                raise
            # pyarrow names the row of a parse error only when it reads on one thread.
            try:
                _read(path, header, columns, use_threads=False)
            except pa.ArrowInvalid as again:
                raise SourceError(f"{path}: {one_line(again)}") from None
            raise
    except UnicodeDecodeError:
        raise _decode_error(path, header.codec) from None


@contextmanager
def open_bytes(path: Path) -> Iterator[Any]:
    """The file's bytes, decompressed after its extension (.gz .bz2 .zst .zip)."""
    suffix = path.suffix.lower()
    if suffix in _CODECS:
        with pa.input_stream(str(path), compression=_CODECS[suffix]) as stream:
            yield stream
    elif suffix != ".zip":
        with pa.input_stream(str(path), compression=None) as stream:
            yield stream
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                member = _only_member(path, archive)
                try:
                    stream = archive.open(member)
                except (RuntimeError, NotImplementedError) as exc:
                    # zipfile's words for an encrypted member or an unknown compression.
                    raise SourceError(f"{path}: cannot open {member.filename!r}: {exc}") from None
                with stream:
                    yield stream
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise SourceError(f"{path}: damaged zip archive: {one_line(exc)}") from None


def _only_member(path: Path, archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    # macOS' Finder adds __MACOSX/ resource forks to every archive it makes: not data.
    members = [
        m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")
    ]
    if len(members) != 1:
        listed = ", ".join(m.filename for m in members[:20]) or "none"
        raise SourceError(
            f"{path}: a zip source must hold exactly one file; it holds {len(members)}: {listed}"
        )
    return members[0]


def _read(path: Path, header: CsvHeader, columns: Sequence[str], use_threads: bool) -> pa.Table:
    wanted = list(dict.fromkeys(columns))
    with open_bytes(path) as stream:
        table = pacsv.read_csv(
            stream,
            read_options=pacsv.ReadOptions(
                # utf8 is parsed natively (a BOM is skipped); other codecs are transcoded.
                encoding="utf8" if header.codec == "utf-8" else header.codec,
                use_threads=use_threads,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=header.delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.binary() for c in wanted},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    return table.select(list(columns))


def _codec(path: Path, encoding: str) -> str:
    try:
        name: str = codecs.lookup(encoding).name
    except LookupError:
        raise SourceError(f"{path}: unknown encoding {encoding!r}") from None
    # The BOM is dropped either way, so utf-8-sig is utf-8 here.
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


def _decode_head(raw: bytes, codec: str, final: bool) -> str:
    # Bytes that do not decode are kept as escapes: only the header must decode here,
    # the parser judges the key columns and the other columns do not matter.
    decoder = codecs.getincrementaldecoder(codec)("surrogateescape")
    text: str = decoder.decode(raw, final)
    return text.removeprefix("\ufeff")


def _raise_decode_error(path: Path, raw: bytes, codec: str) -> NoReturn:
    try:
        raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = codecs.decode(raw[: exc.start], codec, "replace").count("\n") + 1
        kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
        hint = f"; the file looks {kind}-compressed: name it after its compression" if kind else ""
        raise SourceError(_decode_message(path, codec, exc, exc.start, line) + hint) from None
    raise SourceError(f"{path}: the header line does not decode as {codec}")


def _decode_error(path: Path, codec: str) -> SourceError:
    """Find where a transcoded read failed: pyarrow's error only knows its own block."""
    decoder = codecs.getincrementaldecoder(codec)()
    offset, lines = 0, 0
    with open_bytes(path) as stream:
        while chunk := stream.read(1 << 20):
            pending = len(decoder.getstate()[0])
            try:
                lines += decoder.decode(chunk).count("\n")
            except UnicodeDecodeError as exc:
                lines += codecs.decode(exc.object[: exc.start], codec, "replace").count("\n")
                where = offset - pending + exc.start
                return SourceError(_decode_message(path, codec, exc, where, lines + 1))
            offset += len(chunk)
    return SourceError(f"{path}: the file does not decode as {codec}")


def _decode_message(path: Path, codec: str, exc: UnicodeDecodeError, offset: int, line: int) -> str:
    bad = exc.object[exc.start : exc.end].hex(" ")
    of = " of the decompressed data" if path.suffix.lower() in (*_CODECS, ".zip") else ""
    return (
        f"{path}: byte(s) {bad} at byte offset {offset}{of} (line {line}) cannot be decoded "
        f"as {codec} ({exc.reason}); set source.encoding to the file's encoding"
    )


def _records(text: str, delimiters: str, at_eof: bool) -> list[tuple[str, dict[str, int]]]:
    """The complete records at the start of ``text``, with their delimiter counts.

    Quote-aware like the parser: a quote opens a quoted field only at the start of a field,
    and line ends inside quotes do not end the record.
    """
    records: list[tuple[str, dict[str, int]]] = []
    counts = dict.fromkeys(delimiters, 0)
    start, i, n = 0, 0, len(text)
    in_quotes, field_start = False, True
    while i < n and len(records) < _SNIFF_RECORDS:
        c = text[i]
        if in_quotes:
            if c == '"':
                if text.startswith('"', i + 1):
                    i += 1
                else:
                    in_quotes = False
        elif c == '"' and field_start:
            in_quotes = True
        elif c in "\r\n":
            records.append((text[start:i], counts))
            counts = dict.fromkeys(delimiters, 0)
            if text.startswith("\r\n", i):
                i += 1
            start, field_start = i + 1, True
            i += 1
            continue
        elif c in counts:
            counts[c] += 1
        field_start = not in_quotes and c in delimiters
        i += 1
    # A record still inside quotes at the end of the file is unbalanced, not complete.
    if at_eof and start < n and not in_quotes and len(records) < _SNIFF_RECORDS:
        records.append((text[start:], counts))
    return records


def _sniff(records: list[tuple[str, dict[str, int]]]) -> str:
    """The candidate the header holds, preferring one every sampled record holds as often."""
    header = records[0][1]
    found = [d for d in DELIMITERS if header[d] > 0]
    if not found:
        return ","  # one column: any delimiter reads it the same
    rows = [counts for text, counts in records[1:] if text]
    steady = [d for d in found if all(r[d] == header[d] for r in rows)]
    return max(steady or found, key=lambda d: header[d])


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
