"""The command line: parse the arguments, dispatch to one command, return its exit code.

Each command lives in ``sync/commands/`` and is imported only when chosen, so that
`validate` or `--help` do not pay for the others' imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sync import __version__
from sync.commands.common import DEFAULT_CONFIG, report_failure
from sync.commands.init import add_init_parser
from sync.commands.metrics import add_metrics_arguments
from sync.errors import EXIT_FAILED, EXIT_USAGE, as_error

__all__ = ["DEFAULT_CONFIG", "entry", "main"]


def entry() -> None:
    """The console script: ``main``, then out without the interpreter's teardown.

    Once a command has returned, its work is saved and fsynced and its files are closed;
    what is left is freeing polars', pyarrow's and numpy's modules and memory, 0.15 to 0.2 s
    on a 2-core machine, a tenth of an unchanged 1M-row run. Only the output is flushed.
    An output that fails then (a full disk, a closed pipe) is said on stderr, best effort,
    and the exit code stays the command's: a sync that worked is not made a failure.
    """
    from sync.console.output import output_failed

    code = main()
    logging.shutdown()
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        if stream is None:  # started with that descriptor closed: nothing was written
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as error:  # what it missed is lost either way
            output_failed(name, error)
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(words)
    except SystemExit as exit_:
        # plan --detailed-exitcode keeps 2 for "changes pending": every failure is 1.
        if exit_.code == EXIT_USAGE and _detailed_plan(words):
            return EXIT_FAILED
        raise
    from sync.console.logs import setup_logging

    setup_logging(
        getattr(args, "log_format", "auto"),
        getattr(args, "verbose", 0),
        getattr(args, "quiet", False),
    )
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        from sync.console.output import say

        say("np6-sync: interrupted")
        return 130
    except Exception as failure:  # the error tree, or a foreign one: one line, no traceback
        error = as_error(failure, "finish the command")
        report_failure("", error)
        return error.exit_code


def _lazy(ref: str) -> Callable[[argparse.Namespace], int]:
    """The command ``module:function`` of sync/commands, imported when it runs."""

    def command(args: argparse.Namespace) -> int:
        code: int = _load(ref)(args)
        return code

    return command


def _load(ref: str) -> Callable[..., Any]:
    """``module:function`` of sync/commands, imported now."""
    module, name = ref.split(":")
    function: Callable[..., Any] = getattr(importlib.import_module(f"sync.commands.{module}"), name)
    return function


def _detailed_plan(words: list[str]) -> bool:
    commands = [w for w in words if not w.startswith("-")]
    return bool(commands) and commands[0] == "plan" and "--detailed-exitcode" in words


class _LazyParser(argparse.ArgumentParser):
    """A command's parser whose options another module adds, only when the command is
    chosen: importing the emulator would slow every other command's start."""

    def __init__(self, *args: Any, configure: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configure = configure

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._configure is not None:
            _load(self._configure)(self)
            self._configure = None
        return super().parse_known_args(args, namespace)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="np6-sync",
        description="Keep NP6 static segments equal to target lists kept in CSV or Parquet files.",
    )
    parser.add_argument("--version", action="version", version=f"np6-sync {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_LazyParser
    )

    _run_parser(commands)

    plan = commands.add_parser("plan", help="a dry run: what `run` would do")
    _job_arguments(plan)
    plan.add_argument("--full-refresh", action="store_true", help="plan a clear and reload")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to do, 2 when changes are pending, 1 on any failure",
    )
    plan.set_defaults(
        func=_lazy("run:plan"), plan_only=True, dry_run=True, force=False, verify=False
    )

    verify = commands.add_parser("verify", help="compare the segment itself with the source")
    _job_arguments(verify, reports=False)
    verify.add_argument("--repair", action="store_true", help="add the missing, remove the extra")
    verify.add_argument("--force", action="store_true", help="repair past max_removed_ratio")
    verify.set_defaults(func=_lazy("verify:verify"))

    _state_parsers(commands.add_parser("state", help="inspect the state; adopt targets"))
    _check_parser(commands)

    validate = commands.add_parser("validate", help="check jobs and their sources; no network")
    validate.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    _segment_argument(validate)
    validate.add_argument(
        "--samples",
        type=_sample_size,
        default=0,
        metavar="N",
        help="show N keys of each job (0, the default: none, as keys are personal data)",
    )
    validate.set_defaults(func=_lazy("validate:validate"))

    emulator = commands.add_parser(
        "emulator",
        help="a local NP6 stand-in for trials and tests",
        description="A local NP6 stand-in, on loopback unless --host says otherwise.",
        configure="emulator:configure",
    )
    emulator.set_defaults(func=_lazy("emulator:emulator"))

    add_init_parser(commands, validate=_lazy("validate:validate"))

    demo = commands.add_parser("demo", help="the example job against a built-in emulator")
    demo.add_argument("--keep", type=Path, help="keep the demo's files in this folder")
    # The demo prints its own reports.
    demo.set_defaults(func=_lazy("demo:demo"), quiet=True)
    return parser


def _run_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
    run = commands.add_parser("run", help="sync the jobs' segments with their sources")
    _job_arguments(run)
    run.add_argument("--dry-run", action="store_true", help="report the plan; send nothing")
    run.add_argument("--full-refresh", action="store_true", help="clear and reload the segment")
    run.add_argument("--force", action="store_true", help="pass the safeguards")
    run.add_argument(
        "--verify", action="store_true", help="read the segment back afterwards (id mode)"
    )
    run.add_argument(
        "--parallel",
        type=_positive,
        default=1,
        metavar="N",
        help="run up to N jobs at once, sharing one rate limit (memory grows with N)",
    )
    run.set_defaults(func=_lazy("run:run"), plan_only=False, detailed_exitcode=False)
    add_metrics_arguments(run)


def _check_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
    check = commands.add_parser(
        "check", help="can a run go ahead? the key, the segment, keys looked up; changes nothing"
    )
    _job_arguments(check, reports=False)
    check.add_argument(
        "--sample", type=_sample_size, default=20, metavar="N", help="keys to look up (20)"
    )
    check.set_defaults(func=_lazy("check:check"))


def _sample_size(text: str) -> int:
    size = int(text)
    if not 0 <= size <= 10_000:
        raise argparse.ArgumentTypeError(f"between 0 and 10000, not {size}")
    return size


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _state_parsers(state: argparse.ArgumentParser) -> None:
    actions = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="what the state holds")
    show.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    _segment_argument(show)
    show.set_defaults(func=_lazy("state:show"))
    adopt = actions.add_parser("import", help="record targets the segment already holds")
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
    adopt.set_defaults(func=_lazy("state:import_"))


def _segment_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--segment", metavar="NAME", help="only this segment of a fan-out job (or this job)"
    )


def _job_arguments(parser: argparse.ArgumentParser, reports: bool = True) -> None:
    parser.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    _segment_argument(parser)
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
