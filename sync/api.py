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

import argparse
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
    from sync.job.runs import Entry

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
    metrics_file: str | os.PathLike[str] | None = None,
    pushgateway: str | None = None,
) -> RunReport:
    """Run a job (a job file, or its content as a dict) as `np6-sync run` does: the same
    orchestrator (``sync.job.runs``), so the same routes, seal, history and report.

    ``source`` replaces the job's ``source.path``: a path, or a pandas or polars DataFrame
    or a pyarrow Table (the job's other ``source`` keys, ``where`` included, still
    apply). A fan-out job runs each of its segments (``segment`` picks one). The key is
    ``api_key``, else the environment variable the settings name (``NP6_API_KEY``).
    ``settings``: a settings file's path (pass it explicitly: an orchestrator's working
    directory is arbitrary) or its content. ``stop``, once set, stops the run as SIGTERM
    stops the command line. ``metrics_file`` and ``pushgateway``: as ``--metrics-file``
    and ``--pushgateway`` (off by default).
    """
    from sync.commands.common import connector
    from sync.job.runs import Request, run_entries

    config = _settings(settings)
    entries = _entries(job, source, segment)
    connect = connector(config, needed=not dry_run, api_key=api_key)
    request = Request(
        config,
        connect,
        stop or threading.Event(),
        dry_run=dry_run,
        full_refresh=full_refresh,
        force=force,
    )
    ran = run_entries(entries, request)
    _raise_before_sending(ran.report)
    if metrics_file is not None or pushgateway is not None:
        from sync.commands.metrics import publish_metrics

        wanted = argparse.Namespace(
            metrics_file=None if metrics_file is None else Path(metrics_file),
            pushgateway=pushgateway,
        )
        publish_metrics(wanted, ran.report.jobs, ran.jobs)
    return ran.report


def plan(job: JobSpec, source: Any = None, **options: Any) -> RunReport:
    """What ``run`` would do: nothing is sent, and no key is needed."""
    return run(job, source, dry_run=True, **options)


def _raise_before_sending(report: RunReport) -> None:
    """A problem of the source (unreadable, a column missing, a value unmapped) that
    stopped every job at its read raises, as nothing was sent; once one job got further
    (a fan-out's first segment sent, the next one's condition failed), the report is
    returned, failures included."""
    failures = [job.failure for job in report.jobs if job.phase == "read"]
    if report.jobs and len(failures) == len(report.jobs) and failures[0] is not None:
        raise failures[0]


def _entries(job: JobSpec, source: Any, segment: str | None) -> list[Entry]:
    from sync.job.fanout import SharedSource, jobs_from
    from sync.job.runs import Entry

    frame = _is_frame(source)
    if isinstance(job, Mapping):
        data, base_dir, where = dict(job), Path.cwd(), "job"
    else:
        path = Path(job)
        data, base_dir, where = read_yaml(path), path.resolve().parent, str(path)
    given = dict(data.get("source") or {})
    if frame:
        from sync.read.frames import LABEL

        given = {**given, "path": LABEL, "format": "parquet"}
    elif isinstance(source, str | os.PathLike):  # relative to the caller, as Python reads
        given = {**given, "path": os.path.abspath(os.fspath(source))}
    elif source is not None:
        raise UsageError(
            "source must be a path, a pandas or polars DataFrame, or a pyarrow Table, "
            f"not {type(source).__name__}"
        )
    jobs, shared = jobs_from({**data, "source": given}, base_dir, where)
    if segment is not None:
        jobs = [j for j in jobs if j.name == segment]
        if not jobs:
            raise UsageError(f"{where}: no job or segment is named {segment!r}")
    if frame:
        from sync.read.frames import frame_source

        fan = shared.fan if shared is not None else None

        shared = SharedSource(
            fan, jobs, read=lambda _, columns: frame_source(source, columns), frame=True
        )
    return [Entry(where, one, shared) for one in jobs]


def _settings(settings: str | os.PathLike[str] | Mapping[str, Any] | None) -> Settings:
    if not isinstance(settings, Mapping):
        return load_settings(None if settings is None else Path(settings))
    try:
        return Settings.model_validate(dict(settings))
    except ValidationError as exc:
        raise ConfigError("settings", format_validation_error(exc)) from None


def _is_frame(source: Any) -> bool:
    """A DataFrame or a Table handed in; a path is never, and loads no pyarrow to say so."""
    if source is None or isinstance(source, str | os.PathLike):
        return False
    from sync.read.frames import is_frame

    return is_frame(source)
