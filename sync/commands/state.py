"""`np6-sync state show` and `state import`: what the state holds; adopt what a segment
already holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa

from sync.commands.common import config_path, connector, each_job
from sync.config import Job, load_settings
from sync.core.hashing import first_distinct
from sync.core.keys import build_keys, concat
from sync.core.plan import no_pending
from sync.errors import StateError, translated
from sync.np6.client import NP6Client
from sync.read.sources import SourceSpec, read_source
from sync.state.store import store_for
from sync.verify.listing import require_ids, segment_members


def show(args: argparse.Namespace) -> int:
    return each_job(args.jobs, _show, shared="warn", segment=getattr(args, "segment", None))


def _show(job: Job, path: str) -> int:
    store = store_for(job)
    with translated("read the state"):
        info = store.info()
    print(f"{job.name}: {store.where}")
    if info is None:
        print("  no state yet: the segment is taken to be empty")
    else:
        with translated("read the state"):
            holding = store.load()
        print(f"  format      version {info.version}, segment {info.segment_id}")
        print(f"  keys        {len(holding.keys):,} (state file: {info.keys:,})")
        print(f"  updated     {info.updated_at}")
        print(f"  pending     {len(holding.pending):,} deferred removal(s)")
        print(f"  key         {json.dumps(info.key_definition)}")
    if store.has_journal():
        print("  unfinished  a run left a journal: the next run goes on from there")
    with translated("read the run history"):
        last = store.read_history(1)
    for entry in last:
        print(
            f"  last run    {entry['finished_at']} {entry['command']}: {entry['status']}"
            f" ({entry['action']}, +{entry['added']:,} -{entry['removed']:,})"
        )
    return 0


def import_(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config))

    def one(job: Job, path: str) -> int:
        client = connector(settings, needed=True)() if args.from_segment else None
        try:
            count, replaced = import_state(job, client, args.from_file, path)
        finally:
            if client is not None:
                client.close()
        what = "targets added to the state" if args.from_file else "targets adopted from NP6"
        print(f"{job.name}: {count:,} {what}")
        if replaced:
            print(
                f"{job.name}: what the segment holds replaced the journal an unfinished run "
                "had left"
            )
        return 0

    return each_job(args.jobs, one, segment=getattr(args, "segment", None))


def import_state(
    job: Job, client: NP6Client | None, from_file: Path | None, job_path: str = "JOB"
) -> tuple[int, bool]:
    """Record that the segment already holds targets: those of ``from_file`` (added to
    the state), or, without a file, the segment's current members (which replace it).
    Returns how many, and whether they replaced an unfinished run's journal.

    A journal is never discarded silently: it may say that a clear was sent and not
    acknowledged, so that the segment holds nearly nothing whatever the state says. Only
    what the segment really holds (``--from-segment``) may replace it."""
    store = store_for(job)
    with translated("update the state"), store.lock(job.name):
        pending_journal = store.has_journal()
        if from_file is not None:
            if pending_journal:
                raise StateError(
                    f"{store.where}: an unfinished run left a journal (it may have been "
                    "clearing the segment), which an import from a file would discard; "
                    f"finish it first with `np6-sync run {job_path}`, then import"
                    + (" (or adopt what the segment holds: --from-segment)" if _by_id(job) else "")
                )
            spec = SourceSpec(path=from_file.resolve(), delimiter=job.source_delimiter)
            table = read_source(spec, job.targets.columns)
            keys = build_keys(table.table, job.targets, table.first_row).keys
            held = store.load()
            merged = first_distinct(concat(held.keys, keys))
            store.save(merged, held.pending)
            return len(merged) - len(held.keys), False
        require_ids(job, "state import --from-segment")
        assert client is not None
        members: pa.Array = segment_members(client, job.segment_id)
        store.save(members, no_pending())
        return len(members), pending_journal


def _by_id(job: Job) -> bool:
    return job.targets.identify_by == "id"
