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
    reasons = pa.nulls(table.num_rows, pa.string())
    parts = []
    for column in targets.columns:
        values = table[column].cast(KEY_TYPE)
        for name in targets.transforms_for(column):
            values = TRANSFORMS[name](values)
        reasons = _first_reason(reasons, pc.is_null(values), f"missing {column}")
        reasons = _first_reason(reasons, pc.equal(pc.utf8_length(values), 0), f"empty {column}")
        parts.append(values)
    separator = pa.scalar(targets.separator, KEY_TYPE)
    keys = pc.binary_join_element_wise(*parts, separator) if len(parts) > 1 else parts[0]
    if targets.identify_by == "id":
        not_id = pc.invert(pc.match_substring_regex(keys, TARGET_ID_PATTERN))
        reasons = _first_reason(reasons, not_id, "not an NP6 target id (8 letters or digits)")

    valid = pc.is_null(reasons)
    valid_keys = pc.filter(keys, valid)
    distinct = pc.unique(valid_keys)
    if isinstance(distinct, pa.ChunkedArray):
        distinct = distinct.combine_chunks()
    rejected = _rejected_rows(table, targets, reasons, valid, first_row)
    # By position: a key column may itself be named "row" or "reason".
    counts = pc.value_counts(rejected.column(1)) if rejected.num_rows else []
    return KeySet(
        keys=distinct,
        rows_read=table.num_rows,
        valid_rows=len(valid_keys),
        rejected=rejected,
        rejects_by_reason={str(c["values"]): int(c["counts"]) for c in _pylist(counts)},
    )


def _first_reason(reasons: pa.Array, failed: pa.Array, reason: str) -> pa.Array:
    """Keep the reason already found for a row; give ``reason`` to newly failed rows."""
    failed = pc.fill_null(failed, False)
    return pc.if_else(pc.and_(failed, pc.is_null(reasons)), reason, reasons)


def _rejected_rows(
    table: pa.Table, targets: TargetsConfig, reasons: pa.Array, valid: pa.Array, first_row: int
) -> pa.Table:
    """Row number, reason, then the raw key values, by position.

    A key column named "row" or "reason" repeats that name in the header; it must not
    replace the row numbers or the reasons (as a dict keyed by name did).
    """
    invalid = pc.invert(valid)
    rows = pc.add(pc.indices_nonzero(invalid), first_row)
    columns = [rows, pc.filter(reasons, invalid)]
    columns += [pc.filter(table[column], invalid) for column in targets.columns]
    return pa.table(columns, names=["row", "reason", *targets.columns])


def _pylist(value: pa.Array | list[object]) -> list[dict[str, Any]]:
    return value.to_pylist() if isinstance(value, pa.Array) else []
