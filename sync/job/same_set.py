"""A source that holds the very keys of the state, known without reading the state's keys.

A state saved from at least ``PRINT_KEYS`` keys records their print (``SetPrint``: how many
distinct keys, and the sums of their digests, whatever their order or repeats). A source
read whole is printed the same way: equal prints, and the segment already holds every key
of the source and no other. The plan is then made without reading the state's keys: a new
export of the same list in another order, whose bytes differ, so that no seal can vouch
for it (sync.state.seal).

The print is trusted only for a state file that the seal of the job's last run vouches
for (sync.state.seal: the same job and settings, and the state file's identity unchanged
since): a tool that rewrote the state since, even keeping its metadata, makes the run read
it. Any doubt, and the state is read as before: no seal, a journal to replay (its steps
are not in the print), deferred removals (a state with some records no print, and is
never sealed), ``--full-refresh``, a print of another recipe or polars (polars' hash is
stable only within a version), a state file with a key twice, a state in object storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sync.config import Job
from sync.core.fold import Folded
from sync.core.hashing import SetPrint, set_print
from sync.core.keys import KEY_TYPE
from sync.job.source import local_size
from sync.state import local
from sync.state.scan import picker, read_keys
from sync.state.seal import state_vouched

if TYPE_CHECKING:
    import polars as pl


# A source file this large holds enough keys to be hashed (hashing.SMALL keys of 20 bytes
# and more): polars, which hashes, may be imported while it is read.
HASHED_BYTES = 2 << 20


def will_hash(job: Job) -> bool:
    """Whether the job's own source file is large enough that its keys will be hashed."""
    return local_size(job) >= HASHED_BYTES


@dataclass(frozen=True)
class Checked:
    """The source folded against the state when both hold the same keys, with a way to
    read the state's keys should a step need them; else the source's digests, so that the
    full fold does not hash the source again."""

    folded: Folded | None = None
    reread: Callable[[], Iterator[pa.Array]] | None = None
    digests: pl.Series | None = None


def same_set(store: local.StateStore, keys: pa.Array, *, shape: str) -> Checked:
    """``keys``: the source's valid keys, repeats included; ``shape``: the job's, as its
    seal records it (``seal.job_shape``). Only for a route that may seal
    (``sync.job.route``): a local state, no full refresh."""
    if len(keys) < local.PRINT_KEYS:
        return Checked()
    # Only a state file that the seal of this job's last run vouches for (never with a
    # journal on record): another tool may have rewritten it since, and kept its metadata
    # (pyarrow does, table to table).
    if not state_vouched(store.path, shape):
        return Checked()
    recorded = store.metadata().get("key_set") or {}
    held = SetPrint.from_json(recorded)
    if held is None or recorded.get("rows") != held.count:  # a key twice: read it all
        return Checked()
    printed, digests = set_print(keys)
    if printed != held:
        return Checked(digests=digests)
    everywhere = pa.array(np.ones(held.count, dtype=bool))
    none = pa.array([], KEY_TYPE)
    folded = Folded(held.count, everywhere, none, none, picker(store.path))
    return Checked(folded, partial(read_keys, store.path))
