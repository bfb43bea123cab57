"""The command line: parse arguments, call one function, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sync import __version__
from sync.errors import EXIT_USAGE, ConfigError, Np6SyncError, UsageError

if TYPE_CHECKING:
    from sync.config import Job, Settings
    from sync.np6.client import NP6Client
    from sync.report.model import JobReport
    from sync.verify import Comparison

log = logging.getLogger("np6sync")
DEFAULT_CONFIG = Path("config/np6.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from sync.console.logs import setup_logging

    setup_logging(
        getattr(args, "log_format", "auto"),
        getattr(args, "verbose", 0),
        getattr(args, "quiet", False),
    )
    try:
        code: int = args.func(args)
        return code
    except Np6SyncError as error:
        print(f"np6-sync: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("np6-sync: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="np6-sync",
        description="Keep NP6 static segments equal to target lists kept in CSV or Parquet files.",
    )
    parser.add_argument("--version", action="version", version=f"np6-sync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="sync the jobs' segments with their sources")
    _job_arguments(run)
    run.add_argument("--dry-run", action="store_true", help="report the plan; send nothing")
    run.add_argument("--full-refresh", action="store_true", help="clear and reload the segment")
    run.add_argument("--force", action="store_true", help="pass the safeguards")
    run.add_argument(
        "--verify", action="store_true", help="read the segment back afterwards (id mode)"
    )
    run.set_defaults(func=_cmd_run, plan_only=False)
    from sync.commands.metrics import add_metrics_arguments

    add_metrics_arguments(run)

    plan = commands.add_parser("plan", help="a dry run: what `run` would do")
    _job_arguments(plan)
    plan.add_argument("--full-refresh", action="store_true", help="plan a clear and reload")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to do, 2 when changes are pending",
    )
    plan.set_defaults(func=_cmd_run, plan_only=True, dry_run=True, force=False, verify=False)

    verify = commands.add_parser("verify", help="compare the segment itself with the source")
    _job_arguments(verify, reports=False)
    verify.add_argument("--repair", action="store_true", help="add the missing, remove the extra")
    verify.add_argument("--force", action="store_true", help="repair past max_removed_ratio")
    verify.set_defaults(func=_cmd_verify)

    state = commands.add_parser("state", help="inspect the state; adopt targets a segment holds")
    state_commands = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    show = state_commands.add_parser("show", help="what the state holds")
    show.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    show.set_defaults(func=_cmd_state_show)
    adopt = state_commands.add_parser("import", help="record targets the segment already holds")
    _job_arguments(adopt, reports=False)
    source = adopt.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE",
        help="a CSV/Parquet file with the job's key columns: added to the state",
    )
    source.add_argument(
        "--from-segment",
        action="store_true",
        help="the segment's current members replace the state (id mode)",
    )
    adopt.set_defaults(func=_cmd_state_import)

    validate = commands.add_parser("validate", help="check jobs and their sources; no network")
    validate.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    validate.add_argument("--samples", type=int, default=3, help="sample keys to show per job")
    validate.set_defaults(func=_cmd_validate)

    # The emulator parses its own options (np6-sync emulator --help): importing it here
    # would slow every other command's start.
    # prefix_chars: no option of its own, so REMAINDER keeps "--port" (Python 3.11 drops it).
    emulator = commands.add_parser(
        "emulator",
        help="a local NP6 stand-in for trials and tests",
        add_help=False,
        prefix_chars="+",
    )
    emulator.add_argument("options", nargs=argparse.REMAINDER)
    emulator.set_defaults(func=_cmd_emulator)

    from sync.commands.init import add_init_parser

    add_init_parser(commands, validate=_cmd_validate)

    demo = commands.add_parser("demo", help="the example job against a built-in emulator")
    demo.add_argument("--keep", type=Path, help="keep the demo's files in this folder")
    demo.set_defaults(func=_cmd_demo, quiet=True)  # the demo prints its own reports
    return parser


def _job_arguments(parser: argparse.ArgumentParser, reports: bool = True) -> None:
    parser.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    parser.add_argument(
        "--config", type=Path, help=f"settings file (default: {DEFAULT_CONFIG} when present)"
    )
    if reports:
        parser.add_argument(
            "--report-json", type=Path, metavar="FILE", help="write the report here"
        )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    parser.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default="auto",
        help="auto (default): text on a terminal, one JSON object per line otherwise",
    )
    if reports:
        parser.add_argument(
            "--summary-md",
            type=Path,
            metavar="FILE",
            help="write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set)",
        )


def _cmd_run(args: argparse.Namespace) -> int:
    from sync.config import load_job, load_settings
    from sync.console.progress import make_progress
    from sync.report.markdown import write_summary
    from sync.report.model import JobReport, RunReport
    from sync.report.table import render_table
    from sync.runner import RunOptions, release_memory_promptly, run_job

    settings = load_settings(_config_path(args.config))
    release_memory_promptly()
    options = RunOptions(dry_run=args.dry_run, full_refresh=args.full_refresh, force=args.force)
    connect = _connector(settings, needed=not args.dry_run)
    report = RunReport()
    loaded: dict[str, Job] = {}
    with _stop_on_signals() as stop:
        for path in args.jobs:
            if stop.is_set():
                break
            try:
                job = load_job(path)
            except ConfigError as error:
                report.jobs.append(
                    JobReport(Path(path).stem, error=str(error), exit_code=error.exit_code)
                )
                continue
            loaded[job.name] = job
            started_at = datetime.now(UTC)
            job_report = run_job(
                job,
                options,
                connect,
                concurrency=settings.concurrency,
                stop=stop,
                progress=make_progress(sys.stderr, args.log_format, quiet=args.quiet),
            )
            if args.verify and job_report.exit_code == 0:
                _verify_after_run(job, job_report, connect)
            report.jobs.append(job_report)
            if not options.dry_run:
                _record_history(job, job_report, started_at, args)
    print(render_table(report))
    from sync.commands.metrics import publish_metrics

    publish_metrics(args, report.jobs, loaded)
    if args.report_json:
        args.report_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    try:
        write_summary(report, args.summary_md, os.environ)
    except OSError as error:
        log.warning("the Markdown summary was not written: %s", error)
    if args.plan_only and args.detailed_exitcode and report.exit_code == 0:
        return 2 if any(job.action != "none" for job in report.jobs) else 0
    return report.exit_code


def _connector(settings: Settings, needed: bool) -> Callable[[], NP6Client]:
    """Build NP6 clients on demand: a run with nothing to do opens no connection."""
    from sync.console.logs import add_secret
    from sync.np6.client import client_factory
    from sync.np6.key import check_api_key

    raw = os.environ.get(settings.api_key_env, "")
    if needed and not raw.strip():
        raise UsageError(f"the API key is not set: export it in {settings.api_key_env}")
    key = check_api_key(raw, settings.api_key_env) if raw.strip() else ""
    add_secret(key)
    return client_factory(settings, key, deadline=time.monotonic() + settings.retry.deadline)


def _record_history(
    job: Job, report: JobReport, started_at: datetime, args: argparse.Namespace
) -> None:
    """One line per run beside the state; a full disk must not fail a sync that worked."""
    from sync.errors import HistoryError
    from sync.state.store import store_for

    flags = [f for f, on in (("full-refresh", args.full_refresh), ("force", args.force)) if on]
    command = " ".join(["run", *(f"--{f}" for f in flags)])
    try:
        store_for(job).append_history(report, started_at=started_at, command=command)
    except HistoryError as error:
        log.warning("the run history was not written: %s", error, extra={"job": job.name})


def _verify_after_run(job: Job, report: JobReport, connect: Callable[[], NP6Client]) -> None:
    from sync.errors import EXIT_FAILED
    from sync.verify import verify_job

    client = connect()
    try:
        result = verify_job(job, client)
    except Np6SyncError as error:
        report.status, report.exit_code, report.error = "failed", error.exit_code, str(error)
        return
    finally:
        client.close()
    if not result.before.equal:
        report.status, report.exit_code = "failed", EXIT_FAILED
        report.error = _comparison_text(result.before, result.listing)


def _comparison_text(comparison: Comparison, listing: Path | None) -> str:
    text = (
        f"the segment holds {comparison.segment:,} targets: {len(comparison.missing):,} "
        f"missing, {len(comparison.extra):,} extra"
    )
    return text + (f" (listed in {listing})" if listing else "")


def _cmd_verify(args: argparse.Namespace) -> int:
    from sync.config import load_job, load_settings
    from sync.errors import EXIT_FAILED
    from sync.verify import verify_job

    settings = load_settings(_config_path(args.config))
    connect = _connector(settings, needed=True)
    worst = 0
    with _stop_on_signals() as stop:
        for path in args.jobs:
            job = load_job(path)
            client = connect()
            try:
                result = verify_job(
                    job,
                    client,
                    repair=args.repair,
                    force=args.force,
                    concurrency=settings.concurrency,
                    stop=stop,
                )
            finally:
                client.close()
            final = result.after or result.before
            print(f"{job.name}: before: {_comparison_text(result.before, result.listing)}")
            if result.before.state_drift:
                print(
                    f"{job.name}: the state differed from the segment on "
                    f"{result.before.state_drift:,} targets; it now follows the segment"
                )
            if result.after is not None:
                print(f"{job.name}: after repair: {_comparison_text(result.after, None)}")
            print(f"{job.name}: {'equal' if final.equal else 'DIFFERENT'}")
            worst = max(worst, 0 if final.equal else EXIT_FAILED)
    return worst


def _cmd_state_show(args: argparse.Namespace) -> int:
    from sync.config import load_job
    from sync.state.store import store_for

    for path in args.jobs:
        job = load_job(path)
        store = store_for(job)
        info = store.info()
        print(f"{job.name}: {store.where}")
        if info is None:
            print("  no state yet: the segment is taken to be empty")
        else:
            holding = store.load()
            print(f"  format      version {info.version}, segment {info.segment_id}")
            print(f"  keys        {len(holding.keys):,} (state file: {info.keys:,})")
            print(f"  updated     {info.updated_at}")
            print(f"  pending     {len(holding.pending):,} deferred removal(s)")
            print(f"  key         {json.dumps(info.key_definition)}")
        if store.has_journal():
            print("  unfinished  a run left a journal: the next run goes on from there")
        for entry in store.read_history(1):
            print(
                f"  last run    {entry['finished_at']} {entry['command']}: {entry['status']}"
                f" ({entry['action']}, +{entry['added']:,} -{entry['removed']:,})"
            )
    return 0


def _cmd_state_import(args: argparse.Namespace) -> int:
    from sync.config import load_job, load_settings
    from sync.verify import import_state

    settings = load_settings(_config_path(args.config))
    for path in args.jobs:
        job = load_job(path)
        client = _connector(settings, needed=True)() if args.from_segment else None
        try:
            count = import_state(job, client, args.from_file)
        finally:
            if client is not None:
                client.close()
        what = "targets added to the state" if args.from_file else "targets adopted from NP6"
        print(f"{job.name}: {count:,} {what}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from sync.config import load_job
    from sync.runner import load_keys

    worst = 0
    for path in args.jobs:
        try:
            job = load_job(path)
            keyset = load_keys(job)
        except UsageError as error:
            print(f"{path}: cannot run\n  {error}", file=sys.stderr)
            worst = max(worst, EXIT_USAGE)
            continue
        print(f"{path}: job {job.name} -> segment {job.segment_id}")
        print(f"  source      {job.source_url or job.source_path} ({job.source_format})")
        print(f"  rows        {keyset.rows_read:,}")
        print(f"  valid keys  {len(keyset.keys):,}")
        print(f"  duplicates  {keyset.duplicate_keys:,}")
        print(f"  rejected    {keyset.rows_rejected:,}")
        for reason, count in keyset.rejects_by_reason.items():
            print(f"    {count:,} {reason}")
        for key in keyset.keys.slice(0, args.samples).to_pylist():
            print(f"  sample      {key}")
    return worst


def _cmd_emulator(args: argparse.Namespace) -> int:
    from sync.emulator import main as emulator_main

    return emulator_main(args.options)


def _cmd_demo(args: argparse.Namespace) -> int:
    from sync.commands.demo import run_demo

    return run_demo(args.keep)


def _config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    try:
        present = DEFAULT_CONFIG.is_file()
    except OSError:  # there, but not ours to read: load_settings says so
        present = True
    return DEFAULT_CONFIG if present else None


class _StopOnSignals:
    """The first SIGTERM/SIGINT asks the run to stop after the chunks in flight."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self.event

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        print(
            f"np6-sync: {signal.Signals(signum).name} received: finishing the chunks in "
            "flight, then saving the state",
            file=sys.stderr,
        )
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _stop_on_signals() -> _StopOnSignals:
    return _StopOnSignals()
