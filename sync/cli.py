"""The command line: parse the arguments, dispatch to one command, return its exit code.

Each command lives in ``sync/commands/`` and is imported only when chosen, so that
`validate` or `--help` do not pay for the others' imports.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sync.commands.common import DEFAULT_CONFIG, output_path, report_failure, stdout_outputs
from sync.commands.init import add_init_parser
from sync.commands.metrics import add_metrics_arguments
from sync.errors import EXIT_FAILED, EXIT_USAGE, UsageError, as_error

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
        args = _parser(json_errors=_json_asked(words)).parse_args(words)
    except SystemExit as exit_:
        # plan --detailed-exitcode keeps 2 for "changes pending": every failure is 1.
        if exit_.code == EXIT_USAGE and _detailed_plan(words):
            return EXIT_FAILED
        raise
    from sync.console.logs import setup_logging

    verbose = getattr(args, "verbose", 0)
    quiet = getattr(args, "quiet", False)
    # None (the demo's default): quiet, unless -v asks for the log lines.
    quiet = not verbose if quiet is None else quiet
    setup_logging(getattr(args, "log_format", "auto"), verbose, quiet)
    try:
        to_stdout = stdout_outputs(args)
        if len(to_stdout) > 1:
            raise UsageError(f"only one output can be - (stdout): {', '.join(to_stdout)}")
        if getattr(args, "config", None) is not None and not getattr(args, "settings", False):
            from sync.config import load_settings

            # Unused by this command, but checked: a wrong path or setting is said here too.
            load_settings(args.config)
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        from sync.console.logs import say

        say("np6-sync: interrupted", "WARNING")
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


def _json_asked(words: list[str]) -> bool:
    """--log-format json among the words: then even a usage error is a JSON line."""
    pairs = itertools.pairwise(words)  # no words at all: no pair (np6-sync alone)
    return "--log-format=json" in words or ("--log-format", "json") in pairs


def _detailed_plan(words: list[str]) -> bool:
    commands = [w for w in words if not w.startswith("-")]
    return bool(commands) and commands[0] == "plan" and "--detailed-exitcode" in words


class _Version(argparse.Action):
    """argparse's version action, reading the version only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        import sync

        print(f"np6-sync {sync.__version__}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one JSON line under --log-format json."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        from sync.console.logs import json_line

        print(json_line("ERROR", f"{self.prog}: error: {message}"), file=sys.stderr)
        self.exit(EXIT_USAGE)


class _LazyParser(_Parser):
    """A command's parser whose options another module adds, only when the command is
    chosen: importing the emulator would slow every other command's start. Every command
    gets the global options (``global_arguments``) here, so none can forget them."""

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


def _parser(json_errors: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="np6-sync",
        description="Keep NP6 static segments equal to target lists kept in CSV or Parquet files.",
        json_errors=json_errors,
    )
    parser.add_argument("--version", action=_Version, help="print the installed version")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_LazyParser
    )

    _run_parser(commands)

    _plan_parser(commands)
    _verify_parser(commands)

    _state_parsers(commands.add_parser("state", help="inspect the state; adopt targets"))
    _check_parser(commands)

    _validate_parser(commands)

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
    demo.set_defaults(func=_lazy("demo:demo"), quiet=None)
    for sub in _parsers_under(parser):
        if isinstance(sub, _Parser):
            sub.json_errors = json_errors
    for command in commands_of(parser).values():
        global_arguments(command)
    return parser


def _plan_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
    plan = commands.add_parser("plan", help="a dry run: what `run` would do")
    _job_arguments(plan)
    plan.add_argument("--full-refresh", action="store_true", help="plan a clear and reload")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to do, 2 when changes are pending, 1 on any failure",
    )
    plan.set_defaults(
        func=_lazy("run:plan"),
        plan_only=True,
        dry_run=True,
        force=False,
        verify=False,
        settings=True,
    )


def _verify_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
    verify = commands.add_parser("verify", help="compare the segment itself with the source")
    _job_arguments(verify, reports=False)
    verify.add_argument("--repair", action="store_true", help="add the missing, remove the extra")
    verify.add_argument("--force", action="store_true", help="repair past max_removed_ratio")
    verify.set_defaults(func=_lazy("verify:verify"), settings=True)


def _validate_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
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


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser by its words (``state show``, not ``state``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                below = commands_of(sub)
                found.update({f"{word} {w}": p for w, p in below.items()} or {word: sub})
    return found


def _parsers_under(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += [sub, *_parsers_under(sub)]
    return found


def global_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command takes, each spelled one way."""
    parser.add_argument(
        "--config", type=Path, help=f"settings file (default: {DEFAULT_CONFIG} when present)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    parser.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        default="auto",
        help="auto (default): text on a terminal, one JSON object per line otherwise",
    )


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
    run.set_defaults(func=_lazy("run:run"), plan_only=False, detailed_exitcode=False, settings=True)
    add_metrics_arguments(run)


def _check_parser(commands: Any) -> None:  # argparse's subparsers action, a private type
    check = commands.add_parser(
        "check", help="can a run go ahead? the key, the segment, keys looked up; changes nothing"
    )
    _job_arguments(check, reports=False)
    check.add_argument(
        "--samples", type=_sample_size, default=20, metavar="N", help="keys to look up (20)"
    )
    check.set_defaults(func=_lazy("check:check"), settings=True)


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
    adopt.set_defaults(func=_lazy("state:import_"), settings=True)


def _segment_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--segment",
        metavar="ID|NAME",
        help="only this segment of a fan-out job (or this job), by segment id or job name",
    )


def _job_arguments(parser: argparse.ArgumentParser, reports: bool = True) -> None:
    parser.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    _segment_argument(parser)
    if reports:
        parser.add_argument(
            "--report-json",
            type=output_path,
            metavar="FILE",
            help="write the report here (-: stdout, the table then goes to stderr)",
        )
        parser.add_argument(
            "--summary-md",
            type=output_path,
            metavar="FILE",
            help="write a Markdown summary (-: stdout); also appended to $GITHUB_STEP_SUMMARY "
            "when set",
        )
