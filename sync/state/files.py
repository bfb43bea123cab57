"""How np6-sync writes the files that hold keys or personal data.

State, journal, lock, history, rejects and verify listings name contacts (emails,
customer numbers), so each is readable by its owner only (0600, tightened when an
older version left it wider), in folders np6-sync creates 0700. None is ever written
through a symbolic link: a link planted where np6-sync writes would send personal data,
or a truncation, wherever it points, so it is refused (StateError, exit 2) instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync.errors import StateError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_TEMP_MARK = ".tmp-"


def private_dir(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700; an existing one is kept as is
    (a mounted volume, say, is the operator's to set)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(mode=PRIVATE_DIR)
            os.chmod(candidate, PRIVATE_DIR)  # the umask may have taken bits away


def open_private(path: Path, flags: int) -> int:
    """``os.open`` for a private file: never through a link, 0600 even if it existed."""
    private_dir(path.parent)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StateError(_link_message(path)) from None
        raise
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Any]:
    """Write ``path`` whole or not at all: temp file, fsync, rename, directory fsync.

    The rename replaces a link at ``path`` itself, never what it points to.
    """
    private_dir(path.parent)
    temp = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def leftovers(path: Path) -> Iterator[Path]:
    """Temp files of interrupted ``atomic_write`` calls for ``path``."""
    if path.parent.is_dir():
        yield from path.parent.glob(f".{path.name}{_TEMP_MARK}*")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all is written: a nearly full disk may take part of a line, and
    only the next write says ENOSPC."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def drop_torn_tail(fd: int) -> None:
    """Cut a line that a crash or a full disk left half-written at the end of an
    append-only file: it was never complete, so nothing it says was recorded, and the
    lines appended after it must not follow a damaged one."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_message(path: Path) -> str:
    return (
        f"{path} is a symbolic link: np6-sync never writes state or personal data through a "
        "link; remove it (or point state.path at the real folder)"
    )
