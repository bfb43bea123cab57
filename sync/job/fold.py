"""A large source read in batches and folded against the state as it is read.

For a file of ten million rows this is what keeps a run in a small container: neither the
source's rows nor the state's keys are ever all in memory (sync.core.fold). Which jobs
fold is the route's to say (``sync.job.route``: the "folded" route); a state with a journal
to replay is read whole all the same.

"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace

import pyarrow as pa

from sync.config import Job
from sync.console.progress import Progress
from sync.core.fold import Fold, Folded
from sync.core.keys import KEY_TYPE, KeySet, merged
from sync.errors import StoppedError
from sync.job.source import (
    collect_job_keys,
    read_job_source,
    source_columns,
    source_spec,
)
from sync.read.ahead import read_ahead
from sync.read.batches import Unstreamable, read_batches
from sync.read.sources import SourceTable
from sync.state.scan import Scanned

log = logging.getLogger("np6sync.run")


def fold_source(
    job: Job, scanned: Scanned, stop: threading.Event, progress: Progress
) -> tuple[KeySet, Folded]:
    """The source's counts and rejects, and its keys folded against the state."""
    try:
        batches = read_ahead(read_batches(source_spec(job), source_columns(job)))
        return _fold(job, scanned, batches, stop, progress)
    except Unstreamable as why:
        log.debug("reading the source whole: %s", why, extra={"job": job.name})
        return _fold(job, scanned, iter([read_job_source(job)]), stop, progress)


def _fold(
    job: Job,
    scanned: Scanned,
    batches: Iterator[SourceTable],
    stop: threading.Event,
    progress: Progress,
) -> tuple[KeySet, Folded]:
    fold = Fold(scanned.digests)
    parts: list[KeySet] = []
    progress.start("read", 0)
    try:
        for batch in batches:
            if stop.is_set():
                raise StoppedError.before_sending()
            collected = collect_job_keys(job, batch)
            fold.feed(collected.keys)
            # Not a slice of the keys: even an empty one would keep their buffers.
            parts.append(replace(collected, keys=pa.array([], KEY_TYPE)))
            progress.advance(batch.table.num_rows)
    finally:
        progress.finish()
    folded = fold.result(scanned.pick)
    return merged(parts, folded.count), folded
