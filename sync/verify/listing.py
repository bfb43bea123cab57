"""Read-back: compare the segment itself with the source and the state; repair it.

NP6 lists a segment's members as target ids, so both need `identify_by: id`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sync.config import Job
from sync.core.hashing import Overlap
from sync.core.keys import KEY_TYPE, concat
from sync.core.plan import Plan, no_pending
from sync.errors import RefusedError, UsageError, translated
from sync.np6.client import NP6Client
from sync.send.push import push_plan
from sync.state.files import atomic_write
from sync.state.store import store_for


@dataclass
class Comparison:
    members: pa.Array  # what the segment holds
    source: int  # keys of the source
    missing: pa.Array  # in the source, not in the segment
    extra: pa.Array  # in the segment, not in the source
    state_drift: int  # keys the state and the segment disagree on

    @property
    def segment(self) -> int:
        return len(self.members)

    @property
    def equal(self) -> bool:
        return not len(self.missing) and not len(self.extra)


@dataclass
class VerifyResult:
    before: Comparison
    after: Comparison | None  # after --repair
    listing: Path | None  # the missing and extra targets, one per line


def verify_job(
    job: Job,
    client: NP6Client,
    source_keys: Callable[[Job], pa.Array],
    *,
    repair: bool = False,
    force: bool = False,
    concurrency: int = 4,
    stop: threading.Event | None = None,
) -> VerifyResult:
    """Compare the segment with the source's distinct keys (``source_keys``: the job's
    reader, sync.job.source) and the state; with ``repair``, add what is missing and
    remove what is extra, one target at a time, then compare again. The state becomes
    what the segment holds."""
    require_ids(job, "verify")
    source = source_keys(job)
    store = store_for(job)
    with translated("read back the segment beside its state"), store.lock(job.name):
        state = store.load().keys
        before = _compare(client, job.segment_id, source, state)
        with translated("write the listing of differences"):
            listing = _write_listing(job, before)
        after = None
        if repair and not before.equal:
            _check_repair(job, before, force)
            plan = Plan(
                action="update",
                send=before.missing,
                remove=before.extra,
                added=0,
                removed=0,
                previous=before.segment,
                source_keys=0,
                reason="repair",
            )
            with store.open_journal("repair") as journal:
                result = push_plan(
                    job, plan, client=client, journal=journal, concurrency=concurrency, stop=stop
                )
            if result.error is not None:
                raise result.error
            after = _compare(client, job.segment_id, source, state)
        # The segment itself is the truth: the state follows it, so the next run
        # corrects any difference that is left.
        store.save((after or before).members, no_pending())
    return VerifyResult(before, after, listing)


def segment_members(client: NP6Client, segment_id: int) -> pa.Array:
    return pa.array(client.list_targets(segment_id), KEY_TYPE)


def _compare(client: NP6Client, segment_id: int, source: pa.Array, state: pa.Array) -> Comparison:
    members = segment_members(client, segment_id)
    against_source, against_state = Overlap(members, source), Overlap(members, state)
    missing = pc.filter(source, pc.invert(against_source.right_in_left()))
    extra = pc.filter(members, pc.invert(against_source.left_in_right()))
    unknown_to_state = pc.sum(pc.invert(against_state.left_in_right())).as_py() or 0
    gone_from_segment = pc.sum(pc.invert(against_state.right_in_left())).as_py() or 0
    drift = int(unknown_to_state) + int(gone_from_segment)
    return Comparison(members, len(source), missing, extra, drift)


def _write_listing(job: Job, comparison: Comparison) -> Path | None:
    path = job.state_path.with_name(f"{job.name}.verify.csv")
    if comparison.equal:
        path.unlink(missing_ok=True)
        return None
    problems = ["missing"] * len(comparison.missing) + ["extra"] * len(comparison.extra)
    table = pa.table(
        {
            "target": concat(comparison.missing, comparison.extra),
            "problem": pa.array(problems, pa.string()),
        }
    )
    with atomic_write(path) as f:
        pacsv.write_csv(table, f)
    return path


def _check_repair(job: Job, comparison: Comparison, force: bool) -> None:
    if force or not comparison.segment:
        return
    ratio = len(comparison.extra) / comparison.segment
    if ratio > job.sync.max_removed_ratio:
        raise RefusedError(
            f"the repair would remove {len(comparison.extra)} of the segment's "
            f"{comparison.segment} targets ({ratio:.1%}), more than sync.max_removed_ratio "
            f"({job.sync.max_removed_ratio:.1%}); check the source, or pass --force"
        )


def require_ids(job: Job, command: str) -> None:
    if job.targets.identify_by != "id":
        raise UsageError(
            f"{command} needs targets.identify_by: id: NP6 lists a segment's members by "
            f"target id, which cannot be compared with unicity values (job {job.name})"
        )


def comparison_text(comparison: Comparison, listing: Path | None) -> str:
    text = (
        f"the segment holds {comparison.segment:,} targets: {len(comparison.missing):,} "
        f"missing, {len(comparison.extra):,} extra"
    )
    return text + (f" (listed in {listing})" if listing else "")
