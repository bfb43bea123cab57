"""The one interface to a job's state, and the one place that chooses where it lives.

A ``Store`` keeps what the segment holds (the state file and the journal of unfinished
runs), the job's lock and its run history. ``store_for`` picks the home from the scheme of
``state.path``: a new home (gs://, az://) is one class and one line of ``_HOMES``, and the
runner and commands never learn which one they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from sync.config import Job
    from sync.core.plan import Holding
    from sync.report.model import JobReport
    from sync.state.local import Journal, StateInfo, StateStore


class Store(Protocol):
    """A job's state, journal, lock and history, wherever they live."""

    @property
    def where(self) -> str:
        """The state's place as messages and `state show` print it (no credentials)."""
        ...

    def load(self) -> Holding: ...

    def info(self) -> StateInfo | None: ...

    def has_journal(self) -> bool: ...

    def open_journal(self, action: str) -> Journal: ...

    def save(
        self,
        keys: pa.Array | Iterator[pa.Array],
        pending: pa.Table | None = None,
        ids: pa.Table | None = None,
    ) -> None: ...

    def set_aside(self) -> None: ...

    def clean_leftovers(self) -> None: ...

    def lock(self, job_name: str) -> AbstractContextManager[None]: ...

    def append_history(
        self,
        job: JobReport,
        *,
        started_at: datetime,
        command: str,
        finished_at: datetime | None = None,
    ) -> None: ...

    def read_history(self, last: int | None = None) -> list[dict[str, Any]]: ...


def local_store(job: Job) -> StateStore:
    """The job's state in its local file: for the routes that only a local state takes
    (``sync.job.route``: sealed, printed, folded)."""
    from sync.state.local import StateStore

    assert job.state_url is None, "the route reads a local state only"
    return StateStore(job.state_path, job.segment_id, job.targets.definition())


def _local(job: Job) -> Store:
    return local_store(job)


def _s3(job: Job) -> Store:
    from sync.state.s3 import RemoteStateStore  # fsspec and s3fs only when a job uses s3://

    assert job.state_url is not None
    return RemoteStateStore(job.state_url, job.segment_id, job.targets.definition())


# Which class keeps a state, by the scheme of `state.path` (None: a local path). The job
# file's validation refuses the schemes not listed here.
_HOMES: dict[str | None, Callable[[Job], Store]] = {None: _local, "s3": _s3}


def store_for(job: Job) -> Store:
    """The job's state, wherever ``state.path`` puts it."""
    from sync.read.formats import url_scheme

    scheme = url_scheme(job.state_url) if job.state_url is not None else None
    return _HOMES[scheme](job)
