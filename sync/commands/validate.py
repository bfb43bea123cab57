"""`np6-sync validate`: read each job's source and build its keys; nothing is sent."""

from __future__ import annotations

import argparse

from sync.commands.common import each_job
from sync.config import Job
from sync.errors import Np6SyncError
from sync.job.source import load_keys


def validate(args: argparse.Namespace) -> int:
    def one(job: Job, path: str) -> int:
        keyset = load_keys(job)
        print(f"{path}: job {job.name} -> segment {job.segment_id}")
        print(f"  source      {job.source_url or job.source_path} ({job.source_format})")
        if job.source.where is not None:
            print(f"  rows        {keyset.rows_read + keyset.rows_filtered:,}")
            print(f"  where       {job.source.where}")
            print(f"  kept        {keyset.rows_read:,} (left out: {keyset.rows_filtered:,})")
        else:
            print(f"  rows        {keyset.rows_read:,}")
        print(f"  valid keys  {len(keyset.keys):,}")
        print(f"  duplicates  {keyset.duplicate_keys:,}")
        print(f"  rejected    {keyset.rows_rejected:,}")
        for reason, count in keyset.rejects_by_reason.items():
            print(f"    {count:,} {reason}")
        for key in keyset.keys.slice(0, args.samples).to_pylist():
            print(f"  sample      {key}")
        return 0

    return each_job(
        args.jobs, one, failed=_cannot_run, shared="warn", segment=getattr(args, "segment", None)
    )


def _cannot_run(path: str, error: Np6SyncError) -> None:
    from sync.console.logs import say

    say(f"{path}: cannot run\n  {error}", "ERROR")
