"""A job's state on object storage (s3://), with the guarantees of the local StateStore.

Beside ``s3://bucket/np6/newsletter-fr.parquet``:

- ``newsletter-fr.parquet``                  the state file, the same Parquet as locally,
  written whole by one PUT (atomic: readers see the old object or the new one);
- ``newsletter-fr.parquet.journal/<run>-<seq>.jsonl``  the journal in segments: object
  storage cannot append, so each run keeps its journal locally (fsynced per record, in a
  temporary folder) and uploads what it added as a new segment every ``upload_every_s``
  seconds or ``upload_every`` records (group commit), and at once, before going on, for
  the ``clearing`` and ``cleared`` records of a reload: the next run must know a clear
  may have happened, or it would trust a state the segment no longer holds. Steps NP6
  acknowledged but not uploaded when a run is killed are sent again by the next run
  (adding a target twice is harmless). ``save`` writes the state, then deletes the
  segments it now contains;
- ``newsletter-fr.parquet.lock``     the lease lock (see ``remote_s3``);
- ``newsletter-fr.parquet.history.jsonl``  the run history, rewritten whole per run.

Reading and writing the state file reuse ``StateStore`` on a temporary local copy, so the
format, checks and journal replay are exactly the local ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from sync.core.plan import Holding
from sync.errors import HistoryError, Np6SyncError, StateError, SyncError, foreign_errors
from sync.read.remote import describe, display_url
from sync.report.model import JobReport
from sync.state.history import history_entry, parse_history
from sync.state.local import Journal, StateInfo, StateStore, begin_event
from sync.state.s3_objects import LEASE_S, Conflict, LeaseLock, S3Objects

log = logging.getLogger("np6sync.remote")
HISTORY_KEPT = 10_000  # runs kept in the history object, which is rewritten whole per run
_T = TypeVar("_T")


class RemoteStateStore:
    def __init__(
        self,
        url: str,
        segment_id: int,
        key_definition: dict[str, Any],
        *,
        lease_s: float = LEASE_S,
        upload_every_s: float = 2.0,
        upload_every: int = 200,
    ) -> None:
        self.url = url
        self.path = display_url(url)  # what `state show` prints
        self.segment_id = segment_id
        self.key_definition = key_definition
        self.journal_prefix = url + ".journal/"
        self.lock_url = url + ".lock"
        self.history_url = url + ".history.jsonl"
        self.lease_s = lease_s
        self.upload_every_s = upload_every_s
        self.upload_every = upload_every
        # Local copies of this state (its journal holds keys) are made under this prefix,
        # so a later run can remove what a killed one left in the temporary folder.
        self._temp_prefix = f"np6sync-{hashlib.sha256(url.encode()).hexdigest()[:16]}-"
        self._objects: S3Objects | None = None
        self._journal: RemoteJournal | None = None
        self._lock: LeaseLock | None = None

    @property
    def where(self) -> str:
        return self.path

    @property
    def objects(self) -> S3Objects:
        if self._objects is None:
            self._objects = S3Objects(self.url)
        return self._objects

    def has_journal(self) -> bool:
        return bool(self._reading("list the journal", self.objects.list, self.journal_prefix))

    # --- reading ---------------------------------------------------------------------

    def load(self) -> Holding:
        """The state object, then the journal segments of unfinished runs (this one too)."""
        self._flush_journal()
        with self._local_copy(journal=True) as local:
            return self._named(local, local.load)

    def info(self) -> StateInfo | None:
        with self._local_copy(journal=False) as local:
            return self._named(local, local.info)

    @contextlib.contextmanager
    def _local_copy(self, *, journal: bool) -> Iterator[StateStore]:
        with tempfile.TemporaryDirectory(prefix=self._temp_prefix) as folder:
            local = self._local_store(Path(folder))
            stored = self._reading("read the state", self.objects.get, self.url)
            if stored is not None:
                local.path.write_bytes(stored.data)
            if journal:
                with local.journal_path.open("wb") as f:
                    for segment in self._reading(
                        "list the journal", self.objects.list, self.journal_prefix
                    ):
                        part = self._reading("read the journal", self.objects.get, segment)
                        if part is not None:
                            f.write(part.data if part.data.endswith(b"\n") else part.data + b"\n")
                if not local.journal_path.stat().st_size:
                    local.journal_path.unlink()
            yield local

    def _local_store(self, folder: Path) -> StateStore:
        name = PurePosixPath(self.url).name or "state.parquet"
        return StateStore(folder / name, self.segment_id, self.key_definition)

    def _named(self, local: StateStore, read: Callable[[], _T]) -> _T:
        """Run ``read`` on the local copy; its messages name the URL, not the copy."""
        try:
            return read()
        except StateError as error:
            text = str(error).replace(str(local.journal_path), f"{self.path}.journal/")
            raise StateError(text.replace(str(local.path), self.path)) from None

    # --- writing ---------------------------------------------------------------------

    def open_journal(self, action: str) -> RemoteJournal:
        segments = self._reading("list the journal", self.objects.list, self.journal_prefix)
        run = 1 + max((_run_number(s) for s in segments), default=0)

        def upload(seq: int, data: bytes) -> None:
            self._check_lock()
            self.objects.put(f"{self.journal_prefix}{run:06d}-{seq:06d}.jsonl", data)

        journal = RemoteJournal(
            upload, every_s=self.upload_every_s, every=self.upload_every, prefix=self._temp_prefix
        )
        journal.record(begin_event(self.segment_id, self.key_definition, action))
        self._journal = journal
        journal.on_close = self._forget_journal
        return journal

    def save(
        self,
        keys: pa.Array | Iterator[pa.Array],
        pending: pa.Table | None = None,
        ids: pa.Table | None = None,
    ) -> None:
        """Write the state object whole, then delete the journal segments it contains."""
        self._flush_journal()
        self._check_lock()
        with tempfile.TemporaryDirectory(prefix=self._temp_prefix) as folder:
            local = self._local_store(Path(folder))
            local.save(keys, pending, ids)
            data = local.path.read_bytes()
        self._writing("write the state", self.objects.put, self.url, data)
        for segment in self._writing("list the journal", self.objects.list, self.journal_prefix):
            self._writing("delete a folded journal segment", self.objects.delete, segment)
        if self._journal is not None:
            self._journal.folded()

    def set_aside(self) -> None:
        """Keep an untrusted state and journal for inspection, out of the way of this run."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        objects = self.objects
        urls = self._writing("list the journal", objects.list, self.journal_prefix)
        if self._writing("read the state", objects.get, self.url) is not None:
            urls.insert(0, self.url)
        for url in urls:
            aside = url.replace(self.url, f"{self.url}.set-aside-{stamp}", 1)
            self._writing("set the state aside", objects.copy, url, aside)
            self._writing("set the state aside", objects.delete, url)

    def clean_leftovers(self) -> None:
        """Remove the local copies a killed run left in the temporary folder (call while
        holding the lock). An object PUT itself leaves no temporary object behind."""
        for leftover in Path(tempfile.gettempdir()).glob(f"{self._temp_prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, job_name: str) -> Iterator[None]:
        """Hold the job's lease lock for the block; LockedError names the current holder."""
        with LeaseLock(self.objects, self.lock_url, job_name, self.lease_s).held() as lease:
            self._lock = lease
            try:
                yield
            finally:
                self._lock = None

    # --- run history -------------------------------------------------------------------

    def append_history(
        self,
        job: JobReport,
        *,
        started_at: datetime,
        command: str,
        finished_at: datetime | None = None,
    ) -> None:
        """Add this run to the history object (read, append, conditional write).

        Raises HistoryError when it cannot, as the local history does: the caller warns.
        """
        entry = history_entry(
            job,
            started_at=started_at,
            finished_at=finished_at or datetime.now(UTC),
            command=command,
        )
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        shown = display_url(self.history_url)
        with foreign_errors(lambda why: HistoryError(f"{shown}: {why}"), describe):
            for _ in range(5):
                current = self.objects.get(self.history_url)
                lines = current.data.splitlines(keepends=True) if current else []
                lines = [*lines[-(HISTORY_KEPT - 1) :], line]
                data = b"".join(x if x.endswith(b"\n") else x + b"\n" for x in lines)
                with contextlib.suppress(Conflict):
                    if current is None:
                        self.objects.create(self.history_url, data)
                    else:
                        self.objects.replace(self.history_url, data, current.etag)
                    return
        raise HistoryError(f"{shown}: changed by other runs 5 times in a row")

    def read_history(self, last: int | None = None) -> list[dict[str, Any]]:
        stored = self._reading("read the history", self.objects.get, self.history_url)
        if stored is None:
            return []
        return parse_history(stored.data.splitlines(), last, where=display_url(self.history_url))

    # --- helpers -------------------------------------------------------------------------

    def _flush_journal(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def _forget_journal(self) -> None:
        self._journal = None

    def _check_lock(self) -> None:
        if self._lock is not None:
            self._lock.check()

    def _reading(self, what: str, call: Callable[..., _T], *args: Any) -> _T:
        """Before anything is sent: a failure is a StateError (exit 2)."""
        with foreign_errors(
            lambda why: StateError(f"{self.where}: cannot {what}: {why}"), describe
        ):
            return call(*args)

    def _writing(self, what: str, call: Callable[..., _T], *args: Any) -> _T:
        """While a run changes the segment: a failure is a SyncError (exit 1)."""

        def failed(why: str) -> SyncError:
            return SyncError(
                f"{self.where}: cannot {what}: {why}; the journal segments uploaded so far "
                "hold what NP6 acknowledged, and the next run goes on from there"
            )

        with foreign_errors(failed, describe):
            return call(*args)


class RemoteJournal(Journal):
    """The local journal (fsynced per record), uploaded as segments by group commit."""

    def __init__(
        self, upload: Callable[[int, bytes], None], *, every_s: float, every: int, prefix: str
    ) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix=prefix))
        super().__init__(self._folder / "journal.jsonl")
        self.on_close: Callable[[], None] | None = None
        self._upload = upload
        self._every = every
        self._pending = bytearray()
        self._records = 0
        self._seq = 0
        self._folded = False
        self._buffer_lock = threading.Lock()
        self._upload_lock = threading.Lock()
        self._stop = threading.Event()
        self._every_s = every_s
        self._thread = threading.Thread(target=self._loop, name="journal-upload", daemon=True)
        self._thread.start()

    def record(self, event: dict[str, Any]) -> None:
        super().record(event)
        with self._buffer_lock:
            self._pending += orjson.dumps(event) + b"\n"
            self._records += 1
            due = self._records >= self._every
        if event.get("event") in ("clearing", "cleared"):
            self.flush()  # durable before the run goes on: see the module docstring
        elif due:
            with contextlib.suppress(Np6SyncError):
                self.flush()  # a failed upload stays pending: the next flush sends it

    def flush(self) -> None:
        """Upload what is pending as the next segment; SyncError when it cannot."""
        with self._upload_lock:
            with self._buffer_lock:
                data = bytes(self._pending)
            if not data or self._folded:
                return
            with foreign_errors(
                lambda why: SyncError(f"cannot upload the journal: {why}"), describe
            ):
                self._upload(self._seq, data)
            self._seq += 1
            with self._buffer_lock:
                del self._pending[: len(data)]
                self._records = 0

    def folded(self) -> None:
        """The state now contains every record: nothing more to upload."""
        with self._upload_lock, self._buffer_lock:
            self._folded = True
            self._pending.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.flush()
            except Np6SyncError as error:
                log.warning("%s; trying again", error)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.flush()
        except Np6SyncError as error:
            log.warning("%s", error)
        super().close()
        shutil.rmtree(self._folder, ignore_errors=True)
        if self.on_close is not None:
            self.on_close()


def _run_number(url: str) -> int:
    head = PurePosixPath(url).name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0
