"""Which way a job's source is read: decided here, once, from explicit facts.

Every door (the command line's ``run`` and ``plan``, ``--parallel``, the Python API, the
demo) describes what it was handed in ``Facts``; ``decide`` returns the ``Route``, with its
reason in words, and the run follows it without deciding again. The ways:

| route   | for                                                    | reads                       |
|---------|--------------------------------------------------------|-----------------------------|
| sealed  | the job's own file (or its URL, downloaded), a local   | nothing: the seal vouches   |
|         | state, no fan-out or full refresh, no clock in where   | for the bytes               |
| printed | read whole on a sealable footing, the same keys as the | the file; not the state's   |
|         | state in any order (its print), a vouched state        | keys                        |
| folded  | the job's own local file of ``FOLD_BYTES`` or more, a  | the file a batch at a time, |
|         | local state, no fan-out, no full refresh               | the state's digests         |
| whole   | any other file of the job's own                        | the file and the state      |
| shared  | a fan-out (one read for its segments) or a DataFrame   | what was handed in, once    |


A sealable route (``seal``) is first tried from the seal (``sync.job.quick``), and a run
that ends with the segment equal to the file seals it; a route read whole on a sealable
footing may also plan from the state's print (``sync.job.same_set``). Whether the seal or
the print then holds is known only at run time: the report's ``route`` says which did.

This module imports neither pyarrow nor polars: the quick path's start-up is its cost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sync.config import Job

# Below this, a file is read whole: its rows take little room, and small jobs start
# faster without polars. Tests set it to 0 to fold every file.
FOLD_BYTES = 64 << 20

Given = Literal["file", "url", "frame"]
Read = Literal["folded", "whole", "shared"]


@dataclass(frozen=True)
class Facts:
    """What a door knows of a job before it runs."""

    given: Given  # the job's own local file, its URL, or a DataFrame handed to the API
    size: int  # the local file's bytes; -1 when unknown (a URL, a file not there)
    segments: int  # how many segments read this source (a fan-out: more than one)
    fan_out: bool  # the job is one segment of a fan-out: one read for all of them
    state_remote: bool  # the state lives in object storage
    where_clock: bool  # source.where reads the date or the time
    full_refresh: bool
    dry_run: bool


@dataclass(frozen=True)
class Route:
    read: Read
    seal: bool  # tried from the seal first; a run that ends equal writes one
    download: bool  # a URL source is downloaded first, then read (and sealed) there
    reason: str
    # Read whole, the source may be planned from the state's print (``sync.job.same_set``):
    # a local state that the job's seal vouches for, whatever the clock or a dry run.
    print: bool = False

    @property
    def name(self) -> str:
        return self.read


def decide(facts: Facts) -> Route:
    """The route for these facts, with its reason in words."""
    shared = facts.fan_out or facts.given == "frame"
    download = facts.given == "url" and not facts.state_remote and not shared
    unsealed = _never_sealed(facts, shared)
    seal = unsealed is None
    printed = not shared and not facts.state_remote and not facts.full_refresh
    if shared:
        what = (
            "a DataFrame handed in"
            if facts.given == "frame"
            else f"one read of the file for the fan-out's {facts.segments} segments"
        )
        return Route("shared", seal, download, f"{what}; never sealed: {unsealed}")
    if (
        facts.given == "file"
        and facts.size >= FOLD_BYTES
        and not facts.state_remote
        and not facts.full_refresh
    ):
        why = f"a local file of {_size(facts.size)} (from {_size(FOLD_BYTES)} on, files are"
        why += " read a batch at a time against the state's digests)"
        return Route("folded", seal, download, why + _sealing(unsealed))
    if facts.given == "url":
        where = "downloaded first" if download else "read where it lies"
        why = f"a URL source, {where}" + _sealing(unsealed)
        return Route("whole", seal, download, why, print=printed)
    why = f"a local file of {_size(facts.size)}" if facts.size >= 0 else "the job's file"
    if facts.size >= FOLD_BYTES:  # large, but the state is remote or all is rebuilt
        why += ", read whole (a state in object storage, or a full refresh)"
    return Route("whole", seal, download, why + _sealing(unsealed), print=printed)


def _never_sealed(facts: Facts, shared: bool) -> str | None:
    """Why the run is neither answered from a seal nor sealed; None when it may be."""
    if shared:
        return "its source is shared" if facts.fan_out else "a DataFrame has no bytes to prove"
    if facts.state_remote:
        return "the state is in object storage"
    if facts.full_refresh:
        return "a full refresh rebuilds everything"
    if facts.dry_run:
        return "a plan records nothing"
    if facts.where_clock:
        return "source.where reads the date or time: the same bytes may choose other rows"
    return None


def _sealing(unsealed: str | None) -> str:
    return "" if unsealed is None else f"; never sealed: {unsealed}"


def _size(size: int) -> str:
    if size < 1 << 10:
        return f"{size:,} bytes"
    if size < 1 << 20:
        return f"{size / (1 << 10):,.0f} KiB"
    return f"{size / (1 << 20):,.0f} MiB"


def facts_of(
    job: Job,
    *,
    frame: bool = False,
    segments: int = 1,
    fan_out: bool = False,
    full_refresh: bool = False,
    dry_run: bool = False,
) -> Facts:
    """The facts of ``job`` as a door runs it: ``frame`` when the API was handed a
    DataFrame, ``segments``/``fan_out`` for a fan-out's segments."""
    given: Given = "frame" if frame else ("url" if job.source_url is not None else "file")
    size = -1
    if given == "file":
        try:
            size = os.stat(job.source_path).st_size
        except OSError:
            size = -1  # its reader will say what is wrong with it
    clock = False
    if job.source.where is not None:
        from sync.read.where import traits

        clock = traits(job.source.where).clock
    return Facts(
        given=given,
        size=size,
        segments=segments,
        fan_out=fan_out,
        state_remote=job.state_url is not None,
        where_clock=clock,
        full_refresh=full_refresh,
        dry_run=dry_run,
    )
