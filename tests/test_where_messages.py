"""What source.where's refusals and failures say, word for word (sync/read/where.py): a
newcomer's mistake gets what to write instead, and polars' messages never carry a value
of the file (they may quote a list's personal data)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from sync.errors import SourceError
from sync.read import where
from sync.read.where import check, keep_mask


def test_a_condition_on_other_rows_is_refused_with_what_it_looks_at() -> None:
    with pytest.raises(ValueError) as refused:
        check("amount > 20 * AVG(amount)")
    assert str(refused.value) == (
        "looks at other rows (AVG): a condition chooses each row by its own values "
        "(a large file is read a batch at a time)"
    )


def test_a_condition_that_is_not_true_or_false_says_what_to_write() -> None:
    with pytest.raises(ValueError) as refused:
        check("UPPER(optin)")
    said = str(refused.value)
    assert said.startswith("is not true or false for a row (it gives ")
    assert said.endswith("): write a comparison, for example optin = 'Y'")


def test_text_compared_with_a_number_is_taught_the_cast() -> None:
    with pytest.raises(ValueError) as refused:
        check("customer_id >= 2")
    said = str(refused.value)
    prefix = (
        "cannot be evaluated over text columns: every column is text: write "
        "CAST(column AS INT) (or DOUBLE) to compare it with a number ("
    )
    assert said.startswith(prefix) and "This error occurred" not in said
    assert "cannot compare string with numeric" in said


def test_a_condition_that_does_not_parse_says_polars_words() -> None:
    with pytest.raises(ValueError) as refused:
        where.parse("tier = = 'x'")
    said = str(refused.value)
    assert said.startswith("does not parse: ") and said != "does not parse: None"


@pytest.mark.parametrize(
    ("text", "taught"),
    [
        pytest.param(
            "cannot compare string with numeric type (i32) This error occurred in: col(a)",
            "every column is text: write CAST(column AS INT) (or DOUBLE) to compare it with "
            "a number (cannot compare string with numeric type (i32))",
            id="number",
        ),
        pytest.param(
            "cannot compare 'date/datetime/time' to a string value This error occurred x "
            "This error occurred y",
            "every column is text: compare DATE(column) or STRPTIME(column, '%Y-%m-%d') "
            "with a date (cannot compare 'date/datetime/time' to a string value)",
            id="date",
        ),
        pytest.param("something else entirely", "something else entirely", id="unknown"),
    ],
)
def test_known_first_mistakes_are_taught(text: str, taught: str) -> None:
    assert where._taught(ValueError(text)) == taught


def test_one_line_folds_white_space_and_cuts_at_300() -> None:
    assert where._one_line(ValueError("a\n  b\tc")) == "a b c"
    assert where._one_line(ValueError("x" * 300)) == "x" * 300
    long = where._one_line(ValueError("y" * 301))
    assert long == "y" * 297 + "..." and len(long) == 300


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param(
            "conversion from `str` to `i32` failed in column 'points' for 1 out of 4 values: "
            '["n/a"] This error occurred in the following expression: col("points")',
            "conversion from `str` to `i32` failed in column 'points' for 1 out of 4 values "
            '(not shown) This error occurred in the following expression: col("points")',
            id="values-then-more",
        ),
        pytest.param(
            'casting failed for 1 value: ["secret@x.org", "other@x.org"',
            "casting failed for 1 value (not shown)",
            id="values-to-the-end",
        ),
    ],
)
def test_a_cast_failure_is_shown_without_its_values(text: str, shown: str) -> None:
    assert where._shown(ValueError(text)) == shown
    assert where._without_values(text) == shown


def test_any_other_failure_on_the_data_is_not_shown() -> None:
    failure = pl.exceptions.ComputeError("regex parse error: +secret.referrer@example.org")
    assert where._shown(failure) == (
        "polars could not evaluate it on the file's data (ComputeError; its message is not "
        "shown: it may quote the file's values)"
    )


def test_keep_mask_leaves_out_the_rows_whose_condition_is_null() -> None:
    table = pa.table({"optin": pa.array(["Y", None, "N"], pa.string())})
    kept = keep_mask("optin = 'Y'", table, "list.parquet")
    assert kept.type == pa.bool_() and kept.to_pylist() == [True, False, False]


def test_keep_mask_names_the_file_and_the_condition_and_no_value() -> None:
    table = pa.table({"points": pa.array(["1", "n/a"], pa.string())})
    with pytest.raises(SourceError) as failed:
        keep_mask("CAST(points AS INT) > 0", table, "list.csv")
    said = str(failed.value)
    assert said.startswith("list.csv: source.where 'CAST(points AS INT) > 0': ")
    assert "n/a" not in said


def _casts_text_to_date() -> bool:
    try:
        pl.DataFrame({"v": ["2000-01-31"]}).select(pl.sql_expr("CAST(v AS DATE)"))
    except pl.exceptions.PolarsError:
        return False
    return True


def test_a_cast_this_polars_cannot_do_is_refused_at_load_with_what_to_write() -> None:
    where._castable("INT")  # takes "1"
    where._castable("DECIMAL(10,2)")  # takes "1", whatever its precision
    if _casts_text_to_date():  # polars 1.x: a date cast of text runs
        where._castable("DATE")
        return
    with pytest.raises(ValueError) as refused:
        where._castable("DATE")
    said = str(refused.value)
    assert said.startswith(
        f"CAST(... AS DATE) of text does not run on polars {pl.__version__} (write "
        "DATE(column) or STRPTIME(column, '%Y-%m-%d')): "
    )
    assert said.count("\n") == 0 and len(said) > len("CAST(... AS DATE)") + 80
    with pytest.raises(ValueError) as refused:
        where._castable("date")  # the sample is found whatever the type's case
    assert "(write DATE(column)" in str(refused.value)


def _first_line(kind: str, sample: str) -> str | None:
    """polars' own first line for a cast of ``sample`` AS ``kind``; None when it runs."""
    try:
        pl.DataFrame({"v": [sample]}).select(pl.sql_expr(f"CAST(v AS {kind})"))
    except pl.exceptions.PolarsError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def test_a_refused_cast_says_polars_first_line_and_a_hint_only_for_dates() -> None:
    first = _first_line("BOOLEAN", "1")
    assert first is not None  # no polars casts text to BOOLEAN
    with pytest.raises(ValueError) as refused:
        where._castable("BOOLEAN")
    assert str(refused.value) == (
        f"CAST(... AS BOOLEAN) of text does not run on polars {pl.__version__}: {first}"
    )
    date = _first_line("DATE", "2000-01-31")
    if date is None:  # polars 1.x casts text to DATE
        return
    with pytest.raises(ValueError) as refused:
        where._castable("DATE")
    assert str(refused.value) == (
        f"CAST(... AS DATE) of text does not run on polars {pl.__version__} (write "
        f"DATE(column) or STRPTIME(column, '%Y-%m-%d')): {date}"
    )


def test_a_cast_failure_on_the_data_is_said_in_its_value_free_shape() -> None:
    table = pa.table({"points": pa.array(["1", "n/a"], pa.string())})
    with pytest.raises(SourceError) as failed:
        keep_mask("CAST(points AS INT) > 0", table, "list.csv")
    assert "(not shown)" in str(failed.value) and "NoneType" not in str(failed.value)


def test_a_type_with_a_precision_is_tried_with_its_kinds_sample() -> None:
    """TIMESTAMP(6) is tried with a timestamp, not with "1": where polars casts text to a
    timestamp (1.x) it runs; where it never does (2), the hint says what to write."""
    if _first_line("TIMESTAMP(6)", "2000-01-31 12:00:00") is None:
        where._castable("TIMESTAMP(6)")
        return
    with pytest.raises(ValueError, match=r"TIMESTAMP\(6\)\) of text does not run on polars"):
        where._castable("TIMESTAMP(6)")
    with pytest.raises(ValueError, match=r"\(write DATE\(column\) or STRPTIME"):
        where._castable("TIMESTAMP(6)")
