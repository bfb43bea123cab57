from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sync.core.keys as keys_module
from sync.config import TargetsConfig
from sync.core.keys import KEY_TYPE, build_keys, collect_keys, merged


def keys_of(values: dict[str, list[str | None]], **targets: object) -> list[str]:
    table = pa.table({k: pa.array(v, pa.string()) for k, v in values.items()})
    config = TargetsConfig(**{"columns": list(values), **targets})
    return build_keys(table, config).keys.to_pylist()


@pytest.mark.parametrize(
    ("transforms", "value", "expected"),
    [
        pytest.param([], "  Ab@X.com ", "  Ab@X.com ", id="none"),
        pytest.param(["strip"], "  Ab@X.com\t", "Ab@X.com", id="strip"),
        pytest.param(["lower"], "Ab@X.COM", "ab@x.com", id="lower"),
        pytest.param(["upper"], "ab@x.com", "AB@X.COM", id="upper"),
        pytest.param(["digits"], "+33 (6) 12-34 ٣", "3361234", id="digits-ascii-only"),
        pytest.param(["nfkc"], "ｆｕｌｌ①", "full1", id="nfkc"),
        pytest.param(["strip", "lower"], " ÉLÈVE@X.FR ", "élève@x.fr", id="strip-lower"),
    ],
)
def test_transforms(transforms: list[str], value: str, expected: str) -> None:
    assert keys_of({"c": [value]}, transforms={"c": transforms}) == [expected]


def test_a_column_without_transforms_is_stripped() -> None:
    assert keys_of({"c": [" a "]}) == ["a"]


@pytest.mark.parametrize("value", ["000123", "NA", "null", "nan", "1e5", "TRUE", "+33612345678"])
def test_values_are_kept_as_written(value: str) -> None:
    assert keys_of({"c": [value]}) == [value]


def test_columns_are_concatenated_in_order_with_the_separator() -> None:
    values = {"b": ["x", "y"], "a": ["1", "2"]}
    assert keys_of(values) == ["x1", "y2"]
    assert keys_of(values, separator="|") == ["x|1", "y|2"]


def test_duplicates_are_kept_once_in_first_seen_order() -> None:
    table = pa.table({"c": ["b", "a", "b", " a", "c"]})
    keyset = build_keys(table, TargetsConfig(columns=["c"]))
    assert keyset.keys.to_pylist() == ["b", "a", "c"]
    assert keyset.duplicate_keys == 2


def test_rejected_rows_carry_row_number_reason_and_raw_values() -> None:
    table = pa.table({"email": ["a@x", "  ", None, "b@x"], "id": ["1", "2", "3", ""]})
    keyset = build_keys(table, TargetsConfig(columns=["email", "id"]), first_row=2)
    assert keyset.keys.to_pylist() == ["a@x1"]
    assert keyset.rejected.to_pylist() == [
        {"row": 3, "reason": "empty email", "email": "  ", "id": "2"},
        {"row": 4, "reason": "missing email", "email": None, "id": "3"},
        {"row": 5, "reason": "empty id", "email": "b@x", "id": ""},
    ]
    assert keyset.rejects_by_reason == {"empty email": 1, "missing email": 1, "empty id": 1}
    assert (keyset.rows_read, keyset.valid_rows, keyset.rows_rejected) == (4, 1, 3)


def test_id_mode_rejects_values_that_are_not_target_ids() -> None:
    table = pa.table({"id": ["000PKXK4", "1234567", "ABCDEFGH9", "AB-DEFGH"]})
    keyset = build_keys(table, TargetsConfig(identify_by="id", columns=["id"]))
    assert keyset.keys.to_pylist() == ["000PKXK4"]
    assert keyset.rejects_by_reason == {"not an NP6 target id (8 letters or digits)": 3}


# What a key may not hold: C0 and C1 controls, and the zero-width characters.
INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff]")
cell = st.one_of(
    st.none(), st.text(max_size=6), st.sampled_from(["", " ", "NA", "0", "\x00", "a\u200bb"])
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(cell, cell), max_size=40))
def test_every_row_is_a_key_or_a_reported_reject(rows: list[tuple[str | None, str | None]]) -> None:
    table = pa.table(
        {
            "a": pa.array([r[0] for r in rows], pa.string()),
            "b": pa.array([r[1] for r in rows], pa.string()),
        }
    )
    keyset = build_keys(table, TargetsConfig(columns=["a", "b"], separator="/"), first_row=2)
    expected: dict[str, None] = {}
    rejected_rows = []
    for number, (a, b) in enumerate(rows, start=2):
        parts = [p.strip() if p is not None else None for p in (a, b)]
        if any(not p or INVISIBLE.search(p) for p in parts):
            rejected_rows.append(number)
        else:
            expected.setdefault("/".join(parts), None)  # type: ignore[arg-type]
    assert keyset.keys.to_pylist() == list(expected)
    assert keyset.rejected["row"].to_pylist() == rejected_rows
    assert keyset.valid_rows + keyset.rows_rejected == len(rows)


def test_rows_are_numbered_from_1_unless_the_caller_says_where_the_data_starts() -> None:
    table = pa.table({"c": ["a", ""]})
    config = TargetsConfig(columns=["c"])
    assert build_keys(table, config).rejected["row"].to_pylist() == [2]
    assert collect_keys(table, config).rejected["row"].to_pylist() == [2]
    assert build_keys(table, config, first_row=10).rejected["row"].to_pylist() == [11]


def test_each_invisible_character_is_named_with_its_column() -> None:
    table = pa.table(
        {"a": ["x\x01", "x\u200b", "ok", "ok", "ok"], "b": ["1", "1", "1\x7f", "1\ufeff", "1"]}
    )
    keyset = build_keys(table, TargetsConfig(columns=["a", "b"]))
    assert keyset.rejected["reason"].to_pylist() == [
        "control character in a",
        "zero-width character in a",
        "control character in b",
        "zero-width character in b",
    ]
    assert keyset.keys.to_pylist() == ["ok1"]


def test_an_id_built_from_several_columns_is_checked_whole() -> None:
    table = pa.table({"a": ["000P", "000P"], "b": ["KXK4", "KX-4"]})
    keyset = build_keys(table, TargetsConfig(identify_by="id", columns=["a", "b"]))
    assert keyset.keys.to_pylist() == ["000PKXK4"]
    assert keyset.rejects_by_reason == {"not an NP6 target id (8 letters or digits)": 1}


def test_with_no_row_rejected_the_rejects_still_have_their_columns() -> None:
    keyset = build_keys(pa.table({"c": ["a"]}), TargetsConfig(columns=["c"]))
    assert keyset.rejected.num_rows == 0
    assert keyset.rejected.schema.names == ["row", "reason", "c"]
    assert keyset.rejected.schema.types == [pa.int64(), pa.string(), pa.string()]
    assert keyset.rejects_by_reason == {}


@pytest.mark.parametrize(
    ("values", "keep", "keys", "rejected"),
    [
        pytest.param(["a", "b", "c"], [True, False, True], ["a", "c"], [], id="all-valid"),
        pytest.param(["a", " ", "", "b"], [True, False, True, False], ["a"], [4], id="rejects"),
        pytest.param(["a", "b"], [False, False], [], [], id="none-kept"),
    ],
)
def test_rows_left_out_by_a_condition_are_neither_keys_nor_rejects(
    values: list[str], keep: list[bool], keys: list[str], rejected: list[int]
) -> None:
    table = pa.table({"c": values})
    keyset = collect_keys(table, TargetsConfig(columns=["c"]), 2, keep=pa.array(keep))
    assert keyset.keys.to_pylist() == keys
    assert keyset.rejected["row"].to_pylist() == rejected
    assert keyset.rows_filtered == keep.count(False)
    assert keyset.rows_read == keep.count(True)
    assert (keyset.valid_rows, keyset.rows_rejected) == (len(keys), len(rejected))


def test_rows_are_read_a_slice_at_a_time_and_numbered_across_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keys_module, "SLICE", 2)
    values = ["a", "", "b", "c", "\x00", "d", "e"]
    keep = [True, True, True, False, True, True, False]
    table = pa.table({"c": values})
    keyset = collect_keys(table, TargetsConfig(columns=["c"]), 2, keep=pa.array(keep))
    assert keyset.keys.to_pylist() == ["a", "b", "d"]
    assert keyset.rejected.to_pylist() == [
        {"row": 3, "reason": "empty c", "c": ""},
        {"row": 6, "reason": "control character in c", "c": "\x00"},
    ]
    assert (keyset.rows_read, keyset.rows_filtered) == (5, 2)
    unfiltered = build_keys(table, TargetsConfig(columns=["c"]), first_row=2)
    assert unfiltered.keys.to_pylist() == ["a", "b", "c", "d", "e"]
    assert unfiltered.rejected["row"].to_pylist() == [3, 6]


def test_a_large_string_column_is_checked_for_invisible_characters() -> None:
    # Polars and some Parquet files give large_string (64-bit offsets).
    table = pa.table({"c": pa.array(["ok", "a\x00b", "z\u200bw"], pa.large_string())})
    keyset = build_keys(table, TargetsConfig(columns=["c"]))
    assert keyset.keys.to_pylist() == ["ok"]
    assert keyset.rejected["reason"].to_pylist() == [
        "control character in c",
        "zero-width character in c",
    ]


def test_the_batches_of_a_folded_source_merge_into_one_count() -> None:
    config = TargetsConfig(columns=["c"])
    first = collect_keys(pa.table({"c": ["a", "", "b"]}), config, 2)
    second = collect_keys(
        pa.table({"c": ["a", " ", "", "c"]}), config, 5, keep=pa.array([True, True, True, False])
    )
    keyset = merged([first, second], distinct_keys=2)
    assert keyset.keys.to_pylist() == [] and keyset.keys.type == KEY_TYPE
    assert keyset.folded == 2
    assert (keyset.rows_read, keyset.valid_rows, keyset.rows_filtered) == (6, 3, 1)
    assert keyset.rejects_by_reason == {"empty c": 3}
    assert keyset.rejected["row"].to_pylist() == [3, 6, 7]
    assert (keyset.distinct_keys, keyset.duplicate_keys, keyset.rows_rejected) == (2, 1, 3)


@pytest.mark.parametrize("value", ["\x00", "\x7f", "\u200b", "a\x01"])
def test_a_column_of_one_short_value_is_still_checked(value: str) -> None:
    # One byte of data (or three, or two) is enough to hold an invisible character.
    keyset = build_keys(pa.table({"c": [value]}), TargetsConfig(columns=["c"]))
    assert keyset.keys.to_pylist() == [] and keyset.rows_rejected == 1


@pytest.mark.parametrize("value", ["\x1f", "\x7f", "\x80", "\x9f", "\u200d", "\u2060", "\ufeff"])
def test_printable_ascii_around_an_invisible_character_does_not_hide_it(value: str) -> None:
    # The quick look at the bytes' lowest and highest must not pass a column whose other
    # values are all printable ASCII, from the space to the tilde.
    column = ["a ~", f"a{value}b", "0123456789", "~~"]
    keyset = build_keys(pa.table({"c": column}), TargetsConfig(columns=["c"]))
    assert keyset.keys.to_pylist() == ["a ~", "0123456789", "~~"]
    assert keyset.rejected["row"].to_pylist() == [2]
