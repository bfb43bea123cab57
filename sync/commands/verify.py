"""`np6-sync verify`: compare each segment itself with its source; repair on request."""

from __future__ import annotations

import argparse

from sync.commands.common import StopOnSignals, config_path, connector, each_job
from sync.config import Job, load_settings
from sync.errors import EXIT_FAILED
from sync.job.source import source_keys
from sync.np6.client import NP6Client
from sync.verify.ids import MIN_CHECKED_SHARE, verify_by_ids
from sync.verify.listing import comparison_text, verify_job


def verify(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config))
    connect = connector(settings, needed=True)
    with StopOnSignals() as stop:

        def one(job: Job, path: str) -> int:
            client = connect()
            if job.targets.identify_by == "unicity":
                return _by_ids(job, client, args.repair)
            try:
                result = verify_job(
                    job,
                    client,
                    source_keys,
                    repair=args.repair,
                    force=args.force,
                    concurrency=settings.concurrency,
                    stop=stop,
                )
            finally:
                client.close()
            final = result.after or result.before
            print(f"{job.name}: before: {comparison_text(result.before, result.listing)}")
            if result.before.state_drift:
                print(
                    f"{job.name}: the state differed from the segment on "
                    f"{result.before.state_drift:,} targets; it now follows the segment"
                )
            if result.after is not None:
                print(f"{job.name}: after repair: {comparison_text(result.after, None)}")
            print(f"{job.name}: {'equal' if final.equal else 'DIFFERENT'}")
            return 0 if final.equal else EXIT_FAILED

        return each_job(args.jobs, one, segment=getattr(args, "segment", None))


def _by_ids(job: Job, client: NP6Client, repair: bool) -> int:
    """Unicity mode: the segment's ids against the ids the state knows (docs/removals.md)."""
    try:
        comparison = verify_by_ids(job, client, repair=repair)
    finally:
        client.close()
    print(f"{job.name}: {comparison.text()}")
    if not comparison.equal:
        print(f"{job.name}: DIFFERENT")
        return EXIT_FAILED
    if not comparison.enough_checked:
        print(
            f"{job.name}: NOT VERIFIED: {comparison.checked_text()}, under the "
            f"{MIN_CHECKED_SHARE:.0%} a read-back needs: the segment answers with contact "
            "ids, and np6-sync knows the ids only of the keys runs looked up (to remove "
            "them one by one); the others cannot be told present or missing from here"
        )
        return EXIT_FAILED
    print(f"{job.name}: equal as far as known ids tell ({comparison.checked_text()})")
    return 0
