"""The quick path: a run on the very bytes the state was last checked against.

Answered from the state's seal (``sync/state/seal.py``) without reading the source,
building keys or importing pyarrow; ``None`` whenever the seal leaves any doubt, and the
job then runs in full (``sync.job.run.run_job``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sync.config import Job
from sync.errors import LockedError
from sync.report.model import JobReport
from sync.state.seal import job_lock, job_shape, seal_path, unchanged_counts

log = logging.getLogger("np6sync.run")
REASON = "the source's bytes, the job and the state are those of the last run"
ROUTE = "same bytes (sha256), same job, state untouched since the last acknowledged run"


def quick_run(
    job: Job, *, media_type: str | None, source: Path, account: str | None = None
) -> JobReport | None:
    """The report of a run with nothing to do, when the seal proves it; else None.
    Only for a route that may seal (``sync.job.route``); a URL source is proven by its
    downloaded copy, ``source``."""
    state = job.state_path
    if not seal_path(state).exists():
        return None
    started = time.monotonic()
    try:
        with job_lock(state.with_name(state.name + ".lock"), job.name):
            counts = unchanged_counts(state, job_shape(job, media_type, account), source)
    except (LockedError, OSError):
        return None  # the full run reports the holder, or what is wrong with the folder
    if counts is None:
        return None
    took = time.monotonic() - started
    report = JobReport(
        job.name,
        job.segment_id,
        status="no_changes",
        reason=REASON,
        **counts,
        route="sealed",
        route_reason=ROUTE,
        duration_s=took,
        phase_s={"check": round(took, 4)},
    )
    done = {"phase": "done", "counts": {"rows": report.rows_read, "keys": report.keys}}
    log.info("no_changes: %s", REASON, extra={"job": job.name, **done})
    return report
