"""The seal: proof that a source file is the one the state was last checked against.

Most scheduled runs find their file unchanged. After a run that left the segment equal to
the source, ``<state>.seal.json`` records a SHA-256 of the source file's bytes, a digest of
everything that shapes the keys (the job, the media type, np6-sync's and the state's
versions), the state file's identity and the run's counts. The next run on the very same
bytes, with the same job and the same state, then answers from the seal without reading
the file, building keys, or importing pyarrow. Any doubt and it reads the file as before:
a seal never says "unchanged" from a file's size or time, only from its bytes.

This module imports no pyarrow, polars or requests: the quick path's start-up is its cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.errors import LockedError, translated
from sync.state.files import atomic_write, open_private
from sync.version import version

if TYPE_CHECKING:
    from sync.config import Job
    from sync.report.model import JobReport

STATE_VERSION = 2  # 2: the state keeps contact ids learned by look-ups (local.py)
SEAL_VERSION = 1
_READ = 1 << 20  # hashing in 1 MiB reads keeps up with the disk, in little memory
COUNTS = (
    "rows_read", "rows_filtered", "rows_rejected", "duplicate_keys", "keys", "rejects_by_reason",
    "rejects_file",
)  # fmt: skip


def seal_path(state: Path) -> Path:
    return state.with_name(state.name + ".seal.json")


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hardware-accelerated on most CPUs: ~1 GB/s)."""
    digest = hashlib.sha256()
    buffer = bytearray(_READ)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def job_shape(job: Job, media_type: str | None, account: str | None = None) -> str:
    """A digest of everything that could change the keys, or the plan, built from the file.

    The whole job is in it, not only its key definition: a doubt costs one full read. So
    are the time zone and the versions of the libraries that read the file and built the
    keys (a condition on the date is never sealed at all: ``sync.job.route``).
    """
    shape = {
        "np6sync": version(),
        "libraries": {name: _version(name) for name in ("pyarrow", "polars", "sqlglot")},
        "time_zone": [os.environ.get("TZ"), *time.tzname],
        "state_version": STATE_VERSION,
        "seal_version": SEAL_VERSION,
        "job": job.model_dump(mode="json"),
        "source": str(job.source_path.resolve()) if job.source_url is None else None,
        "media_type": media_type,
        # The NP6 account the state speaks of (its base URL): a job moved from staging to
        # production is not answered from staging's seal.
        "account": account,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def _version(distribution: str) -> str | None:
    """The installed version, from its metadata: the quick path imports none of them."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _identity(path: Path) -> list[int] | None:
    """What changes whenever the file is replaced (every state save is a rename)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class SourceProof:
    """The source's digest, taken before it was read, and its identity at that moment."""

    path: Path
    digest: str
    identity: list[int] | None

    @classmethod
    def take(cls, path: Path, identity: list[int] | None = None) -> SourceProof | None:
        """None when the file cannot be hashed (its reader then says what is wrong), or
        when it is no longer the file of ``identity`` (taken before the read began)."""
        try:
            before = _identity(path) if identity is None else identity
            digest = file_digest(path)
            if before is None or _identity(path) != before:
                return None  # changed while it was hashed, or since the read began
            return cls(path, digest, before)
        except OSError:
            return None

    @classmethod
    def beside(cls, path: Path) -> Callable[[], SourceProof | None]:
        """``take`` on a thread of its own, while the reader reads (hashlib and pyarrow both
        let go of the GIL): call the result for the proof once the file was read. The
        file's identity is taken here, before the reader starts, and not on the thread: a
        file replaced before the thread ran would prove bytes the reader never read."""
        done: list[SourceProof | None] = []
        try:
            identity = _identity(path)
        except OSError:
            identity = None
        if identity is None:
            return lambda: None
        thread = threading.Thread(target=lambda: done.append(cls.take(path, identity)), daemon=True)
        thread.start()

        def proof() -> SourceProof | None:
            thread.join()
            return done[0] if done else None

        return proof

    def still_valid(self) -> bool:
        """False if the file changed while it was read: then what was read is unproven."""
        return self.identity is not None and _identity(self.path) == self.identity


def proof_beside(
    job: Job, *, sealed: bool, downloaded: Path | None = None
) -> Callable[[], SourceProof | None]:
    """The proof of the job's source, taken while it is read, when its route is ``sealed``
    (``sync.job.route``): the job's own file, or its URL source ``downloaded`` first."""
    source = job.source_path if job.source_url is None else downloaded
    if not sealed or source is None:
        return lambda: None
    return SourceProof.beside(source)


def write_seal(state: Path, shape: str, proof: SourceProof, counts: dict[str, Any]) -> None:
    """Record that the state holds exactly the keys of ``proof``'s bytes (call with the
    job's lock held, after the state was saved or found equal)."""
    identity = _identity(state)
    if identity is None or not proof.still_valid():
        drop_seal(state)
        return
    seal = {
        "seal_version": SEAL_VERSION,
        "shape": shape,
        "source_sha256": proof.digest,
        "state": identity,
        "counts": {name: counts[name] for name in COUNTS},
        "sealed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_write(seal_path(state)) as f:
        f.write(json.dumps(seal).encode())


def seal_run(
    job: Job,
    media_type: str | None,
    proof: SourceProof,
    report: JobReport,
    account: str | None = None,
) -> None:
    """After a run that left the segment equal to the source (with the job's lock held)."""
    with translated("save the state's seal"):
        write_seal(job.state_path, job_shape(job, media_type, account), proof, asdict(report))


def drop_seal(state: Path) -> None:
    """Before the state changes: a seal must never outlive the state it vouches for."""
    seal_path(state).unlink(missing_ok=True)


def _valid_seal(state: Path, shape: str) -> dict[str, Any] | None:
    """The seal, when it speaks for this job and for the state file as it is now, and no
    run is unfinished; None at the least doubt."""
    journal = state.with_name(state.name + ".journal")
    if os.path.lexists(journal):  # an unfinished run, perhaps an unfinished clear
        return None
    try:
        seal = json.loads(seal_path(state).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(seal, dict) or seal.get("seal_version") != SEAL_VERSION:
        return None
    if seal.get("shape") != shape or seal.get("state") != _identity(state):
        return None
    return seal


def state_vouched(state: Path, shape: str) -> bool:
    """Whether the state file is the very one this job's last run saved or found equal to
    its source, untouched since by anyone: what its metadata says of its keys holds."""
    return _valid_seal(state, shape) is not None


def unchanged_counts(state: Path, shape: str, source: Path) -> dict[str, Any] | None:
    """The counts of the last run, when the source, the job and the state are all those
    the seal records and no run is unfinished; None at the least doubt."""
    seal = _valid_seal(state, shape)
    if seal is None:
        return None
    counts = seal.get("counts")
    if not isinstance(counts, dict) or any(name not in counts for name in COUNTS):
        return None
    try:
        same = file_digest(source) == seal.get("source_sha256")
    except OSError:
        return None  # the full read reports what is wrong with the file
    return counts if same else None


@contextlib.contextmanager
def job_lock(lock_path: Path, job_name: str) -> Iterator[None]:
    """Hold the job's lock for the block; LockedError names the current holder."""
    fd = open_private(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(_holder_message(fd, lock_path, job_name)) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "job": job_name,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        # Closing the descriptor releases the flock; the file stays, because
        # unlinking a lock file others may have open races with them.
        os.close(fd)


def _holder_message(fd: int, lock_path: Path, job_name: str) -> str:
    try:  # an empty lock file (a holder that died writing it) is no JSON either
        holder = json.loads(os.pread(fd, 4096, 0))
    except ValueError:
        holder = {}
    return (
        f"job {job_name} is running elsewhere: pid {holder.get('pid', '?')} on host "
        f"{holder.get('host', '?')}, started {holder.get('started_at', '?')} "
        f"(lock {lock_path})"
    )
