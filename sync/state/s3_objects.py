"""S3 objects for a remote state: whole-object reads and writes, conditional writes, a lease.

Object PUTs are atomic (readers see the old object or the new one), and S3 does
conditional writes: ``If-None-Match: *`` creates an object only when there is none,
``If-Match: <etag>`` replaces or deletes it only when nobody changed it since. The lock
is built on them:

- ``<state>.lock`` is created with If-None-Match; a second run finds it and exits 4
  naming the holder (pid, host, start time, lease end);
- a killed container cannot delete its lock, so the lock is a lease: the holder rewrites
  it every ``lease_s / 3`` (If-Match), and a lock not rewritten for ``lease_s`` (by the
  server's clock, so the machines' clocks do not matter) is taken over with If-Match;
  a holder on this very machine whose process is gone is taken over at once;
- releasing deletes it (If-Match).

A store that ignores conditional writes would let two runs push at once: it is detected
when the lock is taken, and the run stops rather than run unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from fsspec.asyn import sync

from sync.errors import LockedError, StateError, StorageError, foreign_errors
from sync.read.remote import describe, display_url, filesystem

log = logging.getLogger("np6sync.remote")
LEASE_S = 600.0


class Conflict(Exception):
    """A conditional write found the object there, changed, or gone."""


@dataclass(frozen=True)
class Stored:
    data: bytes
    etag: str
    age_s: float  # since the object was last written, by the server's clock


class S3Objects:
    """Whole objects of one bucket, by URL, through s3fs' client (no listing cache)."""

    def __init__(self, url: str) -> None:
        self.fs, _ = filesystem(url)

    def get(self, url: str) -> Stored | None:
        bucket, key = self._split(url)
        try:
            out = sync(self.fs.loop, self._get, bucket, key)
        except FileNotFoundError:
            return None
        data, meta = out
        headers = meta.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        now = parsedate_to_datetime(headers["date"]) if "date" in headers else datetime.now(UTC)
        age = (now - meta["LastModified"]).total_seconds()
        return Stored(data, meta["ETag"], age)

    async def _get(self, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
        out = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with out["Body"] as body:
            data = await body.read()
        return data, out

    def put(self, url: str, data: bytes) -> str:
        return self._put(url, data)

    def create(self, url: str, data: bytes) -> str:
        """Write ``url`` only if there is no such object; Conflict if there is."""
        return self._put(url, data, IfNoneMatch="*")

    def replace(self, url: str, data: bytes, etag: str) -> str:
        """Write ``url`` only if it is still the version ``etag``; Conflict otherwise."""
        return self._put(url, data, IfMatch=etag)

    def _put(self, url: str, data: bytes, **condition: str) -> str:
        bucket, key = self._split(url)
        try:
            out = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except Exception as error:  # botocore's or s3fs's: only a 412 is ours, the rest rises
            if condition and _conflict(error):
                raise Conflict(url) from None
            raise
        return str(out["ETag"])

    def delete(self, url: str, etag: str | None = None) -> None:
        bucket, key = self._split(url)
        condition = {"IfMatch": etag} if etag else {}
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, **condition)
        except FileNotFoundError:
            if etag:
                raise Conflict(url) from None
        except Exception as error:  # botocore's or s3fs's: only a 412 is ours, the rest rises
            if etag and _conflict(error):
                raise Conflict(url) from None
            raise

    def copy(self, source: str, target: str) -> None:
        bucket, key = self._split(source)
        to_bucket, to_key = self._split(target)
        self.fs.call_s3(
            "copy_object", Bucket=to_bucket, Key=to_key, CopySource={"Bucket": bucket, "Key": key}
        )

    def list(self, prefix: str) -> list[str]:
        """The URLs of the objects whose key starts with ``prefix``, in key order."""
        bucket, key = self._split(prefix)
        urls: list[str] = []
        token: dict[str, str] = {}
        while True:
            out = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, **token)
            urls.extend(f"s3://{bucket}/{item['Key']}" for item in out.get("Contents", []))
            if not out.get("IsTruncated"):
                return sorted(urls)
            token = {"ContinuationToken": out["NextContinuationToken"]}

    def _split(self, url: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(url)
        return str(bucket), str(key)


def write_whole(url: str, data: bytes | None, what: str) -> None:
    """``data`` as the object ``url`` (one PUT: readers see the old object or the new one),
    or no object there when ``data`` is None; a StorageError naming the URL when it fails."""
    shown = display_url(url)
    with foreign_errors(lambda why: StorageError(f"{shown}: cannot {what}: {why}"), describe):
        objects = S3Objects(url)
        if data is None:
            objects.delete(url)
        else:
            objects.put(url, data)


def _conflict(error: BaseException) -> bool:
    """412 Precondition Failed, 409 ConditionalRequestConflict, or the object gone."""
    cause = error.__cause__ if error.__cause__ is not None else error
    response = getattr(cause, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (
        409,
        412,
    )


class LeaseLock:
    """The job's lock on object storage: a lease renewed by a thread while the run lives."""

    def __init__(self, objects: S3Objects, url: str, job_name: str, lease_s: float) -> None:
        self.objects = objects
        self.url = url
        self.job_name = job_name
        self.lease_s = lease_s
        self.lost: str | None = None  # why this run no longer holds the lock
        self._etag = ""
        self._started = datetime.now(UTC)
        self._run_id = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[LeaseLock]:
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    def check(self) -> None:
        """Raise LockedError when another run may have taken the lock over."""
        if self.lost is not None:
            raise LockedError(f"job {self.job_name}: {self.lost} (lock {display_url(self.url)})")

    def _acquire(self) -> None:
        shown = display_url(self.url)
        with foreign_errors(
            lambda why: StateError(f"{shown}: cannot take the lock: {why}"), describe
        ):
            self._try_acquire()

    def _try_acquire(self) -> None:
        holder: dict[str, Any] = {}
        for _ in range(4):
            try:
                self._etag = self.objects.create(self.url, self._body())
                self._check_conditional_writes()
                return self._start_renewing()
            except Conflict:
                pass
            except OSError as error:
                if error.errno == errno.ENOSYS:  # 501 Not Implemented: no conditional writes
                    raise StateError(self._unsupported("refused a conditional write")) from None
                raise
            current = self.objects.get(self.url)
            if current is None:
                continue  # released meanwhile: try again
            holder = _parse(current.data)
            if holder.get("run_id") == self._run_id:  # our own create, retried by the client
                self._etag = current.etag
                return self._start_renewing()
            if not self._stale(holder, current):
                break
            with contextlib.suppress(Conflict):
                self._etag = self.objects.replace(self.url, self._body(), current.etag)
                log.warning(
                    "took over the lock of job %s from pid %s on host %s (%s)",
                    self.job_name,
                    holder.get("pid", "?"),
                    holder.get("host", "?"),
                    "its process is gone" if self._dead_here(holder) else "its lease expired",
                    extra={"job": self.job_name},
                )
                return self._start_renewing()
        raise LockedError(
            f"job {self.job_name} is running elsewhere: pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, started {holder.get('started_at', '?')}, lease until "
            f"{holder.get('expires_at', '?')} (lock {display_url(self.url)})"
        )

    def _check_conditional_writes(self) -> None:
        try:
            self.objects.create(self.url, self._body())
        except Conflict:
            return
        self.objects.delete(self.url)
        raise StateError(self._unsupported("ignored a conditional write"))

    def _unsupported(self, what: str) -> str:
        return (
            f"{display_url(self.url)}: the object store {what} (If-None-Match): np6-sync "
            "cannot lock a state there, and will not run unlocked; keep the state on a store "
            "with conditional writes (AWS S3, MinIO) or local"
        )

    def _stale(self, holder: dict[str, Any], current: Stored) -> bool:
        try:
            lease = float(holder.get("lease_s", LEASE_S))
        except (TypeError, ValueError):
            lease = LEASE_S
        return current.age_s >= lease or self._dead_here(holder)

    def _dead_here(self, holder: dict[str, Any]) -> bool:
        """The holder ran on this machine, in this pid namespace, and its process is gone."""
        here = _machine()
        if not here or any(holder.get(k) != v for k, v in here.items()):
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _body(self) -> bytes:
        now = datetime.now(UTC)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self._started.isoformat(timespec="seconds"),
            "renewed_at": now.isoformat(timespec="seconds"),
            "expires_at": (now + timedelta(seconds=self.lease_s)).isoformat(timespec="seconds"),
            "lease_s": self.lease_s,
            "job": self.job_name,
            "run_id": self._run_id,
            **_machine(),
        }
        return json.dumps(holder).encode()

    def _start_renewing(self) -> None:
        self._renewer = threading.Thread(target=self._renew, name="lock-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.lease_s / 3):
            try:
                self._etag = self.objects.replace(self.url, self._body(), self._etag)
                renewed = time.monotonic()
            except Conflict:
                if self._still_ours():  # our renewal, applied, then retried by the client
                    renewed = time.monotonic()
                    continue
                self.lost = "another run took the lock over"
                return
            except Exception as error:  # the renewing thread's edge: it must not die silently
                log.warning("the lock was not renewed: %s", describe(error))
                if time.monotonic() - renewed >= self.lease_s:
                    self.lost = "the lock's lease expired: it could not be renewed"
                    return

    def _still_ours(self) -> bool:
        try:
            current = self.objects.get(self.url)
        except Exception:  # any failure to read the lock back: cannot tell
            return False  # the safe answer
        if current is None or _parse(current.data).get("run_id") != self._run_id:
            return False
        self._etag = current.etag
        return True

    def _release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost is not None:
            return
        try:
            self.objects.delete(self.url, self._etag)
        except Exception as error:  # the run's work is done: a lock left expires with its lease
            log.warning("the lock was not released: %s", describe(error))


def _machine() -> dict[str, str]:
    """What tells this machine and pid namespace from others (Linux); {} elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return {}
    return {"host": socket.gethostname(), "boot_id": boot, "pid_namespace": namespace}


def _parse(data: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}
