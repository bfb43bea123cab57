"""The state: what the segment holds, as far as NP6 acknowledged it.

Three files live side by side (``state/newsletter-fr.parquet`` here):

- ``newsletter-fr.parquet``          the keys the segment held after the last finished
  run, with the format version, segment id and key definition in its metadata;
- ``newsletter-fr.parquet.journal``  one JSON line per acknowledged step of the runs
  since (fsynced each time), folded into the state file when a run ends;
- ``newsletter-fr.parquet.lock``     who runs the job now (flock: a dead holder's lock
  is released by the kernel, so it is taken over safely).

The state file is only ever replaced whole (temp file + fsync + rename + directory
fsync), so it is always either the old or the new version.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sync.core.hashing import SMALL, first_distinct, set_print
from sync.core.keys import KEY_TYPE, concat
from sync.core.plan import IDS_SCHEMA, Holding, no_pending
from sync.errors import HistoryError, StateError, foreign_errors
from sync.report.model import JobReport
from sync.state.files import (
    atomic_write,
    drop_torn_tail,
    fsync_dir,
    leftovers,
    open_private,
    write_all,
)
from sync.state.history import append_history, history_path, read_history
from sync.state.scan import REMEDY as _REMEDY
from sync.state.scan import read_whole
from sync.state.seal import STATE_VERSION, drop_seal, job_lock

# Version 2 (sync/state/seal.py) adds the contact ids learned by look-ups (column
# target_ids); version 1 still loads.
_READABLE_VERSIONS = (1, 2)
_META_KEY = b"np6sync"
# A state of at least this many keys records their print (sync.job.same_set): a smaller one
# is read sooner than polars, which prints, is imported. Tests lower it.
PRINT_KEYS = SMALL


@dataclass(frozen=True)
class StateInfo:
    """The state file's metadata (what `np6-sync state show` prints)."""

    version: int
    segment_id: int
    key_definition: dict[str, Any]
    updated_at: str
    keys: int


class StateStore:
    def __init__(self, path: Path, segment_id: int, key_definition: dict[str, Any]) -> None:
        self.path = path
        self.segment_id = segment_id
        self.key_definition = key_definition
        self.journal_path = path.with_name(path.name + ".journal")
        self.lock_path = path.with_name(path.name + ".lock")

    @property
    def where(self) -> str:
        return str(self.path)

    def has_journal(self) -> bool:
        """Whether an unfinished run left steps to fold into the state."""
        return os.path.lexists(self.journal_path)

    # --- reading ---------------------------------------------------------------------

    def load(self) -> Holding:
        """The keys the segment holds: the state file, then the journal of unfinished runs.

        A state that cannot be trusted for this job raises StateError; it is never
        read as empty.
        """
        holding = Holding.empty()
        if self.path.exists():
            holding = self._read_state_file()
        if not self.has_journal():
            return holding
        return self._replay(holding)

    def info(self) -> StateInfo | None:
        if not self.path.exists():
            return None
        meta = self._check_metadata(self._read_schema_metadata())
        rows = pq.ParquetFile(self.path).metadata.num_rows
        return StateInfo(
            meta["version"], meta["segment_id"], meta["key_definition"], meta["updated_at"], rows
        )

    def _read_schema_metadata(self) -> dict[str, Any]:
        try:
            schema = pq.read_schema(self.path)
            raw = (schema.metadata or {}).get(_META_KEY)
            meta = json.loads(raw) if raw else None
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise StateError(f"{self.path}: unreadable state file ({exc}); {_REMEDY}") from None
        if not isinstance(meta, dict):
            raise StateError(f"{self.path}: not an np6-sync state file; {_REMEDY}")
        return meta

    def metadata(self) -> dict[str, Any]:
        """The state file's metadata, checked against this job."""
        return self._check_metadata(self._read_schema_metadata())

    def _read_state_file(self) -> Holding:
        return read_whole(self.path, self.metadata()["version"])

    def _check_metadata(self, meta: dict[str, Any]) -> dict[str, Any]:
        where = str(self.path)
        if meta.get("version") not in _READABLE_VERSIONS:
            raise StateError(
                f"{where}: state format version {meta.get('version')!r}, this np6-sync "
                f"reads version {STATE_VERSION}; {_REMEDY}"
            )
        if meta.get("segment_id") != self.segment_id:
            raise StateError(
                f"{where}: the state is for segment {meta.get('segment_id')}, the job names "
                f"segment {self.segment_id}; {_REMEDY}"
            )
        if meta.get("key_definition") != self.key_definition:
            raise StateError(
                f"{where}: the state was built with another key definition "
                f"({meta.get('key_definition')}), the job now has {self.key_definition}; "
                f"{_REMEDY}"
            )
        return meta

    def _replay(self, holding: Holding) -> Holding:
        keys, pending, certain = holding.keys, holding.pending, True
        added: list[str] = []
        removed: list[str] = []
        learned: dict[str, list[str]] = {}
        for number, event in enumerate(self._journal_events(), start=1):
            kind = event.get("event")
            if kind == "begin":
                self._check_metadata(event)
            elif kind == "clearing":
                certain = False
            elif kind == "cleared":
                keys, pending, certain = pa.array([], KEY_TYPE), no_pending(), True
                added, removed = [], []
            elif kind == "looked_up":
                learned.update(zip(event["keys"], event["ids"], strict=True))
            elif kind == "added":
                added.extend(event["keys"])
            elif kind == "removed":
                removed.extend(event["keys"])
            else:
                raise StateError(
                    f"{self.journal_path}: line {number}: unknown event {kind!r}; {_REMEDY}"
                )
        if added:
            keys = first_distinct(concat(keys, pa.array(added, KEY_TYPE)))
        if removed:
            gone = pa.array(removed, KEY_TYPE)
            keys = pc.filter(keys, pc.invert(pc.is_in(keys, value_set=gone)))
            pending = pending.filter(pc.invert(pc.is_in(pending["key"], value_set=gone)))
        ids = learn_ids(holding.ids, learned, keys)
        return Holding(keys, certain=certain, pending=pending, ids=ids)

    def _journal_events(self) -> Iterator[dict[str, Any]]:
        fd = open_private(self.journal_path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            lines = f.read().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line:
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                if number == len(lines):
                    # The last line was being written when the run died: that step was
                    # never acknowledged as saved, so it is rightly ignored.
                    return
                raise StateError(
                    f"{self.journal_path}: line {number} is damaged; {_REMEDY}"
                ) from None
            if isinstance(event, dict):
                yield event

    # --- writing ---------------------------------------------------------------------

    def open_journal(self, action: str) -> Journal:
        journal = Journal(self.journal_path)
        journal.record(begin_event(self.segment_id, self.key_definition, action))
        return journal

    def save(
        self,
        keys: pa.Array | Iterator[pa.Array],
        pending: pa.Table | None = None,
        ids: pa.Table | None = None,
    ) -> None:
        """Write the state file atomically, then drop the journal it now contains.

        ``keys``: an array, or parts of one, written as they come (a folded run never
        holds all the keys at once); an array is printed too (sync.job.same_set).
        ``pending`` lists the deferred removals (targets still in the segment); ``ids``
        the contact ids learned for keys (only those of ``keys`` are kept).
        """
        meta = {
            "version": STATE_VERSION,
            "segment_id": self.segment_id,
            "key_definition": self.key_definition,
            "updated_at": _now(),
        }
        parts: Iterable[pa.Array] = keys
        if isinstance(keys, pa.Array | pa.ChunkedArray):
            parts = [keys]
            # Only a state without deferred removals: a run with some always plans.
            if len(keys) >= PRINT_KEYS and (pending is None or not len(pending)):
                # The rows too: a state holding a key twice is not its keys' set.
                meta["key_set"] = {**set_print(keys)[0].as_json(), "rows": len(keys)}
        schema = pa.schema(
            [
                ("key", KEY_TYPE),
                ("pending_since", pa.string()),
                IDS_SCHEMA.field("ids").with_name("target_ids"),
            ],
            metadata={_META_KEY: json.dumps(meta)},
        )
        drop_seal(self.path)
        with atomic_write(self.path) as f, pq.ParquetWriter(f, schema, compression="zstd") as out:
            for part in parts:
                out.write_table(_rows(part.cast(KEY_TYPE), pending, ids, schema))
        self.journal_path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)

    def set_aside(self) -> None:
        """Keep an untrusted state and journal for inspection, out of the way of this run."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        drop_seal(self.path)
        for path in (self.path, self.journal_path):
            if path.exists():
                path.replace(path.with_name(f"{path.name}.set-aside-{stamp}"))

    def clean_leftovers(self) -> None:
        """Remove temp files of interrupted writes (call while holding the lock)."""
        for leftover in leftovers(self.path):
            leftover.unlink(missing_ok=True)

    def lock(self, job_name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the job's lock for the block; LockedError names the current holder."""
        return job_lock(self.lock_path, job_name)

    # --- run history -------------------------------------------------------------------

    def append_history(
        self,
        job: JobReport,
        *,
        started_at: datetime,
        command: str,
        finished_at: datetime | None = None,
    ) -> None:
        """One line for this run beside the state; HistoryError when it cannot."""
        with foreign_errors(lambda why: HistoryError(f"{history_path(self.path)}: {why}")):
            append_history(
                self.path, job, started_at=started_at, command=command, finished_at=finished_at
            )

    def read_history(self, last: int | None = None) -> list[dict[str, Any]]:
        return read_history(self.path, last)


def _rows(
    keys: pa.Array, pending: pa.Table | None, ids: pa.Table | None, schema: pa.Schema
) -> pa.Table:
    """The state file's rows for ``keys``: each with its deferral date and learned ids."""
    if pending is not None and len(pending):
        since = pc.take(pending["since"], pc.index_in(keys, value_set=pending["key"]))
    else:
        since = pa.nulls(len(keys), pa.string())
    if ids is not None and len(ids):
        known = pc.take(ids["ids"], pc.index_in(keys, value_set=ids["key"]))
    else:
        known = pa.nulls(len(keys), IDS_SCHEMA.field("ids").type)
    return pa.Table.from_arrays([keys, since, known], schema=schema)


def begin_event(segment_id: int, key_definition: dict[str, Any], action: str) -> dict[str, Any]:
    """A run's first journal record: whom the steps after it belong to."""
    return {
        "event": "begin",
        "version": STATE_VERSION,
        "segment_id": segment_id,
        "key_definition": key_definition,
        "action": action,
        "at": _now(),
    }


class Journal:
    """Append-only, fsynced per record: what NP6 acknowledged since the state file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = open_private(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        drop_torn_tail(self._fd)
        self._lock = threading.Lock()
        fsync_dir(path.parent)

    def record(self, event: dict[str, Any]) -> None:
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            write_all(self._fd, line)
            os.fsync(self._fd)

    def added(self, keys: Sequence[str]) -> None:
        self.record({"event": "added", "keys": list(keys)})

    def removed(self, keys: Sequence[str]) -> None:
        self.record({"event": "removed", "keys": list(keys)})

    def looked_up(self, key: str, ids: Sequence[str]) -> None:
        """A look-up's answer, kept before anything is done with it: a run stopped before
        the removal does not look the key up again."""
        self.record({"event": "looked_up", "keys": [key], "ids": [list(ids)]})

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def learn_ids(before: pa.Table, learned: dict[str, list[str]], keys: pa.Array) -> pa.Table:
    """The ids known after a run: ``before``, updated by what it ``learned``, for the keys
    the segment still holds (an id is useful only for a later removal)."""
    if learned:
        fresh = pa.Table.from_arrays(
            [pa.array(list(learned), KEY_TYPE), pa.array(list(learned.values()))],
            schema=IDS_SCHEMA,
        )
        stale = pc.is_in(before["key"], value_set=fresh["key"])
        before = pa.concat_tables([before.filter(pc.invert(stale)), fresh])
    if not len(before):
        return before
    return before.filter(pc.is_in(before["key"], value_set=keys))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
