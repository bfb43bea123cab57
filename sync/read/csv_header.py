"""Find the header record at the start of a CSV text, and sniff its delimiter.

The text arrives piece by piece (the file is read 64 KB at a time until the header
record is complete) and each character is looked at once: a header with an unbalanced
quote, or a file without a line end, costs the time of reading it, never its square.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable

# What "auto" chooses among, in order of preference when the counts tie.
DELIMITERS = (",", ";", "\t", "|")
# Enough records to see whether a delimiter is steady; the data itself goes to pyarrow.
SNIFF_RECORDS = 50

Record = tuple[str, dict[str, int]]
# What `init` proposes for a CSV that is not UTF-8, in order: what Windows writes in
# Western Europe (and what Excel's "CSV" means there), then latin-1, which decodes any
# bytes at all, rightly or not.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
# Longest first: a UTF-32 little-endian mark starts with UTF-16's.
_UNICODE_MARKS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
    (b"\xef\xbb\xbf", "utf-8"),
)


def marked_encoding(head: bytes) -> str | None:
    """The encoding a byte-order mark at the start of the text names, if any."""
    return next((codec for mark, codec in _UNICODE_MARKS if head.startswith(mark)), None)


def decodes(chunks: Iterable[bytes], codec: str) -> bool:
    """Whether all the bytes, read piece by piece, are text in ``codec``."""
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        for chunk in chunks:
            decoder.decode(chunk)
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return False
    return True


class RecordScanner:
    """The complete records at the start of the text fed so far, with delimiter counts.

    Quote-aware like the parser: a quote opens a quoted field only at the start of a field,
    and line ends inside quotes do not end the record.
    """

    def __init__(self, delimiters: str) -> None:
        self.delimiters = delimiters
        self._special = re.compile(f"[{re.escape(chr(34) + delimiters)}\r\n]")
        self.text = ""
        self.records: list[Record] = []
        self._counts = dict.fromkeys(delimiters, 0)
        self._start = self._at = 0
        self._in_quotes = False
        self._field_start = True

    @property
    def has_header(self) -> bool:
        return any(record for record, _ in self.records)

    @property
    def in_quotes(self) -> bool:
        return self._in_quotes

    def feed(self, piece: str, at_eof: bool) -> None:
        """Scan ``piece`` on from where the last one stopped; ``at_eof`` once, at the end."""
        self.text += piece
        text, n = self.text, len(self.text)
        i = self._at
        while i < n and len(self.records) < SNIFF_RECORDS:
            if self._in_quotes:
                close = text.find('"', i)
                if close < 0 or (close + 1 == n and not at_eof):
                    i = n if close < 0 else close  # the next piece tells "" from a close
                    break
                if text.startswith('"', close + 1):
                    i = close + 2
                else:
                    self._in_quotes, i = False, close + 1
                continue
            c = text[i]
            if c in "\r\n":
                if c == "\r" and i + 1 == n and not at_eof:
                    break  # a \r\n may be cut between two pieces
                self._end_record(text[self._start : i])
                i += 2 if text.startswith("\r\n", i) else 1
                self._start, self._field_start = i, True
                continue
            if c == '"' and self._field_start:
                self._in_quotes = True
            elif c in self._counts:
                self._counts[c] += 1
            elif c != '"':
                # Plain text up to the next quote, delimiter or line end: skipped at once.
                found = self._special.search(text, i)
                i, self._field_start = (found.start() if found else n), False
                continue
            self._field_start = c in self.delimiters
            i += 1
        self._at = i
        # A record still inside quotes at the end of the file is unbalanced, not complete.
        complete = at_eof and self._start < n and not self._in_quotes
        if complete and len(self.records) < SNIFF_RECORDS:
            self._end_record(text[self._start :])

    def _end_record(self, record: str) -> None:
        self.records.append((record, self._counts))
        self._counts = dict.fromkeys(self.delimiters, 0)
        self._field_start = True


def sniff(records: list[Record]) -> str:
    """The candidate the header holds, preferring one every sampled record holds as often."""
    header = records[0][1]
    found = [d for d in DELIMITERS if header[d] > 0]
    if not found:
        return ","  # one column: any delimiter reads it the same
    rows = [counts for text, counts in records[1:] if text]
    steady = [d for d in found if all(r[d] == header[d] for r in rows)]
    return max(steady or found, key=lambda d: header[d])
