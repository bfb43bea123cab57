"""Pure key building: transforms, concatenation, rejected rows, duplicates.

Everything here works on whole Arrow arrays; there is no per-row Python on this path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync.config import TargetsConfig
from sync.hashing import first_distinct

KEY_TYPE = pa.large_string()
# NP6 target ids look like 000PKXK4: eight letters or digits.
TARGET_ID_PATTERN = r"^[0-9A-Za-z]{8}$"

TRANSFORMS: Mapping[str, Callable[[pa.ChunkedArray], pa.ChunkedArray]] = {
    "strip": pc.utf8_trim_whitespace,
    "lower": pc.utf8_lower,
    "upper": pc.utf8_upper,
    # RE2's \D is ASCII-only, so this keeps exactly 0-9.
    "digits": lambda a: pc.replace_substring_regex(a, pattern=r"\D", replacement=""),
    "nfkc": lambda a: pc.utf8_normalize(a, form="NFKC"),
}


@dataclass(frozen=True)
class KeySet:
    """The distinct keys of a source, and what was left out of it."""

    keys: pa.Array  # distinct, in order of first appearance
    rows_read: int
    valid_rows: int
    rejected: pa.Table  # row, reason, then the raw value of every key column
    rejects_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def duplicate_keys(self) -> int:
        return self.valid_rows - len(self.keys)

    @property
    def rows_rejected(self) -> int:
        return self.rows_read - self.valid_rows


def build_keys(table: pa.Table, targets: TargetsConfig, first_row: int = 1) -> KeySet:
    """Turn the key columns of a source into distinct keys.

    A row is rejected (with its spreadsheet row number and the reason) when a key part
    is missing or empty after its transforms, or, in id mode, when the key does not
    look like an NP6 target id.
    """
    # Each row's first failed check, as a small integer: strings are only made for the
    # rejected rows, not for ten million valid ones.
    reasons: list[str] = []
    code = pa.nulls(table.num_rows, pa.int8())

    def check(failed: pa.Array, reason: str) -> pa.Array:
        reasons.append(reason)
        newly = pc.and_(pc.fill_null(failed, True), pc.is_null(code))
        return pc.if_else(newly, pa.scalar(len(reasons) - 1, pa.int8()), code)

    parts = []
    for column in targets.columns:
        values = table[column]
        for name in targets.transforms_for(column):
            values = TRANSFORMS[name](values)
        code = check(pc.is_null(values), f"missing {column}") if values.null_count else code
        code = check(pc.equal(pc.utf8_length(values), 0), f"empty {column}")
        parts.append(values.cast(KEY_TYPE))
    separator = pa.scalar(targets.separator, KEY_TYPE)
    keys = pc.binary_join_element_wise(*parts, separator) if len(parts) > 1 else parts[0]
    del parts
    if targets.identify_by == "id":
        looks_like_id = pc.match_substring_regex(keys, TARGET_ID_PATTERN)
        code = check(pc.invert(looks_like_id), "not an NP6 target id (8 letters or digits)")

    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    code = code.combine_chunks() if isinstance(code, pa.ChunkedArray) else code
    rejected_count = len(code) - code.null_count
    valid_keys = pc.filter(keys, pc.is_null(code)) if rejected_count else keys
    rejected = _rejected_rows(table, targets, code, reasons, first_row)
    counts = pc.value_counts(rejected.column(1)) if rejected.num_rows else []
    return KeySet(
        keys=first_distinct(valid_keys),
        rows_read=table.num_rows,
        valid_rows=len(valid_keys),
        rejected=rejected,
        rejects_by_reason={str(c["values"]): int(c["counts"]) for c in _pylist(counts)},
    )


def _rejected_rows(
    table: pa.Table, targets: TargetsConfig, code: pa.Array, reasons: list[str], first_row: int
) -> pa.Table:
    """Row number, reason, then the raw key values, by position.

    A key column named "row" or "reason" repeats that name in the header; it must not
    replace the row numbers or the reasons (as a dict keyed by name did).
    """
    at = pc.indices_nonzero(pc.is_valid(code))
    reason = pc.take(pa.array(reasons, pa.string()), pc.take(code, at))
    columns = [pc.add(at, first_row), reason]
    columns += [pc.take(table[column], at) for column in targets.columns]
    return pa.table(columns, names=["row", "reason", *targets.columns])


def _pylist(value: pa.Array | list[object]) -> list[dict[str, Any]]:
    return value.to_pylist() if isinstance(value, pa.Array) else []
