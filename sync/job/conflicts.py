"""Jobs of one run that would fight over a segment or a state. Pure.

Two jobs on one segment each compute their removal ratio against their own half, and
the remedy a state error suggests (``--full-refresh``) would wipe the other job's
targets; two jobs on one state file overwrite each other's record of the segment. Such
jobs are refused together, unless every job on the segment only ever adds
(``sync.mode: append``) and each keeps its own state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from sync.config import Job


def state_place(job: Job) -> str:
    """Where the job's state lives, the same text for the same place."""
    return job.state_url or str(job.state_path.resolve())


def conflicts(jobs: Sequence[tuple[Path, Job]]) -> dict[int, str]:
    """For each job (by position) that must not run with the others, why; the job files
    are named as given."""
    problems: dict[int, list[str]] = defaultdict(list)
    by_segment: dict[int, list[int]] = defaultdict(list)
    by_state: dict[str, list[int]] = defaultdict(list)
    for index, (_, job) in enumerate(jobs):
        by_segment[job.segment_id].append(index)
        by_state[state_place(job)].append(index)
    for segment, group in by_segment.items():
        if len(group) > 1 and not all(jobs[i][1].sync.mode == "append" for i in group):
            for i in group:
                others = ", ".join(str(jobs[j][0]) for j in group if j != i)
                problems[i].append(
                    f"segment {segment} is also synced by {others}: each job would remove the "
                    "other's targets; give each its own segment, or sync.mode: append to all"
                )
    for place, group in by_state.items():
        for i in group if len(group) > 1 else ():
            others = ", ".join(str(jobs[j][0]) for j in group if j != i)
            problems[i].append(f"state {place} is also used by {others}: give each its own")
    return {i: "; ".join(reasons) for i, reasons in problems.items()}
