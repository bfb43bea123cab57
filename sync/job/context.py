"""What one job's run is given, and what each of its phases leaves for the next
(sync.job.run goes through the phases; sync.job.sending is the phase that changes NP6)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.config import Job
from sync.console.progress import Progress
from sync.core.fold import Folded
from sync.core.keys import KeySet
from sync.core.plan import Holding, Plan
from sync.errors import StoppedError
from sync.job.route import Route, decide, facts_of
from sync.report.model import JobReport
from sync.report.phases import PhaseTimer
from sync.state.seal import SourceProof
from sync.state.store import Store

if TYPE_CHECKING:
    from sync.job.fanout import SharedSource
    from sync.np6.client import NP6Client
    from sync.send.push import PushResult


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    full_refresh: bool = False
    force: bool = False
    media_type: str | None = None  # the settings' unicity_media_type: it shapes the keys
    downloaded: Path | None = None  # the job's URL source, downloaded: read and sealed there
    route: Route | None = None  # decided by the door (sync.job.runs); else from the job
    account: str | None = None  # the settings' base_url: the seal speaks of one account


@dataclass
class JobRun:
    """One job's run: what it was given, and what each phase leaves for the next."""

    job: Job
    options: RunOptions
    connect: Callable[[], NP6Client]
    concurrency: int
    stop: threading.Event
    progress: Progress
    report: JobReport
    store: Store = field(init=False)
    keyset: KeySet = field(init=False)
    holding: Holding = field(init=False)
    plan: Plan = field(init=False)
    client: NP6Client | None = None
    pushed: PushResult | None = None
    sending: bool = False  # from the first change on, a failure leaves the segment changed
    shared: SharedSource | None = None  # a fan-out's segments, or a DataFrame, read once
    proof: SourceProof | None = None  # the source's digest, when a seal may be written
    # A large source folded against the state (sync.job.fold): the state's keys stay in
    # its file (``holding.keys`` is empty), and ``reread`` reads them a row group at a time.
    reread: Callable[[], Iterator[pa.Array]] | None = None
    folded: Folded | None = None

    def __post_init__(self) -> None:
        self.timer = PhaseTimer(self.report.phase_s)
        self.route = self.options.route or decide(
            facts_of(
                self.job,
                full_refresh=self.options.full_refresh,
                dry_run=self.options.dry_run,
            )
        )
        self.report.route, self.report.route_reason = self.route.name, self.route.reason


def mark_phase(run: JobRun, name: str) -> None:
    run.report.phase = name


def not_stopped(run: JobRun) -> None:
    if run.stop.is_set():
        raise StoppedError.before_sending()


def held(run: JobRun) -> pa.Array | Iterator[pa.Array]:
    """The state's keys: in memory, or read from its file a row group at a time."""
    return run.holding.keys if run.reread is None else run.reread()


def log_extra(run: JobRun) -> dict[str, object]:
    return {"job": run.job.name}
