"""Pure key building: transforms, concatenation, rejected rows, duplicates.

Everything here works on whole Arrow arrays; there is no per-row Python on this path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from sync.core.hashing import first_distinct
from sync.errors import UsageError


class KeyRules(Protocol):
    """How a row becomes a key: the job's ``targets`` (``sync.config.TargetsConfig``
    satisfies it). core takes the rules as this shape and imports nothing of the config."""

    @property
    def identify_by(self) -> str: ...

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def separator(self) -> str: ...

    def unknown_transforms(self) -> list[str]: ...

    def transforms_for(self, column: str) -> Sequence[str]: ...


# 32-bit offsets: 40 MB less per ten million keys than large_string. Key arrays stay
# chunked (a million keys a chunk), so no one buffer comes near the 2 GiB they address.
KEY_TYPE = pa.string()
# NP6 target ids look like 000PKXK4: eight letters or digits.
TARGET_ID_PATTERN = r"^[0-9A-Za-z]{8}$"

# Invisible in a spreadsheet and in NP6's interface, yet part of the key: C0 and C1
# controls (NUL, line ends, tabs...) and the zero-width characters.
_CONTROL = r"[\x{00}-\x{1f}\x{7f}-\x{9f}]"
_ZERO_WIDTH = r"[\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]"
_INVISIBLE = r"[\x{00}-\x{1f}\x{7f}-\x{9f}\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]"

TRANSFORMS: Mapping[str, Callable[[pa.ChunkedArray], pa.ChunkedArray]] = {
    "strip": pc.utf8_trim_whitespace,
    "lower": pc.utf8_lower,
    "upper": pc.utf8_upper,
    # RE2's \D is ASCII-only, so this keeps exactly 0-9.
    "digits": lambda a: pc.replace_substring_regex(a, pattern=r"\D", replacement=""),
    "nfkc": lambda a: _nfkc(a),
    # strip and nfkc keep them: NFKC maps no zero-width character, and none is whitespace.
    "remove_zero_width": lambda a: pc.replace_substring_regex(a, _ZERO_WIDTH, ""),
}


def _nfkc(values: pa.Array) -> pa.Array:
    """NFKC by polars: pyarrow's utf8_normalize(form="NFKC") gives NFKD's decomposed
    forms before pyarrow 26 (``é`` as ``e`` and a combining accent), and keys must not
    depend on the pyarrow installed."""
    import polars as pl

    normalized = pl.Series(values=values).str.normalize("NFKC").to_arrow()
    return normalized.cast(values.type)


# Each key column's checks, in order: a row is rejected for the first that fails.
_CHECKS = ("missing", "empty", "control character in", "zero-width character in")


def concat(*arrays: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Key arrays end to end, without copying them into one buffer."""
    chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
    return pa.chunked_array(chunks, type=KEY_TYPE)


@dataclass(frozen=True)
class KeySet:
    """The distinct keys of a source, and what was left out of it."""

    keys: pa.Array  # distinct, in order of first appearance (empty when ``folded``)
    rows_read: int
    valid_rows: int
    rejected: pa.Table  # row, reason, then the raw value of every key column
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    rows_filtered: int = 0  # left out by source.where: not in rows_read
    # Folded against the state as it was read (sync.core.fold): how many distinct keys
    # there were; the fold, not ``keys``, holds them.
    folded: int | None = None

    @property
    def distinct_keys(self) -> int:
        return len(self.keys) if self.folded is None else self.folded

    @property
    def duplicate_keys(self) -> int:
        return self.valid_rows - self.distinct_keys

    @property
    def rows_rejected(self) -> int:
        return self.rows_read - self.valid_rows


# Keys are built a slice of rows at a time, so the transforms' intermediate arrays stay
# small: only the finished keys of the whole list are ever held at once.
SLICE = 1_000_000
# A row's reject reason, as an index into the job's reasons: four per key column.
_CODE = pa.int16()


def build_keys(table: pa.Table, targets: KeyRules, first_row: int = 1) -> KeySet:
    """Turn the key columns of a source into distinct keys.

    A row is rejected (with its spreadsheet row number and the reason) when a key part
    is missing or empty after its transforms or holds a control or zero-width character,
    or, in id mode, when the key does not look like an NP6 target id.
    """
    return distinct(collect_keys(table, targets, first_row))


def distinct(keyset: KeySet) -> KeySet:
    """The same key set with each key once, at its first appearance."""
    return replace(keyset, keys=first_distinct(keyset.keys))


def collect_keys(
    table: pa.Table, targets: KeyRules, first_row: int = 1, keep: pa.Array | None = None
) -> KeySet:
    """The valid keys of every row, duplicates included, and the rejected rows.

    Apart from ``distinct`` so that a caller can let go of the source's columns first:
    finding duplicates is the step that needs the most memory. Rows where ``keep`` is
    false (a condition left them out) are neither keys nor rejects, only counted.
    """
    check_transforms(targets)
    reasons = [f"{what} {column}" for column in targets.columns for what in _CHECKS]
    reasons.append("not an NP6 target id (8 letters or digits)")
    valid: list[pa.Array] = []
    rejected = [_rejected_rows(table.slice(0, 0), targets, pa.array([], _CODE), reasons, 0)]
    for start in range(0, table.num_rows, SLICE):
        piece = table.slice(start, SLICE)
        keys, code = _slice_keys(piece, targets)
        valid_rows = pc.is_null(code)
        if keep is not None:
            kept = keep.slice(start, SLICE)
            valid_rows = pc.and_(valid_rows, kept)
            code = pc.if_else(kept, code, pa.scalar(None, _CODE))
        if keep is None and code.null_count == len(code):
            valid.append(keys)
        else:
            valid.append(pc.filter(keys, valid_rows))
        if code.null_count != len(code):
            rejected.append(_rejected_rows(piece, targets, code, reasons, first_row + start))
    valid_keys = concat(*valid)
    filtered = 0 if keep is None else len(keep) - keep.true_count
    rejects = pa.concat_tables(rejected)
    counts = pc.value_counts(rejects.column(1)) if rejects.num_rows else []
    return KeySet(
        keys=valid_keys,
        rows_read=table.num_rows - filtered,
        valid_rows=len(valid_keys),
        rejected=rejects,
        rejects_by_reason={str(c["values"]): int(c["counts"]) for c in _pylist(counts)},
        rows_filtered=filtered,
    )


def check_transforms(targets: KeyRules) -> None:
    """Refuse a transform of no key column: it would be skipped, and the keys change.

    Checked here, after the source's columns were found, and not as the job loads: a
    column mistyped in targets.columns and spelt right under transforms is then shown the
    header's closest names, not blamed on transforms."""
    unknown = targets.unknown_transforms()
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise UsageError(
            f"targets.transforms names {names}, which {'are' if len(unknown) > 1 else 'is'} "
            f"not in targets.columns "
            f"{list(targets.columns)}: correct the name in one of the two"
        )


def merged(parts: list[KeySet], distinct_keys: int) -> KeySet:
    """The counts and rejects of a source read in batches, whose keys were folded."""
    reasons: dict[str, int] = {}
    for part in parts:
        for reason, count in part.rejects_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return KeySet(
        keys=pa.array([], KEY_TYPE),
        rows_read=sum(p.rows_read for p in parts),
        valid_rows=sum(p.valid_rows for p in parts),
        rejected=pa.concat_tables([p.rejected for p in parts]),
        rejects_by_reason=reasons,
        rows_filtered=sum(p.rows_filtered for p in parts),
        folded=distinct_keys,
    )


def _slice_keys(piece: pa.Table, targets: KeyRules) -> tuple[pa.Array, pa.Array]:
    """The keys of some rows, and each row's first failed check as an index into the
    reasons (null when the row is valid): strings are only made for rejected rows."""
    code = pa.nulls(piece.num_rows, _CODE)

    def check(failed: pa.Array, reason: int) -> pa.Array:
        newly = pc.and_(pc.fill_null(failed, True), pc.is_null(code))
        return pc.if_else(newly, pa.scalar(reason, _CODE), code)

    parts = []
    for number, column in enumerate(targets.columns):
        values = piece[column].combine_chunks()
        for name in targets.transforms_for(column):
            values = TRANSFORMS[name](values)
        first = len(_CHECKS) * number
        if values.null_count:
            code = check(pc.is_null(values), first)
        code = check(pc.equal(pc.binary_length(values), 0), first + 1)  # bytes: no decoding
        if _may_hold_invisible(values):
            code = check(pc.match_substring_regex(values, _CONTROL), first + 2)
            code = check(pc.match_substring_regex(values, _ZERO_WIDTH), first + 3)
        parts.append(values.cast(KEY_TYPE))
    separator = pa.scalar(targets.separator, KEY_TYPE)
    keys = pc.binary_join_element_wise(*parts, separator) if len(parts) > 1 else parts[0]
    if targets.identify_by == "id":
        looks_like_id = pc.match_substring_regex(keys, TARGET_ID_PATTERN)
        code = check(pc.invert(looks_like_id), len(_CHECKS) * len(targets.columns))
    return keys, code


def _may_hold_invisible(values: pa.Array) -> bool:
    """Whether some value may hold an invisible character: one scan of all the values'
    bytes, twice as fast as one match per value; a hit only sends the slice to the exact
    checks. Bytes that are all printable ASCII (ids, most e-mail addresses) hold none, and
    their lowest and highest say so forty times faster still."""
    _, _, data = values.buffers()[:3]
    if data is None or data.size == 0:
        return False
    low, high = pc.min_max(pa.Array.from_buffers(pa.uint8(), data.size, [None, data])).values()
    if low.as_py() >= 0x20 and high.as_py() < 0x7F:
        return False
    offset = pa.array(
        [0, data.size], pa.int64() if pa.types.is_large_string(values.type) else pa.int32()
    )
    whole = pa.Array.from_buffers(values.type, 1, [None, offset.buffers()[1], data])
    return bool(pc.match_substring_regex(whole, _INVISIBLE)[0].as_py())


def _rejected_rows(
    table: pa.Table, targets: KeyRules, code: pa.Array, reasons: list[str], first_row: int
) -> pa.Table:
    """Row number, reason, then the raw key values, by position.

    A key column named "row" or "reason" repeats that name in the header; it must not
    replace the row numbers or the reasons (as a dict keyed by name did).
    """
    rejected = pc.is_valid(code)
    at = pc.indices_nonzero(rejected)
    reason = pc.take(pa.array(reasons, pa.string()), pc.filter(code, rejected))
    columns = [pc.add(at.cast(pa.int64()), first_row), reason]
    # A filter, not a take: taking from a chunked column first copies it whole.
    columns += [pc.filter(table[column], rejected) for column in targets.columns]
    return pa.table(columns, names=["row", "reason", *targets.columns])


def _pylist(value: pa.Array | list[object]) -> list[dict[str, Any]]:
    return value.to_pylist() if isinstance(value, pa.Array) else []
