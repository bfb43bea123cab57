from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.core.hashing import first_distinct, isin
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
