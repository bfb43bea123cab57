"""Rows chosen by a condition (``source.where``): a polars SQL expression over text columns.

Polars, not pyarrow compute: polars is already a dependency and parses SQL itself
(``optin = 'Y' AND country IN ('FRA', 'BEL')``, ``CAST(age AS INT) >= 18``, ``LIKE``,
``IS NULL``), where pyarrow would need a parser of our own. Every column is text, as for
keys, so a comparison with a number needs the cast the user writes. Polars is imported
only when a job has a condition: the job loader runs on every command.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.errors import SourceError

_VALUES = re.compile(r"(values?): \[.*?\](?= This error| You might|$)")
_VALUES_TO_END = re.compile(r"(values?): \[.*")

if TYPE_CHECKING:
    import polars as pl


def parse(condition: str) -> pl.Expr:
    """The condition as a polars expression; ValueError says why it does not parse."""
    import polars as pl

    try:
        expr = pl.sql_expr(condition)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"does not parse: {_one_line(exc)}") from None
    if not expr.meta.root_names():
        raise ValueError("names no column: a condition chooses rows by their values")
    return expr


def columns_of(condition: str) -> list[str]:
    """The columns the condition names, in order of first mention."""
    return list(dict.fromkeys(parse(condition).meta.root_names()))


def check(condition: str) -> str:
    """Parse the condition and try it on no rows of text columns: a comparison of text
    with a number, or a condition that is not true or false, fails here, at load."""
    import polars as pl

    expr = parse(condition)
    columns = columns_of(condition)
    empty = pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    try:
        kind = empty.select(expr.alias("keep")).to_series().dtype
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"cannot be evaluated over text columns: {_one_line(exc)}") from None
    if kind != pl.Boolean:
        raise ValueError(
            f"is not true or false for a row (it gives {kind}): "
            "write a comparison, for example optin = 'Y'"
        )
    return condition


def keep_mask(condition: str, table: pa.Table, path: str) -> pa.Array:
    """True for each row the condition keeps; a condition that is NULL for a row (a
    missing Parquet value) leaves the row out, as SQL's WHERE does."""
    import polars as pl

    columns = columns_of(condition)
    try:
        frame = pl.from_arrow(table.select(columns))
        assert isinstance(frame, pl.DataFrame)
        kept = frame.select(parse(condition).alias("keep")).to_series().to_arrow()
    except pl.exceptions.PolarsError as exc:
        # A CAST of a value that is no number, for instance: the data, not the job.
        said = _without_values(_one_line(exc))
        raise SourceError(f"{path}: source.where {condition!r}: {said}") from None
    return kept.fill_null(False).cast(pa.bool_())


def _without_values(text: str) -> str:
    """polars' message without the values it quotes (``for 1 out of 4 values: ["..."]``):
    a list's personal data. What follows them (the expression) stays when it is found."""
    text = _VALUES.sub(r"\1 (not shown)", text)
    return _VALUES_TO_END.sub(r"\1 (not shown)", text)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
