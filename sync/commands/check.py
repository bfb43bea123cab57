"""`np6-sync check`: whether a run can go ahead against this account. Changes nothing in
NP6 or in the state: it reads the segment's description and looks keys up, never a PUT.

Exit 0: go ahead; 1: NP6 cannot be reached, or failed; 2: a bad job or settings, the API
key missing or refused (401: not accepted; 403: it lacks a right), or a segment that cannot
be synced (unknown, dynamic); 3: too few sampled keys match a contact (the reload safeguard
would refuse), or the account matches unicity values whatever their case while the
settings say it does not (unicity_folds_case)."""

from __future__ import annotations

import argparse

import pyarrow as pa
import pyarrow.csv as pacsv

from sync.commands.common import config_path, connector, each_job
from sync.config import Job, load_settings
from sync.errors import EXIT_OK, EXIT_REFUSED, Np6SyncError, translated
from sync.job.source import load_keys
from sync.np6.client import NP6Client
from sync.state.files import atomic_write
from sync.state.store import store_for
from sync.verify.preflight import Sample, describe, look_up, sample_keys, sample_text


def check(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config))
    connect = connector(settings, needed=True)

    def one(job: Job, path: str) -> int:
        client = connect()
        try:
            return check_job(job, client, args.samples)
        finally:
            client.close()

    return each_job(args.jobs, one, segment=getattr(args, "segment", None))


def check_job(job: Job, client: NP6Client, sample_size: int) -> int:
    """Print what a run would meet; the exit code says whether it can go ahead."""
    name = job.name
    info = describe(client, job.segment_id)  # SegmentError (2) for unknown or dynamic
    print(f"{name}: the API key is accepted")
    if info is None:
        print(f"{name}: segment {job.segment_id}: NP6 cannot describe it (see the warning)")
    else:
        label = f" {info.name!r}" if info.name else ""
        kind = info.type or "of a type NP6 does not say"
        size = "unknown" if info.targets_count is None else f"about {info.targets_count:,}"
        print(f"{name}: segment {job.segment_id}{label}: {kind}, {size} targets (NP6's estimate)")
    print(f"{name}: {_state_text(job)}")
    keys = load_keys(job).keys
    print(f"{name}: the source has {len(keys):,} keys")
    if job.targets.identify_by != "unicity":
        print(f"{name}: keys are target ids: no look-up by unicity value applies")
        return EXIT_OK
    sample = look_up(client, keys, sample_size)
    print(f"{name}: {sample_text(sample)}")
    if sample.unmatched:
        print(f"{name}: the sampled keys that match no contact: {_write_unmatched(job, sample)}")
    ratio = job.sync.min_accepted_ratio
    if sample.under(ratio):
        print(
            f"{name}: under sync.min_accepted_ratio ({ratio:.0%}): a reload would be refused; "
            "check the key columns, separator, transforms and the account's contacts"
        )
        return EXIT_REFUSED
    if _folds_case(name, client, keys, sample) is False:
        return EXIT_REFUSED
    print(f"{name}: a run can go ahead")
    return EXIT_OK


def _folds_case(name: str, client: NP6Client, keys: pa.Array, sample: Sample) -> bool:
    """Whether the account matches unicity values whatever their case, asked with one
    sampled key that matches a contact, looked up again with its case swapped; prints
    what it found. False only when the settings assume otherwise than the account does
    in the unsafe way (unicity_folds_case false, an account that folds case)."""
    if sample.unavailable:
        return True
    unmatched = set(sample.unmatched)
    for position, key in enumerate(sample_keys(keys, sample.looked), start=1):
        if key in unmatched or key.swapcase() == key:
            continue
        ids = set(client.lookup(key, position))
        folds = bool(ids) and bool(ids.intersection(client.lookup(key.swapcase(), position)))
        break
    else:
        print(f"{name}: cannot tell whether the account folds case: no sampled key has letters")
        return True
    if not folds:
        print(
            f"{name}: the account matches unicity values exactly, case included (a key "
            "looked up with its case swapped names no contact of it)"
            + (
                "; unicity_folds_case: false would spare a few look-ups"
                if client.folds_case
                else ""
            )
        )
        return True
    print(
        f"{name}: the account matches unicity values whatever their case (a key looked up "
        "with its case swapped names the same contact)"
    )
    if client.folds_case:
        return True
    print(
        f"{name}: the settings say otherwise (unicity_folds_case: false): a run could take "
        "out of the segment a contact that a kept key equal but for case still names; set "
        "unicity_folds_case: true"
    )
    return False


def _state_text(job: Job) -> str:
    store = store_for(job)
    try:
        info = store.info()
    except Np6SyncError as error:
        return f"the state cannot be read: {error}"
    if info is None:
        return f"no state yet ({store.where})"
    return f"the state holds {info.keys:,} keys, updated {info.updated_at} ({store.where})"


def _write_unmatched(job: Job, sample: Sample) -> str:
    """Beside the state, as the rejects are: a listing of personal values stays on disk,
    out of the terminal and the CI logs."""
    path = job.state_path.with_name(f"{job.name}.unmatched.csv")
    with translated("write the listing of unmatched keys"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            pacsv.write_csv(pa.table({"key": pa.array(sample.unmatched, pa.string())}), f)
    return str(path)
