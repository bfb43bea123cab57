"""`np6-sync emulator`: the local NP6 stand-in, with its own options."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from sync.emulator.cli import configure_parser

    configure_parser(parser)


def emulator(args: argparse.Namespace) -> int:
    from sync.emulator.cli import run_cli

    return run_cli(args)
