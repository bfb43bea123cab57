"""What the commands share: the settings file, the NP6 connector, stop signals, and one
way to go through job files."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sync.errors import KeyMissingError, Np6SyncError, UsageError, as_error

if TYPE_CHECKING:
    from sync.config import Job, Settings
    from sync.job.runs import Entry
    from sync.np6.client import NP6Client

log = logging.getLogger("np6sync")
DEFAULT_CONFIG = Path("config/np6.yaml")


STDOUT = "-"


def output_path(text: str) -> Path:
    """A file an option writes; ``-`` is stdout (``./-`` names a file called -)."""
    return Path(text)


def is_stdout(path: Path | None) -> bool:
    return path is not None and str(path) == STDOUT


def stdout_outputs(args: object) -> list[str]:
    """The options of ``args`` given as ``-`` (stdout), as ``--report-json``."""
    return [
        "--" + name.replace("_", "-")
        for name, value in sorted(vars(args).items())
        if isinstance(value, Path) and is_stdout(value)
    ]


def config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    try:
        present = DEFAULT_CONFIG.is_file()
    except OSError:  # there, but not ours to read: load_settings says so
        present = True
    return DEFAULT_CONFIG if present else None


def connector(
    settings: Settings, needed: bool, api_key: str | None = None
) -> Callable[[], NP6Client]:
    """Build NP6 clients on demand: a run with nothing to do opens no connection. The key
    is ``api_key`` when given (the Python API), else the settings' environment variable."""
    from sync.console.logs import add_secret
    from sync.np6.key import check_api_key

    raw = os.environ.get(settings.api_key_env, "") if api_key is None else api_key
    where = settings.api_key_env if api_key is None else "api_key"
    if needed and not raw.strip():
        raise KeyMissingError(
            f"the API key is not set: export it in {settings.api_key_env} (the variable "
            "the settings' api_key_env names); plan and validate need none"
        )
    key = check_api_key(raw, where) if raw.strip() else ""
    add_secret(key)
    deadline = time.monotonic() + settings.retry.deadline
    factory: list[Callable[[], NP6Client]] = []
    made = threading.Lock()

    def connect() -> NP6Client:
        # requests and the client load with the first job that sends: one factory, so every
        # job shares its rate limit and concurrency budget (the account's quota is one).
        with made:
            if not factory:
                from sync.np6.client import client_factory

                factory.append(client_factory(settings, key, deadline=deadline, key_name=where))
        return factory[0]()

    return connect


def load_jobs(
    paths: Sequence[str], *, shared: str = "refuse", segment: str | None = None
) -> list[Entry]:
    """Each job loaded (a fan-out file gives one per segment, sharing one reader of its
    source), or the error that stops that one job, in the order given.

    Jobs of this run that share a segment or a state (``sync.job.conflicts``) are refused
    together (``shared="refuse"``: exit 2, naming the other files) or only warned about
    (``"warn"``, for commands that change nothing). ``segment`` keeps the job or segment
    of that name only.
    """
    from sync.job.conflicts import conflicts
    from sync.job.fanout import load_job_file
    from sync.job.runs import Entry

    loaded: list[Entry] = []
    for path in paths:
        try:
            found_jobs, read = load_job_file(path)
            loaded += [Entry(path, job, read) for job in found_jobs]
        except Exception as failure:  # whatever it is, this job fails and the next goes on
            loaded.append(Entry(path, as_error(failure, f"load the job {path}")))
    if segment is not None:
        loaded = pick_segment(loaded, segment, paths)
    jobs = [(i, e.job) for i, e in enumerate(loaded) if not isinstance(e.job, Np6SyncError)]
    found = conflicts([(Path(loaded[i].path), job) for i, job in jobs])
    for position, why in found.items():
        index = jobs[position][0]
        path = loaded[index].path
        if shared == "refuse":
            loaded[index] = Entry(path, UsageError(f"{path}: {why}"), loaded[index].shared)
        else:
            log.warning("%s: %s", path, why)
    return loaded


def pick_segment(loaded: list[Entry], segment: str, paths: Sequence[str]) -> list[Entry]:
    """The jobs ``segment`` names (files that failed to load stay, to be reported): by
    job name, or by segment id when all digits and no name matches; when a name and
    another job's id both match, which one is meant cannot be told."""
    by_name: list[int] = []
    by_id: list[int] = []
    names: list[str] = []
    for index, entry in enumerate(loaded):
        job = entry.job
        if isinstance(job, Np6SyncError):
            continue
        if job.name == segment:
            by_name.append(index)
        if segment.isdigit() and job.segment_id == int(segment):
            by_id.append(index)
            names.append(job.name)
    if by_name and by_id and by_name != by_id:
        raise UsageError(
            f"--segment {segment} names the job {segment!r} and also the segment id of "
            f"{', '.join(sorted(set(names)))}: rename the job, or name the other one"
        )
    chosen = set(by_name or by_id)
    kept = [e for i, e in enumerate(loaded) if i in chosen or isinstance(e.job, Np6SyncError)]

    if not kept:
        what = "no job or segment is named" if not segment.isdigit() else "no job is named"
        also = f" and no job has segment id {segment}" if segment.isdigit() else ""
        raise UsageError(f"{what} {segment!r}{also} in {', '.join(paths)}")
    return kept


def each_job(
    paths: Sequence[str],
    act: Callable[[Job, str], int],
    failed: Callable[[str, Np6SyncError], None] | None = None,
    *,
    shared: str = "refuse",
    segment: str | None = None,
) -> int:
    """``act(job, path)`` on each job file in turn (each segment of a fan-out), as `run`
    goes through them: a file that does not load, or a job that fails, is reported (by
    ``failed``) and the next job goes on. Returns the highest exit code."""
    worst = 0
    for entry in load_jobs(paths, shared=shared, segment=segment):
        path, job = entry.path, entry.job
        try:
            if isinstance(job, Np6SyncError):
                raise job
            code = act(job, path)
        except Exception as failure:  # whatever it is, this job fails and the next goes on
            error = as_error(failure, f"finish the job {path}")
            (failed or report_failure)(path, error)
            code = error.exit_code
        worst = max(worst, code)
    return worst


def report_failure(path: str, error: Np6SyncError) -> None:
    from sync.console.logs import say

    say(f"np6-sync: {error}", "ERROR")
    if error.__cause__ is not None:
        log.debug("the cause, for a report", exc_info=error.__cause__)


class StopOnSignals:
    """The first SIGTERM/SIGINT asks the run to stop: before the first change, nothing is
    sent; after it, once the chunks in flight are acknowledged and saved."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self.event

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()  # first: a broken stderr must not keep the jobs sending
        from sync.console.logs import say

        say(
            f"np6-sync: {signal.Signals(signum).name} received: stopping (once sending has "
            "begun, after the chunks in flight, whose state is saved)",
            "WARNING",
        )

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
