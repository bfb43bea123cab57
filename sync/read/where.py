"""Rows chosen by a condition (``source.where``): a polars SQL expression over text columns.

Polars, not pyarrow compute: polars is already a dependency and parses SQL itself
(``optin = 'Y' AND country IN ('FRA', 'BEL')``, ``CAST(age AS INT) >= 18``, ``LIKE``,
``IS NULL``), where pyarrow would need a parser of our own. Every column is text, as for
keys, so a comparison with a number needs the cast the user writes. Polars is imported
only when a job has a condition: the job loader runs on every command.

What polars cannot say of an expression, sqlglot's parse tree does: whether it looks at
other rows (an aggregate, a window: a large file is folded a batch at a time, so such a
condition would choose rows per batch, and is refused at load) and whether it reads the
clock (``CURRENT_DATE``, ``NOW()``: the same bytes may choose other rows tomorrow, so such
a job is never answered from its seal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from sync.errors import SourceError

_VALUES = re.compile(r"(values?): \[.*?\](?= This error| You might|$)")
_VALUES_TO_END = re.compile(r"(values?): \[.*")

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa


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


@dataclass(frozen=True)
class Traits:
    """What a condition depends on beyond its own row."""

    other_rows: str | None  # the aggregate or window that looks at other rows, by name
    clock: bool  # the date or time of the run (or a random draw): never sealed
    casts: tuple[str, ...]  # the types it casts text to, each tried once at load


# Functions that sqlglot does not know by name (Anonymous) and that read the clock.
_CLOCK_NAMES = frozenset({"NOW", "TODAY", "SYSDATE", "GETDATE", "LOCALTIMESTAMP", "LOCALTIME"})


@cache
def traits(condition: str) -> Traits:
    """The condition's traits; one sqlglot cannot parse (a polars-only spelling) is taken
    to read the clock, so that it is never sealed, and is tried on rows as ever."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(condition, read="postgres")
    except sqlglot.errors.SqlglotError:
        return Traits(None, clock=True, casts=())
    other = next(tree.find_all(exp.AggFunc, exp.Window, exp.Subquery, exp.Select), None)
    other_rows = None
    if other is not None:
        other_rows = other.sql_name() if isinstance(other, exp.Func) else "a subquery"
        if isinstance(other, exp.Window):
            other_rows = f"a window ({other.this.sql_name()} OVER ...)"
    clock_nodes = (exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime, exp.Rand)
    clock = any(True for _ in tree.find_all(*clock_nodes)) or any(
        node.name.upper() in _CLOCK_NAMES for node in tree.find_all(exp.Anonymous)
    )
    casts = tuple(sorted({cast.to.sql(dialect="postgres") for cast in tree.find_all(exp.Cast)}))
    return Traits(other_rows, clock, casts)


def columns_of(condition: str) -> list[str]:
    """The columns the condition names, in order of first mention."""
    return list(dict.fromkeys(parse(condition).meta.root_names()))


def check(condition: str) -> str:
    """Parse the condition and try it on no rows of text columns: a comparison of text
    with a number, or a condition that is not true or false, fails here, at load."""
    import polars as pl

    expr = parse(condition)
    found = traits(condition)
    if found.other_rows is not None:
        raise ValueError(
            f"looks at other rows ({found.other_rows}): a condition chooses each row by "
            "its own values (a large file is read a batch at a time)"
        )
    for cast in found.casts:
        _castable(cast)

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


# A text value each cast should take, to find the casts this polars refuses whatever
# the value (polars 2 has no CAST of text AS DATE): tried at load, not on the first row.
_SAMPLES = {"DATE": "2000-01-31", "TIMESTAMP": "2000-01-31 12:00:00", "TIME": "12:00:00"}


def _castable(kind: str) -> None:
    import polars as pl

    sample = _SAMPLES.get(kind.split("(")[0].upper(), "1")
    try:
        pl.DataFrame({"v": [sample]}).select(pl.sql_expr(f"CAST(v AS {kind})"))
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (write DATE(column) or STRPTIME(column, '%Y-%m-%d'))" if kind in _SAMPLES else ""
        raise ValueError(
            f"CAST(... AS {kind}) of text does not run on polars {pl.__version__}{hint}: {first}"
        ) from None


def keep_mask(condition: str, table: pa.Table, path: str) -> pa.Array:
    """True for each row the condition keeps; a condition that is NULL for a row (a
    missing Parquet value) leaves the row out, as SQL's WHERE does."""
    import polars as pl
    import pyarrow as pa

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
