"""`np6-sync run` and `np6-sync plan`: each job's segment made equal to its source (or,
for plan, what that would take)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sync.commands.common import (
    StopOnSignals,
    config_path,
    connector,
    is_stdout,
    load_jobs,
    report_failure,
    stdout_outputs,
)
from sync.config import Job, job_identity, load_settings
from sync.console.logs import is_terminal, resolve_format, say
from sync.console.output import output_failed, show
from sync.console.progress import Board, Progress, make_progress
from sync.errors import EXIT_FAILED, Np6SyncError, UsageError, as_error, translated
from sync.job.runs import Request, run_entries
from sync.report.markdown import write_summary
from sync.report.model import JobReport, RunReport
from sync.report.table import render_table

log = logging.getLogger("np6sync")


def run(args: argparse.Namespace) -> int:
    """Parse, run the jobs (sync.job.runs decides and does the rest), render."""
    _outputs_writable(args)  # before anything is sent: a report nobody can write is exit 2
    phase = "settings"
    try:
        settings = load_settings(config_path(args.config))
        phase = "key"
        connect = connector(settings, needed=not args.dry_run)
        phase = "job"
        entries = load_jobs(args.jobs, segment=getattr(args, "segment", None))
    except Np6SyncError as error:
        return _failed_before_jobs(args, error, phase)
    with StopOnSignals() as stop:
        request = Request(
            settings,
            connect,
            stop,
            _progress_for(args),
            dry_run=args.dry_run,
            full_refresh=args.full_refresh,
            force=args.force,
            verify=args.verify,
            parallel=int(getattr(args, "parallel", 1) or 1),
        )
        ran = run_entries(entries, request)
    return _write_reports(ran.report, args, ran.jobs)


_OUTPUTS = ("report_json", "summary_md", "metrics_file")


def _outputs_writable(args: argparse.Namespace) -> None:
    """Each file the run is asked to write goes to a folder that exists and may be
    written: found out now, not after the segment changed."""
    for name in _OUTPUTS:
        path = getattr(args, name, None)
        if not isinstance(path, Path) or is_stdout(path):
            continue
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            option = "--" + name.replace("_", "-")
            raise UsageError(
                f"{option} {path}: its folder {folder} does not exist or cannot be written; "
                "nothing was sent"
            )


def _failed_before_jobs(args: argparse.Namespace, error: Np6SyncError, phase: str) -> int:
    """The settings, the key or the job list failed: no job ran, yet each job file still
    gets its report and metrics, with its name and segment when the file tells them."""
    report_failure("", error)
    failed = [JobReport(*job_identity(path)).fail(error, phase) for path in args.jobs]
    return _write_reports(RunReport(failed), args, {})


def _progress_for(args: argparse.Namespace) -> Callable[[str], Progress]:
    """Each job's progress: side by side on a terminal, one line per running job."""
    parallel = int(getattr(args, "parallel", 1) or 1)
    terminal = is_terminal(sys.stderr) and resolve_format(args.log_format, sys.stderr) == "text"
    if parallel > 1 and terminal and not args.quiet:
        return Board(sys.stderr).line
    return lambda job: make_progress(sys.stderr, args.log_format, quiet=args.quiet)


def plan(args: argparse.Namespace) -> int:
    """`plan`; with --detailed-exitcode, as Terraform: 0 nothing to do, 2 changes pending,
    1 for every failure (usage, job, source, state, a safeguard's refusal)."""
    if not args.detailed_exitcode:
        return run(args)
    try:
        return run(args)
    except Exception as failure:  # the edge of --detailed-exitcode: every failure is 1
        report_failure("", as_error(failure, "plan"))

        return EXIT_FAILED


def _write_reports(report: RunReport, args: argparse.Namespace, jobs: dict[str, Job]) -> int:
    from sync.commands.metrics import publish_metrics

    table = render_table(report)
    if stdout_outputs(args):  # stdout holds a report: the table is for the person, on stderr
        say(table)
    else:
        show(table)  # a stdout that fails does not fail the run
    publish_metrics(args, report.jobs, jobs)
    code = report.exit_code
    if args.report_json:
        code = max(code, _write_report_json(report, args.report_json))
    try:
        write_summary(report, args.summary_md, os.environ)
    except OSError as error:
        log.warning("the Markdown summary was not written: %s", error)
    if args.plan_only and args.detailed_exitcode:
        if code:
            return EXIT_FAILED
        return 2 if any(job.action != "none" for job in report.jobs) else 0
    return code


def _write_report_json(report: RunReport, path: Path) -> int:
    """The report as JSON in ``path`` (``-``: stdout); the exit code a failure adds."""
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    if is_stdout(path):
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError) as error:  # ValueError: stdout closed by the caller
            output_failed("stdout", error)
        return 0
    try:
        with translated("write the report"):
            path.write_text(text)
    except Np6SyncError as error:
        report_failure(str(path), error)
        return error.exit_code
    return 0
