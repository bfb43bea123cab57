"""Set operations on key arrays through 128-bit digests.

Comparing ten million strings through hash tables of strings costs seconds and copies
every string again; two independent 64-bit hashes per key (polars, multi-threaded) make
the same decisions on fixed-width numbers at a fraction of the time and memory. The
digests live only inside one call, so they do not depend on polars' hash staying the
same across versions. Two keys that differ share both hashes with a probability of about
n^2 / 2^129: never, at any list size this tool will meet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import polars as pl

# Below this many keys, Arrow's own hash tables are as quick, and polars is not imported
# at all: small jobs and `validate` start faster.
SMALL = 100_000

# Fixed seeds, so runs are reproducible. polars seeds xxh3 through them for strings, which
# makes the two hashes independent of each other.
SEEDS = (0x6E7036_73796E63, 0x9E3779B9_7F4A7C15)


# Keys are hashed a slice at a time: polars copies the strings it is given, and a slice
# bounds that copy to a few tens of megabytes whatever the list's size.
SLICE = 1_000_000


def _digests(keys: pa.Array | pa.ChunkedArray) -> pl.Series:
    """One 128-bit number per key: two independent 64-bit hashes side by side. A single
    column keeps polars' lookups lean (two columns cost them several times the memory)."""
    import polars as pl

    parts = []
    for start in range(0, len(keys), SLICE):
        strings = pl.Series(values=keys.slice(start, SLICE))
        halves = pl.DataFrame({f"h{i}": strings.hash(seed) for i, seed in enumerate(SEEDS)})
        wide = pl.col("h0").cast(pl.UInt128) * (1 << 64) + pl.col("h1").cast(pl.UInt128)
        parts.append(halves.select(wide).to_series())
    return pl.concat(parts, rechunk=False) if parts else pl.Series(dtype=pl.UInt128)


def first_distinct(keys: pa.Array | pa.ChunkedArray, small: int = SMALL) -> pa.Array:
    """The distinct keys, each at its first appearance, in order."""
    if len(keys) < small:
        return pc.unique(keys)
    first = _digests(keys).is_first_distinct()
    if first.all():
        return keys  # no duplicates: nothing to copy
    return pc.filter(keys, first.to_arrow())


class Overlap:
    """Which keys of two arrays the other one holds, each array hashed at most once:
    a plan asks both ways, and so does a read-back."""

    def __init__(
        self,
        left: pa.Array | pa.ChunkedArray,
        right: pa.Array | pa.ChunkedArray,
        small: int = SMALL,
    ) -> None:
        self.left, self.right = left, right
        # Arrow's own lookup for small arrays, and whenever a side is empty.
        self.direct = len(left) + len(right) < small or not len(left) or not len(right)
        self._digests: dict[str, pl.Series] = {}

    def left_in_right(self) -> pa.BooleanArray:
        return self._isin("left", "right")

    def right_in_left(self) -> pa.BooleanArray:
        return self._isin("right", "left")

    def _isin(self, values: str, value_set: str) -> pa.BooleanArray:
        if self.direct:
            return pc.is_in(getattr(self, values), value_set=getattr(self, value_set))
        return self._side(values).is_in(self._side(value_set).implode()).to_arrow()

    def _side(self, name: str) -> pl.Series:
        if name not in self._digests:
            self._digests[name] = _digests(getattr(self, name))
        return self._digests[name]


def isin(
    values: pa.Array | pa.ChunkedArray, value_set: pa.Array | pa.ChunkedArray, small: int = SMALL
) -> pa.BooleanArray:
    """For each value, whether it is in ``value_set`` (like ``pc.is_in``)."""
    return Overlap(values, value_set, small).left_in_right()
