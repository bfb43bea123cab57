"""A source's keys set against what the segment holds, one batch of rows at a time.

Holding every key of a ten-million-row file costs as much memory again as the state's
keys. Folding keeps per key of the state only its 128-bit digest (sorted once, for binary
searches) and one tick; each batch's keys are looked up there and let go, except the keys
the segment does not hold yet. What was never ticked leaves the segment. The digests are
two seeded 64-bit hashes (those of ``hashing``): two different keys share both with a
probability of about n^2 / 2^129, never at any list size this tool will meet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync.core.hashing import SEEDS, SLICE, SMALL, Overlap, first_distinct
from sync.core.keys import KEY_TYPE, concat

if TYPE_CHECKING:
    import polars as pl

# The held keys where a mask is true, in the state's order.
Pick = Callable[[pa.BooleanArray], pa.Array]


@dataclass(frozen=True)
class Folded:
    """The source's distinct keys, against the ``held`` keys of the state."""

    held: int
    in_source: pa.BooleanArray  # for each held key, whether the source has it
    added: pa.Array  # in the source, not held: distinct, in order of first appearance
    gone: pa.Array  # held, not in the source, in the state's order
    pick: Pick

    @property
    def count(self) -> int:
        """How many distinct keys the source has."""
        return self.held - len(self.gone) + len(self.added)

    def every(self) -> pa.Array:
        """Every distinct key of the source: the held ones in the state's order, then the
        new ones. A reload needs them all; a plan alone never asks."""
        return concat(self.pick(self.in_source), self.added)


class HeldDigests:
    """The state's keys as digests, sorted, each with its place in the state."""

    def __init__(self, high: np.ndarray, low: np.ndarray) -> None:
        """``high`` and ``low``: the two hashes of each held key, in the state's order."""
        # polars sorts the three columns together on every core: twice as fast as numpy's
        # argsort and two gathers, and the places fit in uint32, half of numpy's int64.
        import polars as pl

        places = np.arange(len(high), dtype=np.uint32 if len(high) < 1 << 32 else np.uint64)
        table = pl.DataFrame({"high": high, "low": low, "place": places}).sort("high")
        del high, low, places
        self.high = table["high"].to_numpy()
        self.low = table["low"].to_numpy()
        self.place = table["place"].to_numpy()

    @classmethod
    def of(cls, parts: Iterable[pa.Array | pa.ChunkedArray], count: int) -> HeldDigests:
        """The digests of ``count`` keys, which come in ``parts``."""
        high = np.empty(count, dtype=np.uint64)
        low = np.empty(count, dtype=np.uint64)
        filled = 0
        for part in parts:
            filled = _digests_into(part, high, low, filled)
        if filled != count:
            raise ValueError(f"the state holds {filled} keys, its metadata says {count}")
        return cls(high, low)

    def __len__(self) -> int:
        return len(self.high)

    def spread(self, ticked: np.ndarray) -> None:
        """Tick every copy of a key the state holds twice (a state never should): ``find``
        names one place per key, and an unticked copy would leave the segment."""
        high, low = self.high, self.low
        new_run = np.ones(len(high), dtype=bool)
        new_run[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
        if new_run.all():
            return
        starts = np.flatnonzero(new_run)
        runs = np.logical_or.reduceat(ticked[self.place], starts)
        ticked[self.place] = runs[np.cumsum(new_run) - 1]

    def find(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Each key's place in the state, or -1 when the state does not hold it."""
        return self.find_digests(*digests(keys))

    def find_digests(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        size = len(self.high)
        found = np.full(len(high), -1, dtype=np.int64)
        # Sorted first, the searches walk the held digests in order: ten times faster
        # than as many searches at random places.
        import polars as pl

        order = pl.Series(high).arg_sort().to_numpy()
        at = np.empty(len(high), dtype=np.int64)
        at[order] = np.searchsorted(self.high, high[order])
        del order
        todo = np.arange(len(high))
        # Held digests sharing their first half sit side by side: step along such a run
        # until the second half matches too, or the first no longer does.
        while len(todo):
            where = at[todo]
            inside = where < size
            todo, where = todo[inside], where[inside]
            inside = self.high[where] == high[todo]
            todo, where = todo[inside], where[inside]
            same = self.low[where] == low[todo]
            found[todo[same]] = self.place[where[same]]
            todo = todo[~same]
            at[todo] += 1
        return found


class Fold:
    """Feed it each batch's valid keys (duplicates allowed), then take the result."""

    def __init__(self, held: HeldDigests) -> None:
        self.held = held
        self._ticked = np.zeros(len(held), dtype=bool)  # by place in the state
        self._new: list[pa.Array] = []

    def feed(self, keys: pa.Array | pa.ChunkedArray) -> None:
        if not len(keys):
            return
        found = self.held.find(keys)
        hit = found >= 0
        self._ticked[found[hit]] = True
        if not hit.all():
            self._new.append(pc.filter(keys, pa.array(~hit)))

    def result(self, pick: Pick) -> Folded:
        """``pick`` reads the held keys where a mask is true (the leaving ones, here)."""
        self.held.spread(self._ticked)
        new = concat(*self._new)
        added = first_distinct(new) if len(new) else pa.array([], KEY_TYPE)
        in_source = pa.array(self._ticked)
        missing = len(self._ticked) - int(self._ticked.sum())
        gone = pick(pc.invert(in_source)) if missing else pa.array([], KEY_TYPE)
        return Folded(len(self._ticked), in_source, added, gone, pick)


def fold_array(
    source: pa.Array, held: pa.Array, small: int = SMALL, digests: pl.Series | None = None
) -> Folded:
    """``source`` (keys, duplicates allowed) against ``held``, both in memory.

    Both sides are hashed once and looked up in each other (``hashing.Overlap``): with
    every key at hand that is faster than sorting digests, and the memory is there anyway.
    ``digests``: the source's, when a caller hashed it already.
    """

    def pick(mask: pa.BooleanArray) -> pa.Array:
        return pc.filter(held, mask)

    overlap = Overlap(held, source, small, digests)
    in_source = overlap.left_in_right()
    if isinstance(in_source, pa.ChunkedArray):
        in_source = in_source.combine_chunks()
    added = first_distinct(pc.filter(source, pc.invert(overlap.right_in_left())), small)
    gone = pick(pc.invert(in_source)) if in_source.false_count else pa.array([], KEY_TYPE)
    return Folded(len(held), in_source, added, gone, pick)


def digests(keys: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each key."""
    high = np.empty(len(keys), dtype=np.uint64)
    low = np.empty(len(keys), dtype=np.uint64)
    _digests_into(keys, high, low, 0)
    return high, low


def _digests_into(
    keys: pa.Array | pa.ChunkedArray, high: np.ndarray, low: np.ndarray, start: int
) -> int:
    """Hash ``keys`` into ``high`` and ``low`` from ``start`` on, a slice at a time
    (polars copies the strings it hashes: a slice bounds that copy); where they end."""
    import polars as pl

    if start + len(keys) > len(high):
        raise ValueError(f"the state holds more keys than its metadata says ({len(high)})")
    for offset in range(0, len(keys), SLICE):
        strings = pl.Series(values=keys.slice(offset, SLICE))
        at = start + offset
        high[at : at + len(strings)] = strings.hash(SEEDS[0]).to_numpy()
        low[at : at + len(strings)] = strings.hash(SEEDS[1]).to_numpy()
    return start + len(keys)
