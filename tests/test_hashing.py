from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sync.core.hashing as hashing
from sync.core.hashing import SEEDS, Overlap, _digests, first_distinct, isin
from sync.core.keys import KEY_TYPE

texts = st.lists(st.text(max_size=5), max_size=60)


@settings(max_examples=150, deadline=None)
@given(texts)
def test_digests_find_the_same_distinct_keys_in_the_same_order(values: list[str]) -> None:
    keys = pa.array(values, KEY_TYPE)
    expected = list(dict.fromkeys(values))
    assert first_distinct(keys, small=0).to_pylist() == expected  # polars digests
    assert first_distinct(keys).to_pylist() == expected  # Arrow's hash table


@settings(max_examples=150, deadline=None)
@given(texts, texts)
def test_digests_answer_membership_like_arrow(values: list[str], others: list[str]) -> None:
    keys, value_set = pa.array(values, KEY_TYPE), pa.array(others, KEY_TYPE)
    expected = pc.is_in(keys, value_set=value_set).to_pylist()
    assert isin(keys, value_set, small=0).to_pylist() == expected
    assert isin(keys, value_set).to_pylist() == expected


def test_large_arrays_take_the_digest_path() -> None:
    keys = pa.array([f"user{n % 150_000}@example.com" for n in range(200_000)], KEY_TYPE)
    distinct = first_distinct(keys)
    assert len(distinct) == 150_000
    assert distinct[0].as_py() == "user0@example.com"
    found = isin(keys, distinct.slice(0, 10))
    assert pc.sum(found).as_py() == 20  # the first ten keys appear twice each


def test_a_digest_holds_both_hashes_whole_side_by_side() -> None:
    import polars as pl

    keys = pa.array(["a@x.fr", "b@x.fr", "", "é"], KEY_TYPE)
    strings = pl.Series(values=keys)
    high, low = (strings.hash(seed).to_list() for seed in SEEDS)
    assert _digests(keys).to_list() == [(h << 64) | lo for h, lo in zip(high, low, strict=True)]


def test_keys_are_hashed_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "SLICE", 3)
    values = ["a", "b", "a", "c", "d", "b", "e"]
    keys = pa.array(values, KEY_TYPE)
    assert len(_digests(keys)) == len(values)
    assert first_distinct(keys, small=0).to_pylist() == ["a", "b", "c", "d", "e"]
    assert isin(keys, pa.array(["b", "e"], KEY_TYPE), small=0).to_pylist() == [
        False, True, False, False, False, True, True,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("left", "right", "small", "direct"),
    [
        pytest.param(2, 2, 5, True, id="under-small"),
        pytest.param(2, 3, 5, False, id="at-small"),
        pytest.param(4, 1, 5, False, id="over-small"),
        pytest.param(1, 4, 5, False, id="over-small-right"),
        pytest.param(0, 9, 5, True, id="left-empty"),
        pytest.param(9, 0, 5, True, id="right-empty"),
    ],
)
def test_arrows_lookup_below_small_or_with_an_empty_side_digests_else(
    left: int, right: int, small: int, direct: bool
) -> None:
    """Both ways answer alike, each side hashed once on the digest path."""
    lefts = pa.array([f"k{n}" for n in range(left)], KEY_TYPE)
    rights = pa.array([f"k{n}" for n in range(1, right + 1)], KEY_TYPE)
    overlap = Overlap(lefts, rights, small)
    assert overlap.direct is direct
    assert overlap.left_in_right().to_pylist() == pc.is_in(lefts, value_set=rights).to_pylist()
    assert overlap.right_in_left().to_pylist() == pc.is_in(rights, value_set=lefts).to_pylist()


def test_a_print_is_the_count_and_the_wrapping_sums_of_the_distinct_digests_halves() -> None:
    from sync.core.fold import digests

    distinct = pa.array([f"key{n}@example.com" for n in range(500)])
    high, low = digests(distinct)  # the halves: SEEDS[0]'s hash, then SEEDS[1]'s
    printed = hashing.set_print(pa.concat_arrays([distinct, distinct.slice(7, 20)]))[0]
    assert printed.count == 500
    assert (printed.high, printed.low) == (int(high.sum()), int(low.sum()))  # modulo 2^64
    assert printed.hasher == hashing.hasher()


def test_the_empty_set_s_print_is_taken_back() -> None:
    empty = {"count": 0, "high": 0, "low": 0, "hasher": hashing.hasher()}
    assert hashing.SetPrint.from_json(empty) == hashing.SetPrint(0, 0, 0, hashing.hasher())


def test_an_overlap_looks_up_the_digests_it_is_given() -> None:
    # A caller that hashed ``right`` already hands its digests over: they are what counts.
    given_digests = _digests(pa.array(["a"]))
    overlap = Overlap(pa.array(["a", "b"]), pa.array(["c"]), 0, right_digests=given_digests)
    assert overlap.left_in_right().to_pylist() == [True, False]


def test_a_module_is_imported_beside_on_a_daemon_thread(tmp_path, monkeypatch) -> None:
    import sys
    import threading

    import polars  # noqa: F401  (imported already here: ``import_beside()`` must not start)

    (tmp_path / "np6sync_probe.py").write_text("import time\ntime.sleep(0.3)\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    failures: list[object] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)

    def importing() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "np6sync-import"]

    try:
        hashing.import_beside()  # polars, imported already: no thread
        assert importing() == []
        hashing.import_beside("np6sync_probe")
        [thread] = importing()
        assert thread.daemon  # never keeps a finished run waiting
        assert "np6sync_probe" not in sys.modules or not hasattr(
            sys.modules["np6sync_probe"], "VALUE"
        )
        thread.join(10)
        assert sys.modules["np6sync_probe"].VALUE == 1
        hashing.import_beside("np6sync_probe")  # imported already: no thread
        assert importing() == []
        hashing.import_beside("np6sync_no_such_module")  # left to the import that needs it
        for thread in importing():
            thread.join(10)
        assert failures == [] and "np6sync_no_such_module" not in sys.modules
    finally:
        sys.modules.pop("np6sync_probe", None)
