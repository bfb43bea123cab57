from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.read.csv_header import RecordScanner

cell = st.text(alphabet='ab,;"\r\n\t |', max_size=5)


def _scan(text: str, cuts: list[int]) -> RecordScanner:
    scan = RecordScanner(",;\t|")
    start = 0
    for cut in sorted(c % (len(text) + 1) for c in cuts):
        scan.feed(text[start:cut], at_eof=False)
        start = max(start, cut)
    scan.feed(text[start:], at_eof=True)
    return scan


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='ab,;"\r\n\t |', max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_where_the_pieces_are_cut_changes_nothing(text: str, cuts: list[int]) -> None:
    # A cut may fall between \r and \n, or between the two quotes of "".
    whole = _scan(text, [])
    pieces = _scan(text, cuts)
    assert pieces.records == whole.records
    assert pieces.in_quotes == whole.in_quotes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(cell, min_size=1, max_size=4), min_size=1, max_size=6))
def test_records_are_those_the_csv_module_writes(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    text = buffer.getvalue()

    scan = _scan(text, [len(text) // 3, len(text) // 2])

    records = [record for record, _ in scan.records]
    assert [next(csv.reader([r])) for r in records] == rows
