"""The Python API, for orchestrators and notebooks: ``run`` and ``plan``, and the report.

    import sync
    report = sync.run("jobs/crm.yaml", source=frame)   # a path, or a pandas or polars
    report.exit_code                                    # DataFrame, or an Arrow table
    [(job.name, job.status, job.added) for job in report.jobs]

Problems found before anything is sent (the job, the settings, the key, the source)
raise the errors of ``sync.errors``, each with the ``exit_code`` the command line would
exit with; a job that ran returns its report, failed or refused included. Nothing here
installs a logging handler or a signal handler: the caller's stay as they are. While a run
lasts, np6-sync's loggers and urllib3's carry a filter that redacts the API key and a
looked-up value from their records, whatever handler the caller has.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sync.config import Settings, format_validation_error, load_settings, read_yaml
from sync.console.logs import redacting_loggers
from sync.errors import ConfigError, Np6SyncError, UsageError
from sync.report.model import JobReport, RunReport

if TYPE_CHECKING:
    from sync.config import Job
    from sync.fanout import SharedSource

__all__ = ["JobReport", "Np6SyncError", "RunReport", "plan", "run"]

JobSpec = str | os.PathLike[str] | Mapping[str, Any]


@redacting_loggers()
def run(
    job: JobSpec,
    source: Any = None,
    *,
    dry_run: bool = False,
    full_refresh: bool = False,
    force: bool = False,
    segment: str | None = None,
    api_key: str | None = None,
    settings: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Run a job (a job file, or its content as a dict) as `np6-sync run` does.

    ``source`` replaces the job's ``source.path``: a path, or a pandas or polars DataFrame
    or a pyarrow Table (the job's other ``source`` keys, ``where`` included, still
    apply). A fan-out job runs each of its segments (``segment`` picks one). The key is
    ``api_key``, else the environment variable the settings name (``NP6_API_KEY``).
    ``stop``, once set, stops the run as SIGTERM stops the command line.
    """
    from sync.commands.common import connector
    from sync.runner import RunOptions, run_job

    config = _settings(settings)
    jobs, shared = _jobs(job, source, segment)
    connect = connector(config, needed=not dry_run, api_key=api_key)
    shared(jobs[0])  # read now: a problem of the source raises before anything is sent
    options = RunOptions(dry_run=dry_run, full_refresh=full_refresh, force=force)
    report = RunReport()
    for one in jobs:
        report.jobs.append(
            run_job(one, options, connect, concurrency=config.concurrency, stop=stop, read=shared)
        )
        report.jobs[-1].rows_unmapped = shared.unmapped
    shared.release()
    return report


def plan(job: JobSpec, source: Any = None, **options: Any) -> RunReport:
    """What ``run`` would do: nothing is sent, and no key is needed."""
    return run(job, source, dry_run=True, **options)


def _jobs(job: JobSpec, source: Any, segment: str | None) -> tuple[list[Job], SharedSource]:
    from sync.fanout import jobs_from
    from sync.read.frames import LABEL, frame_source, is_frame

    if isinstance(job, Mapping):
        data, base_dir, where = dict(job), Path.cwd(), "job"
    else:
        path = Path(job)
        data, base_dir, where = read_yaml(path), path.resolve().parent, str(path)
    given = dict(data.get("source") or {})
    if is_frame(source):
        given = {**given, "path": LABEL, "format": "parquet"}
    elif isinstance(source, str | os.PathLike):
        given = {**given, "path": os.fspath(source)}
    elif source is not None:
        raise UsageError(
            "source must be a path, a pandas or polars DataFrame, or a pyarrow Table, "
            f"not {type(source).__name__}"
        )
    jobs, read = jobs_from({**data, "source": given}, base_dir, where)
    if segment is not None:
        jobs = [j for j in jobs if j.name == segment]
        if not jobs:
            raise UsageError(f"{where}: no job or segment is named {segment!r}")
    from sync.fanout import SharedSource

    shared = read if isinstance(read, SharedSource) else SharedSource(None, jobs)
    if is_frame(source):
        shared = SharedSource(
            shared.fan, jobs, read=lambda _, columns: frame_source(source, columns)
        )
    return jobs, shared


def _settings(settings: str | os.PathLike[str] | Mapping[str, Any] | None) -> Settings:
    if not isinstance(settings, Mapping):
        return load_settings(None if settings is None else Path(settings))
    try:
        return Settings.model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError("settings", format_validation_error(exc)) from None
