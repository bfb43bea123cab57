"""The run history: one JSON line per run, beside the job's state file."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.report.model import JobReport
from sync.state.files import open_private, write_all
from sync.version import version

log = logging.getLogger("np6sync.history")


def history_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".history.jsonl")


def append_history(
    state_path: Path,
    job: JobReport,
    *,
    started_at: datetime,
    command: str,
    finished_at: datetime | None = None,
) -> None:
    """Append one line for this run.

    O_APPEND puts the line at the end whoever else writes; fsync keeps it through a power cut.
    """
    entry = history_entry(
        job, started_at=started_at, finished_at=finished_at or datetime.now(UTC), command=command
    )
    line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    path = history_path(state_path)
    fd = open_private(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        # A line torn by a crash would swallow this one: end it first, so only it is lost.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def history_entry(
    job: JobReport, *, started_at: datetime, finished_at: datetime, command: str
) -> dict[str, Any]:
    return {
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "job": job.name,
        "segment_id": job.segment_id,
        "command": command,
        "status": job.status,
        "action": job.action,
        "rows_read": job.rows_read,
        "keys": job.keys,
        "added": job.added,
        "removed": job.removed,
        "targets_sent": job.targets_sent,
        "targets_accepted": job.targets_accepted,
        "requests": {
            "put": job.requests.put,
            "delete": job.requests.delete,
            "post": job.requests.post,
            "retries": job.requests.retries,
        },
        "duration_s": round(job.duration_s, 3),
        "error": job.error,
        "exit_code": job.exit_code,
        "version": version(),
    }


def read_history(state_path: Path, last: int | None = None) -> list[dict[str, Any]]:
    """The runs recorded for this state, oldest first; ``last`` keeps only the newest few.

    A line that does not parse (a run killed while writing it) is skipped, not fatal: the
    history is for people, and must not stop a run or a report.
    """
    if last is not None and last < 0:
        raise ValueError(f"last must be 0 or more, not {last}")
    path = history_path(state_path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        return parse_history(f, last, where=str(path))


def parse_history(
    lines: Iterable[bytes], last: int | None = None, *, where: str = "history"
) -> list[dict[str, Any]]:
    """The entries of history lines (a file, or a remote state's history object)."""
    if last is not None and last < 0:
        raise ValueError(f"last must be 0 or more, not {last}")
    entries: deque[dict[str, Any]] = deque(maxlen=last)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            log.debug("%s: line %d is not a JSON object; skipped", where, number)
            continue
        entries.append(entry)
    return list(entries)


def _iso(moment: datetime) -> str:
    # A naive datetime is taken as local time, as datetime.astimezone does.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
