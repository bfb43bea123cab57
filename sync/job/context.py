"""What one job's run is given, and the frozen values its phases hand each other.

sync.job.run goes through the phases; each returns a value, and the run keeps the last
``Reached``: where the job got to and every value found on the way. The report is built
once from it (sync.job.report), whether the job ended or failed on the way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.config import Job
from sync.console.progress import Progress
from sync.core.fold import Folded
from sync.core.keys import KeySet
from sync.core.plan import Holding, Plan
from sync.errors import StoppedError
from sync.job.route import Route
from sync.report.phases import PhaseTimer
from sync.state.seal import SourceProof
from sync.state.store import Store

if TYPE_CHECKING:
    from sync.job.fallback import Reload
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


@dataclass(frozen=True)
class Given:
    """What a job's run is given: the job, how to run it, and its resources (the state's
    store, a way to NP6, the stop signal, the progress bar, the phases' stopwatch)."""

    job: Job
    options: RunOptions
    route: Route
    store: Store
    np6: Connection
    concurrency: int
    stop: threading.Event
    progress: Progress
    timer: PhaseTimer
    shared: SharedSource | None = None  # a fan-out's segments, or a DataFrame, read once


class Connection:
    """The job's one client to NP6, made at the first call that needs it (a run with
    nothing to send never loads requests); a fallback's second push keeps its counts."""

    def __init__(self, connect: Callable[[], NP6Client]) -> None:
        self._connect = connect
        self.client: NP6Client | None = None

    def __call__(self) -> NP6Client:
        if self.client is None:
            self.client = self._connect()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@dataclass(frozen=True)
class Read:
    """What the read phase leaves: the source's keys, and when the route folded the
    source against the state as it was read, the state's side too."""

    keyset: KeySet  # every valid key, duplicates too; distinct when ``folded``
    proof: SourceProof | None = None  # the source's digest, when a seal may be written
    folded: Folded | None = None
    holding: Holding | None = None
    # A folded source: the state's keys stay in its file (``holding.keys`` is empty), and
    # ``reread`` reads them a row group at a time.
    reread: Callable[[], Iterator[pa.Array]] | None = None
    # Why the state's keys were not read: its print is the source's (sync.job.same_set).
    printed: str | None = None


@dataclass(frozen=True)
class Planned:
    """What the plan phase leaves: the keys' counts (the keys themselves are in the
    fold), the state as held, the fold, the plan, and the way the source was read."""

    keyset: KeySet
    holding: Holding
    folded: Folded
    plan: Plan
    route: str
    route_reason: str
    reread: Callable[[], Iterator[pa.Array]] | None = None

    def held(self) -> pa.Array | Iterator[pa.Array]:
        """The state's keys: in memory, or read from its file a row group at a time."""
        return self.holding.keys if self.reread is None else self.reread()


@dataclass(frozen=True)
class Sent:
    """One push: the plan sent, and what NP6 acknowledged."""

    plan: Plan
    pushed: PushResult


@dataclass(frozen=True)
class Reached:
    """Where a job got to, and what its phases found on the way."""

    route: Route
    phase: str = "lock"  # lock, read, plan, check, preflight, send, fallback, settle, done
    read: Read | None = None  # dropped once planned: its keys are not needed any more
    planned: Planned | None = None
    rejects_file: str | None = None
    refusals: tuple[str, ...] = ()
    sent: tuple[Sent, ...] = ()
    reload: Reload | None = None  # the reload fallback's plan, and why
    # What NP6 said around the last push: from its preflight on, so that a stop or a
    # failure before the push ends (the journal, the push itself) still reports it.
    notices: tuple[str, ...] = ()
    # From the journal's opening on: a failure leaves the segment changed.
    changing: bool = False

    def at(self, phase: str) -> Reached:
        return replace(self, phase=phase)

    def carried_out(self) -> Plan | None:
        """The plan carried out: the reload fallback's, once it replaced a refused way."""
        if self.reload is not None and not self.reload.refusals:
            return self.reload.plan
        return None if self.planned is None else self.planned.plan


def not_stopped(given: Given, *, changed: bool = False) -> None:
    """A stop signal ends the job here (``changed``: a push before this one changed NP6)."""
    if given.stop.is_set():
        raise StoppedError.before_the_reload() if changed else StoppedError.before_sending()


def log_extra(given: Given) -> dict[str, object]:
    return {"job": given.job.name}
