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
from sync.read.csv_header import DELIMITERS, RecordScanner, sniff
from sync.read.formats import compression_of

# How a file that is not text starts: what it is, and the suffix np6-sync reads it by.
_PACKED = (
    (re.compile(rb"PK(\x03\x04|\x05\x06)"), "a zip archive", ".zip"),
    (re.compile(rb"\x1f\x8b"), "gzip-compressed", ".gz"),
    (re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)"), "bzip2-compressed", ".bz2"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd-compressed", ".zst"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed", None),
    # A header could start with "PAR1"; Parquet's first page header is binary.
    (re.compile(rb"PAR1[^\t\n\r -~]"), "a Parquet file", None),
)
# Longest first: a UTF-32 little-endian mark starts with UTF-16's.
_BOMS = {b"\xff\xfe\x00\x00": "utf-32", b"\x00\x00\xfe\xff": "utf-32"}
_BOMS |= {b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}
_CHUNK = 1 << 16
_ESCAPED = re.compile("[\udc80-\udcff]")
_ROW = re.compile(r"Row #(\d+)")
_ROW_TEXT = re.compile(r"(columns?, got \d+): .*", re.DOTALL)
# pyarrow parses a block at a time and reads rows up to about twice its block size: the
# default block first (1 MB), larger ones only for a file whose rows need them.
_BLOCK_SIZES = (1 << 20, 1 << 24, 1 << 26)
BINARY = pa.binary()
# Real headers are a few KB; past this, the file is not a CSV or a quote never closes.
MAX_HEADER_BYTES = 1 << 20


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
    raw, scan = _scan_head(path, codec, "".join(DELIMITERS) if delimiter == "auto" else delimiter)
    records = scan.records
    blank = 0
    while records and not records[0][0]:
        blank += 1
        records.pop(0)
    if not records:
        if scan.text.strip("\r\n"):
            raise SourceError(f"{path}: the header line opens a quote that never closes")
        raise SourceError(f"{path}: the file has no header line")
    if _ESCAPED.search(records[0][0]):
        _raise_decode_error(path, raw, codec)
    if delimiter == "auto":
        delimiter = sniff(records)
    try:
        names = next(csv.reader([records[0][0]], delimiter=delimiter))
    except csv.Error as exc:
        raise SourceError(f"{path}: cannot parse the header line: {exc}") from None
    return CsvHeader(names=names, delimiter=delimiter, codec=codec, first_row=2 + blank)


def _scan_head(path: Path, codec: str, delimiters: str) -> tuple[bytes, RecordScanner]:
    """Read until the header record is complete: the raw bytes read, and the scan."""
    # Bytes that do not decode are kept as escapes: only the header must decode here,
    # the parser judges the key columns and the other columns do not matter.
    decoder = codecs.getincrementaldecoder(codec)("surrogateescape")
    scan = RecordScanner(delimiters)
    raw = bytearray()
    with open_bytes(path) as stream:
        while not scan.has_header:
            if len(raw) >= MAX_HEADER_BYTES:
                raise SourceError(
                    f"{path}: no end to the header line in the first "
                    f"{MAX_HEADER_BYTES >> 20} MB of the file, the most np6-sync reads for a "
                    "header "
                    + ("(a quote that never closes?)" if scan.in_quotes else "(not a CSV file?)")
                )
            chunk = stream.read(_CHUNK)
            if not raw:
                _refuse_packed(path, chunk)
            raw += chunk
            piece = decoder.decode(chunk, not chunk)
            scan.feed(piece if scan.text else piece.removeprefix("\ufeff"), not chunk)
            if not chunk:
                break
    return bytes(raw), scan


def _refuse_packed(path: Path, head: bytes) -> None:
    """Name what a compressed or binary file is, rather than parse its bytes as text."""
    found = next(((what, s) for magic, what, s in _PACKED if magic.match(head)), None)
    if found is None:
        return
    what, suffix = found
    compression = compression_of(path.name)
    if compression:
        raise SourceError(
            f"{path}: the file, once {compression}-decompressed, is {what}, not CSV text: "
            "extract the CSV from it"
        )
    if what == "a Parquet file":
        raise SourceError(
            f"{path}: the file is a Parquet file: name it {Path(path.name).stem}.parquet "
            "or set source.format: parquet"
        )
    if suffix is None:
        raise SourceError(
            f"{path}: the file is {what}, which np6-sync does not read: decompress it, "
            "or compress it with gzip or zstd"
        )
    # The one file of a zip archive is read; .gz, .bz2 and .zst are decompressed.
    raise SourceError(f"{path}: the file is {what}: name it {path.name}{suffix}")


def header_only(path: Path, header: CsvHeader) -> bool:
    """Whether the file holds its header and nothing else but blank lines: pyarrow cannot
    read such a file when its last line end is missing ("Empty CSV file or block")."""
    decoder = codecs.getincrementaldecoder(header.codec)("surrogateescape")
    scan = RecordScanner(header.delimiter)
    with open_bytes(path) as stream:
        head = stream.read(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        return False
    scan.feed(decoder.decode(head, True).removeprefix("\ufeff"), True)
    return not scan.in_quotes and sum(1 for text, _ in scan.records if text) == 1


def read_columns(path: Path, header: CsvHeader, columns: Sequence[str]) -> pa.Table:
    """The requested columns as text, or as binary when some value is not UTF-8: the
    caller checks and names non-UTF-8 rows."""
    try:
        for block_size in _BLOCK_SIZES:
            try:
                return _read_text(path, header, columns, block_size)
            except pa.ArrowInvalid as exc:
                if "straddl" not in str(exc):
                    raise
        raise SourceError(
            f"{path}: a row is longer than about {2 * _BLOCK_SIZES[-1] >> 20} MB, the longest "
            "np6-sync reads; remove the long values or the columns that hold them"
        )
    except UnicodeDecodeError:
        raise _decode_error(path, header.codec) from None


def _read_text(path: Path, header: CsvHeader, columns: Sequence[str], block_size: int) -> pa.Table:
    """As text, the reader's threads check UTF-8 as they parse; as binary when some value
    is not UTF-8, for the caller to name its row."""
    try:
        return _read_naming_rows(path, header, columns, block_size, pa.string())
    except pa.ArrowInvalid as exc:
        if "invalid UTF8" not in str(exc):
            raise
    return _read_naming_rows(path, header, columns, block_size, BINARY)


def _read_naming_rows(
    path: Path, header: CsvHeader, columns: Sequence[str], block_size: int, kind: pa.DataType
) -> pa.Table:
    try:
        return _read(path, header, columns, block_size, kind, use_threads=True)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file or block" in str(exc) and header_only(path, header):
            return pa.table({c: pa.array([], kind) for c in dict.fromkeys(columns)}).select(
                list(columns)
            )
        if "CSV parse error" not in str(exc):
            raise
        # pyarrow names the row of a parse error only when it reads on one thread.
        try:
            _read(path, header, columns, block_size, kind, use_threads=False)
        except pa.ArrowInvalid as again:
            raise SourceError(f"{path}: {_spreadsheet_rows(one_line(again), header)}") from None
        raise


def _spreadsheet_rows(message: str, header: CsvHeader) -> str:
    # pyarrow counts records from the header, blank lines before it left out.
    message = _ROW.sub(lambda m: f"Row #{int(m[1]) + header.first_row - 2}", message, count=1)
    # pyarrow quotes the row after the count of its fields: a list's personal data.
    return _ROW_TEXT.sub(r"\1 (the row's text is not shown)", message, count=1)


@contextmanager
def open_bytes(path: Path) -> Iterator[Any]:
    """The file's bytes, decompressed after its extension (.gz .bz2 .zst .zip)."""
    compression = compression_of(path.name)
    if compression != "zip":
        with pa.input_stream(str(path), compression=compression) as stream:
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


def _read(
    path: Path,
    header: CsvHeader,
    columns: Sequence[str],
    block_size: int,
    kind: pa.DataType,
    use_threads: bool,
) -> pa.Table:
    with open_bytes(path) as stream:
        table = pacsv.read_csv(stream, **options(header, columns, block_size, use_threads, kind))
    return table.select(list(columns))


def options(
    header: CsvHeader,
    columns: Sequence[str],
    block_size: int,
    use_threads: bool = True,
    kind: pa.DataType = BINARY,
) -> dict[str, Any]:
    """pyarrow's options for reading ``columns`` as ``kind`` (binary: exactly as the file
    holds them; string: the same, checked as UTF-8)."""
    wanted = list(dict.fromkeys(columns))
    return {
        "read_options": pacsv.ReadOptions(
            # utf8 is parsed natively (a BOM is skipped); other codecs are transcoded.
            encoding="utf8" if header.codec == "utf-8" else header.codec,
            use_threads=use_threads,
            block_size=block_size,
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=header.delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            ignore_empty_lines=True,
        ),
        "convert_options": pacsv.ConvertOptions(
            include_columns=wanted,
            column_types={c: kind for c in wanted},
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }


def _codec(path: Path, encoding: str) -> str:
    try:
        name: str = codecs.lookup(encoding).name
    except LookupError:
        raise SourceError(f"{path}: unknown encoding {encoding!r}") from None
    # The BOM is dropped either way, so utf-8-sig is utf-8 here.
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


def _raise_decode_error(path: Path, raw: bytes, codec: str) -> NoReturn:
    try:
        raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = codecs.decode(raw[: exc.start], codec, "replace").count("\n") + 1
        raise SourceError(
            _decode_message(path, codec, exc, exc.start, line) + _decode_hint(raw)
        ) from None
    raise SourceError(f"{path}: the header line does not decode as {codec}")


def _decode_hint(raw: bytes) -> str:
    bom = next((e for mark, e in _BOMS.items() if raw.startswith(mark)), None)
    if bom:
        return f"; the file starts with a {bom.upper()} byte-order mark: set source.encoding: {bom}"
    return ""


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
    of = " of the decompressed data" if compression_of(path.name) else ""
    return (
        f"{path}: byte(s) {bad} at byte offset {offset}{of} (line {line}) cannot be decoded "
        f"as {codec} ({exc.reason}); set source.encoding to the file's encoding"
    )


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
