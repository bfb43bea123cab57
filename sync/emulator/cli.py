"""np6-sync emulator: a local NP6 stand-in on loopback, for trials and tests.

Without --contacts, every value sent names a contact whose id is the value itself; with
it, values must name a contact of the table (by id or unicity value), as on NP6.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sync.console.logs import say
from sync.emulator.contacts import Contacts, ContactsError, load_contacts
from sync.emulator.emulator import DEFAULT_KEY, Emulator
from sync.emulator.limits import ALL_FAULTS, check_faults
from sync.emulator.routes import UNICITY_MEDIA_TYPE

DEFAULT_PORT = 8650


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (0: any free port; default: %(default)s)",
    )
    parser.add_argument(
        "--key", help=f"the API key to accept (default: $NP6_API_KEY, else {DEFAULT_KEY!r})"
    )
    parser.add_argument(
        "--segments", type=_ids, help="comma-separated segment ids that exist (default: any)"
    )
    parser.add_argument(
        "--dynamic", type=_ids, default=[], help="comma-separated ids of dynamic segments (409)"
    )
    parser.add_argument(
        "--contacts", type=Path, help="CSV of the account's contacts: columns id,unicity"
    )
    parser.add_argument(
        "--require-unicity-media-type",
        action="store_true",
        help="answer 415 to a PUT of unicity values without Accept: " + UNICITY_MEDIA_TYPE,
    )
    parser.add_argument(
        "--without-lookup",
        action="store_true",
        help="an account without GET /targets?unicity= (it answers 404)",
    )
    parser.add_argument(
        "--case-sensitive",
        action="store_true",
        help="unicity values name contacts only with their exact case (default: any case)",
    )
    parser.add_argument("--latency-ms", type=_non_negative, default=0.0, help="delay per answer")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests given a fault (0..1)"
    )
    parser.add_argument(
        "--faults", type=_kinds, default=ALL_FAULTS, help=f"comma-separated: {','.join(ALL_FAULTS)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the random faults")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of 429-retry-after")
    parser.add_argument("--rate-limit", type=int, help="requests per second before answering 429")
    parser.add_argument("--quota", type=int, help="requests per quota window before answering 429")
    parser.add_argument(
        "--quota-window", type=float, default=60.0, help="the quota window in seconds (default: 60)"
    )
    parser.add_argument(
        "--quota-reset",
        choices=("seconds", "epoch"),
        default="seconds",
        help="X-RateLimit-Reset as seconds left or as the epoch second (default: seconds)",
    )


def run_cli(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("NP6_API_KEY") or DEFAULT_KEY
    try:
        contacts: Contacts | None = None if args.contacts is None else load_contacts(args.contacts)
        emulator = Emulator(
            key,
            host=args.host,
            port=args.port,
            segments=args.segments,
            dynamic=args.dynamic,
            contacts=contacts,
            require_unicity_media_type=args.require_unicity_media_type,
            lookup_route=not args.without_lookup,
            fold_case=not args.case_sensitive,
            latency_s=args.latency_ms / 1000,
            fault_rate=args.fault_rate,
            fault_kinds=args.faults,
            seed=args.seed,
            retry_after_s=args.retry_after,
            rate_limit_per_s=args.rate_limit,
            quota=args.quota,
            quota_window_s=args.quota_window,
            quota_reset_epoch=args.quota_reset == "epoch",
        ).bind()
    except (ValueError, ContactsError) as error:
        say(f"np6-sync emulator: {error}", "ERROR")  # a JSON line under --log-format json
        return 2
    except OSError as error:
        where = f"{args.host}:{args.port}"
        say(f"np6-sync emulator: cannot listen on {where}: {error}", "ERROR")
        return 1
    table = "" if contacts is None else f" with {len(contacts):,} contacts"
    print(f"NP6 emulator listening on {emulator.url}{table}", flush=True)
    return _serve(emulator)


def _serve(emulator: Emulator) -> int:
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # SIGINT too: a shell starts background jobs with it ignored, and Ctrl-C must still work.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sync.emulator``: the same as ``np6-sync emulator``."""
    parser = argparse.ArgumentParser(prog="np6-sync emulator", description=__doc__)
    configure_parser(parser)
    return run_cli(parser.parse_args(argv))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # stop serve_forever the way Ctrl-C does


def _ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of segment ids: {text!r}") from None
    if not ids or min(ids) < 1:
        raise argparse.ArgumentTypeError(f"segment ids must be positive integers: {text!r}")
    return ids


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        check_faults(kinds)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return kinds


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value
