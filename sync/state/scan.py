"""The state file read a row group at a time.

A whole read decodes every row group at once, in parallel, and the allocator keeps much of
that room long after: for ten million keys, 870 MiB of memory for 400 MiB of keys. Read a
row group at a time, the state costs little more than its keys; scanned, it costs only
their digests: the keys stay in the file until a plan needs some (``pick``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.core.fold import HeldDigests, Pick
from sync.core.keys import KEY_TYPE, concat
from sync.core.plan import IDS_SCHEMA, PENDING_SCHEMA, Holding, no_ids, no_pending
from sync.errors import StateError
from sync.read.ahead import read_ahead


class LocalState(Protocol):
    """What a scan asks of a local state (``sync.state.local.StateStore``)."""

    path: Path

    def has_journal(self) -> bool: ...

    def metadata(self) -> dict[str, Any]: ...


REMEDY = "run with --full-refresh to clear the segment and rebuild the state from the source"


def row_groups(path: Path, columns: Sequence[str]) -> Iterator[pa.Table]:
    """The state file's ``columns``, a row group at a time, the next one read while the
    caller works on this one (a scan takes a third less time)."""
    return read_ahead(_row_groups(path, columns))


def _row_groups(path: Path, columns: Sequence[str]) -> Generator[pa.Table, None, None]:
    try:
        with pq.ParquetFile(path) as file:
            missing = [c for c in columns if c not in file.schema_arrow.names]
            if missing:
                raise KeyError(f"no column {missing[0]!r}")
            for number in range(file.num_row_groups):
                yield file.read_row_group(number, columns=list(columns))
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise StateError(f"{path}: unreadable state file ({exc}); {REMEDY}") from None


def state_columns(version: int) -> list[str]:
    # Version 2 adds the contact ids learned by look-ups.
    return ["key", "pending_since"] + (["target_ids"] if version >= 2 else [])


class Extras:
    """The rows of a state that carry more than a key: deferred removals, learned ids."""

    def __init__(self) -> None:
        self.pending: list[pa.Table] = []
        self.ids: list[pa.Table] = []

    def take(self, group: pa.Table) -> pa.Table:
        """Keep ``group``'s pending and id rows; ``group`` with its key as ``KEY_TYPE``."""
        keys = group["key"].cast(KEY_TYPE)
        since = group["pending_since"].cast(pa.string())
        if since.null_count < len(since):
            rows = pa.Table.from_arrays([keys, since], schema=PENDING_SCHEMA)
            self.pending.append(rows.filter(pc.is_valid(since)))
        if "target_ids" in group.column_names:
            known = group["target_ids"].cast(IDS_SCHEMA.field("ids").type)
            if known.null_count < len(known):
                rows = pa.Table.from_arrays([keys, known], schema=IDS_SCHEMA)
                self.ids.append(rows.filter(pc.is_valid(known)))
        return group.set_column(0, "key", keys)

    def holding(self, keys: pa.Array) -> Holding:
        pending = pa.concat_tables(self.pending) if self.pending else no_pending()
        ids = pa.concat_tables(self.ids) if self.ids else no_ids()
        return Holding(keys, pending=pending, ids=ids)


def read_whole(path: Path, version: int) -> Holding:
    """The state file's keys and what they carry, a row group at a time."""
    extras = Extras()
    keys = [extras.take(group)["key"] for group in row_groups(path, state_columns(version))]
    return extras.holding(concat(*keys))


@dataclass(frozen=True)
class Scanned:
    """A state read without its keys: what a run that folds its source plans from.

    ``holding.keys`` is left empty: the keys stay in the file, where ``pick`` reads them.
    """

    holding: Holding
    digests: HeldDigests
    pick: Pick
    version: int
    path: Path

    def keys(self) -> Iterator[pa.Array]:
        """The state's keys as scanned, a row group at a time."""
        return read_keys(self.path)


def scan_state(store: LocalState) -> Scanned | None:
    """None when the state must be loaded whole: no state file, or a journal to replay."""
    if store.has_journal() or not store.path.exists():
        return None
    version = store.metadata()["version"]
    path = store.path
    try:
        with pq.ParquetFile(path) as file:
            count = file.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise StateError(f"{path}: unreadable state file ({exc}); {REMEDY}") from None
    extras = Extras()
    groups = (extras.take(group)["key"] for group in row_groups(path, state_columns(version)))
    digests = HeldDigests.of(groups, count)

    return Scanned(extras.holding(pa.array([], KEY_TYPE)), digests, picker(path), version, path)


def picker(path: Path) -> Pick:
    """Where a mask is true, the keys of the state file at ``path``, read a row group at
    a time."""

    def pick(mask: pa.BooleanArray) -> pa.Array:
        parts, offset = [], 0
        for group in row_groups(path, ["key"]):
            size = group.num_rows
            parts.append(pc.filter(group["key"].cast(KEY_TYPE), mask.slice(offset, size)))
            offset += size
        return concat(*parts)

    return pick


def read_keys(path: Path) -> Iterator[pa.Array]:
    """The keys of the state file at ``path``, a row group at a time (the file does not
    change while the run holds the job's lock: only the journal grows)."""
    for group in row_groups(path, ["key"]):
        yield group["key"].cast(KEY_TYPE)
