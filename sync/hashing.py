"""Set operations on key arrays through 128-bit digests.

Comparing ten million strings through hash tables of strings costs seconds and copies
every string again; two independent 64-bit hashes per key (polars, multi-threaded) make
the same decisions on fixed-width numbers at a fraction of the time and memory. The
digests live only inside one call, so they do not depend on polars' hash staying the
same across versions. Two keys that differ share both hashes with a probability of about
n^2 / 2^129: never, at any list size this tool will meet.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

# Fixed seeds, so runs are reproducible. polars seeds xxh3 through them for strings, which
# makes the two hashes independent of each other.
_SEEDS = (0x6E7036_73796E63, 0x9E3779B9_7F4A7C15)


def _digests(keys: pa.Array) -> pl.DataFrame:
    series = pl.Series(values=keys)
    digest = pl.DataFrame({f"h{i}": series.hash(seed) for i, seed in enumerate(_SEEDS)})
    return digest.with_row_index("i")


def first_distinct(keys: pa.Array) -> pa.Array:
    """The distinct keys, each at its first appearance, in order."""
    if len(keys) < 2:
        return keys
    rows = _digests(keys).unique(subset=["h0", "h1"], keep="first", maintain_order=True)
    return keys.take(pa.array(rows["i"].to_numpy()))


def isin(values: pa.Array, value_set: pa.Array) -> pa.BooleanArray:
    """For each value, whether it is in ``value_set`` (like ``pc.is_in``)."""
    found = np.zeros(len(values), dtype=bool)
    if len(values) and len(value_set):
        present = _digests(values).join(
            _digests(value_set).select("h0", "h1").unique(), on=["h0", "h1"], how="semi"
        )
        found[present["i"].to_numpy()] = True
    return pa.array(found)
