"""Set operations on key arrays through 128-bit digests.

Comparing ten million strings through hash tables of strings costs seconds and copies
every string again; two independent 64-bit hashes per key (polars, multi-threaded) make
the same decisions on fixed-width numbers at a fraction of the time and memory. The
digests live only inside one call, so they do not depend on polars' hash staying the
same across versions. Two keys that differ share both hashes with a probability of about
n^2 / 2^129: never, at any list size this tool will meet.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class SetPrint:
    """A set of keys in three numbers, whatever their order or repeats: how many distinct
    keys, and the sums (modulo 2^64) of the two halves of their digests.

    Two different sets share a print with a probability of about 2^-128: as unlikely as two
    keys sharing a digest. ``hasher`` names the polars that hashed: its hash is stable only
    within a version, so prints of different hashers are never compared.
    """

    count: int
    high: int
    low: int
    hasher: str

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "high": self.high, "low": self.low, "hasher": self.hasher}

    @classmethod
    def from_json(cls, data: object) -> SetPrint | None:
        """None unless ``data`` is a print this np6-sync can compare with its own."""
        if not isinstance(data, dict) or data.get("hasher") != hasher():
            return None
        numbers = [data.get(name) for name in ("count", "high", "low")]
        whole = [n for n in numbers if type(n) is int and 0 <= n < 1 << 64]
        if len(whole) != len(numbers):
            return None
        count, high, low = whole
        return cls(count, high, low, data["hasher"])


def hasher() -> str:
    """The recipe of a print (seeds, halves, sums) and the polars that hashes for it."""
    import polars as pl

    return f"np6-sync set print 1, polars {pl.__version__}"


def set_print(keys: pa.Array | pa.ChunkedArray) -> tuple[SetPrint, pl.Series]:
    """The print of the distinct ``keys``, and their digests (for an ``Overlap``)."""
    import polars as pl

    digests = _digests(keys)
    halves = (
        digests.unique()
        .to_frame("d")
        .select(
            high=(pl.col("d") // (1 << 64)).cast(pl.UInt64),
            low=(pl.col("d") % (1 << 64)).cast(pl.UInt64),
        )
    )
    # numpy's unsigned sums wrap around (modulo 2^64), as a print needs.
    high, low = (int(halves[half].to_numpy().sum()) for half in ("high", "low"))
    return SetPrint(len(halves), high, low, hasher()), digests


def import_beside(module: str = "polars") -> None:
    """Start importing ``module`` on a thread of its own: polars is 0.1 to 0.15 s of Python,
    which runs while the main thread reads a large source (pyarrow lets go of the GIL)
    instead of after it. A failure is left to the import that needs the module, to report."""

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    if module not in sys.modules:
        threading.Thread(target=load, name="np6sync-import", daemon=True).start()


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
        right_digests: pl.Series | None = None,
    ) -> None:
        """``right_digests``: ``right``'s, when a caller hashed it already (``set_print``)."""
        self.left, self.right = left, right
        # Arrow's own lookup for small arrays, and whenever a side is empty.
        self.direct = len(left) + len(right) < small or not len(left) or not len(right)
        self._digests: dict[str, pl.Series] = {}
        if right_digests is not None:
            self._digests["right"] = right_digests

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
