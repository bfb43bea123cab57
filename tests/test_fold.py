"""Folding a source's keys against the state's, in batches (sync.core.fold)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.core.fold import Fold, HeldDigests, digests, fold_array
from sync.core.keys import KEY_TYPE

words = st.text(alphabet="abcdé|", max_size=4)


def _fold_in_batches(source: list[str], held: list[str], cuts: list[int]):
    held_keys = pa.array(held, KEY_TYPE)
    fold = Fold(HeldDigests.of([held_keys], len(held_keys)))
    start = 0
    for cut in [*sorted(cuts), len(source)]:
        fold.feed(pa.array(source[start:cut], KEY_TYPE))
        start = max(start, cut)
    return fold.result(lambda mask: held_keys.filter(mask))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(words, max_size=40),
    st.lists(words, max_size=40, unique=True),
    st.lists(st.integers(0, 40), max_size=5),
)
def test_a_fold_in_batches_finds_what_sets_say(source, held, cuts) -> None:
    folded = _fold_in_batches(source, held, cuts)
    distinct = list(dict.fromkeys(source))
    assert folded.added.to_pylist() == [k for k in distinct if k not in held]
    assert folded.gone.to_pylist() == [k for k in held if k not in source]
    assert folded.in_source.to_pylist() == [k in source for k in held]
    assert folded.count == len(distinct)
    assert folded.held == len(held)
    assert sorted(folded.every().to_pylist()) == sorted(distinct)


@settings(max_examples=150, deadline=None)
@given(st.lists(words, max_size=40), st.lists(words, max_size=40, unique=True))
def test_arrow_and_digests_fold_an_array_alike(source, held) -> None:
    keys, value_set = pa.array(source, KEY_TYPE), pa.array(held, KEY_TYPE)
    small, large = fold_array(keys, value_set), fold_array(keys, value_set, small=0)
    for name in ("added", "gone", "in_source"):
        assert getattr(small, name).to_pylist() == getattr(large, name).to_pylist(), name
    distinct = list(dict.fromkeys(source))
    assert small.added.to_pylist() == [k for k in distinct if k not in held]
    assert small.count == large.count == len(distinct)
    assert small.every().to_pylist() == large.every().to_pylist()


def test_a_key_held_twice_stays_while_the_source_has_it() -> None:
    # A state never holds a key twice; were it to, no copy may leave the segment while
    # the source still has the key (one copy found, the other taken for gone).
    held = ["a", "b", "c", "b"]
    for small in (0, 100):
        folded = fold_array(pa.array(["b", "d"], KEY_TYPE), pa.array(held, KEY_TYPE), small=small)
        assert folded.gone.to_pylist() == ["a", "c"]
        assert folded.in_source.to_pylist() == [False, True, False, True]


def test_digests_sharing_their_first_half_are_told_apart_by_the_second() -> None:
    high = np.array([7, 5, 5, 9, 5], dtype=np.uint64)
    low = np.array([1, 3, 1, 1, 2], dtype=np.uint64)
    held = HeldDigests(high.copy(), low.copy())
    asked_high = np.array([5, 5, 5, 5, 7, 9, 8, 0, 10], dtype=np.uint64)
    asked_low = np.array([1, 2, 3, 4, 1, 1, 1, 0, 0], dtype=np.uint64)
    found = held.find_digests(asked_high, asked_low)
    # Places in the state's order: (5,1) is the third key, (5,2) the fifth, (5,3) the second.
    assert found.tolist() == [2, 4, 1, -1, 0, 3, -1, -1, -1]


def test_a_digest_past_the_last_held_one_is_not_held() -> None:
    held = HeldDigests(np.array([1, 2], dtype=np.uint64), np.array([1, 1], dtype=np.uint64))
    found = held.find_digests(np.array([2, 2, 3], np.uint64), np.array([1, 2, 1], np.uint64))
    assert found.tolist() == [1, -1, -1]


def test_an_empty_state_takes_every_key_as_new() -> None:
    folded = _fold_in_batches(["x", "y", "x"], [], [1])
    assert folded.added.to_pylist() == ["x", "y"]
    assert len(folded.gone) == 0 and folded.count == 2


def test_a_state_count_that_disagrees_with_its_keys_is_an_error() -> None:
    keys = pa.array(["a", "b"], KEY_TYPE)
    for count in (1, 3):
        try:
            HeldDigests.of([keys], count)
        except ValueError as error:
            assert "metadata" in str(error)
        else:
            raise AssertionError(f"a count of {count} for 2 keys was taken")


def test_a_tick_spreads_only_over_copies_of_the_same_digest() -> None:
    # (2, 5) is held twice, so ticks are spread over its copies; (1, 5) shares only its
    # second half with them: its tick is its own, and (2, 5) still leaves the segment.
    held = HeldDigests(np.array([1, 2, 2], dtype=np.uint64), np.array([5, 5, 5], dtype=np.uint64))
    ticked = np.array([True, False, False])
    held.spread(ticked)
    assert ticked.tolist() == [True, False, False]
    ticked = np.array([False, False, True])
    held.spread(ticked)
    assert ticked.tolist() == [False, True, True]


def test_digests_are_two_exact_independent_64_bit_numbers() -> None:
    keys = pa.array([f"user{n}@example.com" for n in range(50)], KEY_TYPE)
    high, low = digests(keys)
    assert (high.dtype, low.dtype) == (np.uint64, np.uint64)  # a float would lose bits
    assert (high != low).all()  # two seeds: two hashes, not one twice
    held = HeldDigests.of([keys], len(keys))
    assert (held.high.dtype, held.low.dtype) == (np.uint64, np.uint64)
    assert held.place.dtype == np.uint32  # 4 bytes a key, not numpy's 8


def test_digests_made_a_slice_at_a_time_land_in_their_places(monkeypatch) -> None:
    from sync.core import fold as folding

    keys = pa.array([f"k{n}" for n in range(9)], KEY_TYPE)
    whole = digests(keys)
    monkeypatch.setattr(folding, "SLICE", 2)
    parts = [keys.slice(0, 5), keys.slice(5)]
    held = HeldDigests.of(parts, len(keys))
    sliced = digests(keys)
    assert (sliced[0] == whole[0]).all() and (sliced[1] == whole[1]).all()
    assert held.find(keys).tolist() == list(range(9))


def test_a_fold_with_nothing_leaving_reads_no_held_key_back() -> None:
    held = pa.array(["a", "b", "c"], KEY_TYPE)
    picked: list[int] = []

    def pick(mask: pa.BooleanArray) -> pa.Array:
        picked.append(mask.true_count)  # a folded run reads the state file here
        return held.filter(mask)

    fold = Fold(HeldDigests.of([held], 3))
    fold.feed(pa.array(["c", "a", "b", "a"], KEY_TYPE))
    folded = fold.result(pick)
    assert picked == [] and folded.gone.type == KEY_TYPE and len(folded.gone) == 0
    assert folded.added.type == KEY_TYPE and folded.count == 3
    same = fold_array(pa.array(["b", "a", "c"], KEY_TYPE), held)
    assert same.gone.type == KEY_TYPE and len(same.gone) == 0


def test_a_fold_in_batches_keeps_every_copy_of_a_key_held_twice() -> None:
    held = pa.array(["a", "b", "c", "b", "d", "d"], KEY_TYPE)
    fold = Fold(HeldDigests.of([held], len(held)))
    fold.feed(pa.array(["b"], KEY_TYPE))
    fold.feed(pa.array(["d", "e"], KEY_TYPE))
    folded = fold.result(lambda mask: held.filter(mask))
    assert folded.in_source.to_pylist() == [False, True, False, True, True, True]
    assert folded.gone.to_pylist() == ["a", "c"] and folded.added.to_pylist() == ["e"]


def test_a_fold_in_memory_looks_up_the_source_digests_it_is_given() -> None:
    from sync.core.hashing import _digests

    given = _digests(pa.array(["a"]))  # what a same-set check hashed of the source
    folded = fold_array(pa.array(["c"]), pa.array(["a", "b"]), small=0, digests=given)
    assert folded.in_source.to_pylist() == [True, False]
