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


# Words that read the clock or draw at random, whatever the parser makes of them (sqlglot
# knows some as nodes of their own, others as anonymous functions): outside quotes, any of
# them and the condition is never sealed. A word too many costs one read of the file.
_CLOCK = re.compile(
    r"\b(NOW|TODAY|SYSDATE|SYSTIMESTAMP|GETDATE|LOCALTIME|LOCALTIMESTAMP|CURRENT_DATE|"
    r"CURRENT_TIME|CURRENT_TIMESTAMP|CURRENT_DATETIME|RANDOM|RAND|UUID|GEN_RANDOM_UUID)\b",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'(?:[^']|'')*'")
# The nodes of polars' own expression (its serialized plan) that look at other rows: an
# aggregate, a window, a subquery's scan, a rank, a shift... sqlglot does not know every
# aggregate polars accepts by name (QUANTILE_CONT, VAR, STDEV_SAMP parse as anonymous).
_OTHER_ROWS = frozenset(
    {
        "Agg", "Over", "Window", "Quantile", "DataFrameScan", "Implode", "CumSum",
        "CumCount", "CumProd", "CumMin", "CumMax", "Shift", "Diff", "Rank", "Unique",
        "NUnique", "SortBy", "Median", "Std", "Var", "Mode", "ArgMin", "ArgMax", "Corr",
        "Cov", "Skew", "Kurtosis", "IsUnique", "IsDuplicated", "IsFirstDistinct",
        "IsLastDistinct", "PctChange", "Rolling", "RollingExpr", "EwmMean", "Interpolate",
        "ForwardFill", "BackwardFill", "FillNullWithStrategy",
    }
)  # fmt: skip
# Dialects tried in turn: polars' SQL is close to PostgreSQL's, and takes MySQL's
# backquoted names too.
_DIALECTS = ("postgres", "mysql", "duckdb")


@cache
def traits(condition: str) -> Traits:
    """The condition's traits, from sqlglot's tree and polars' own; ValueError when no
    dialect parses it (it could not be told whether it looks at other rows)."""
    import sqlglot
    from sqlglot import exp

    tree = None
    for dialect in _DIALECTS:
        try:
            tree = sqlglot.parse_one(condition, read=dialect)
            break
        except sqlglot.errors.SqlglotError:
            continue
    if tree is None:
        raise ValueError(
            "cannot be analysed (is it standard SQL? name columns in double quotes): "
            "whether it looks at other rows cannot be told"
        )
    other = next(tree.find_all(exp.AggFunc, exp.Window, exp.Subquery, exp.Select), None)
    other_rows = None
    if other is not None:
        other_rows = other.sql_name() if isinstance(other, exp.Func) else "a subquery"
        if isinstance(other, exp.Window):
            other_rows = f"a window ({other.this.sql_name()} OVER ...)"
    other_rows = other_rows or _other_rows_in_plan(condition)
    clock_nodes = (exp.CurrentDate, exp.CurrentTimestamp, exp.CurrentTime, exp.Rand)
    clock = any(True for _ in tree.find_all(*clock_nodes))
    clock = clock or bool(_CLOCK.search(_QUOTED.sub("''", condition)))
    casts = tuple(sorted({cast.to.sql(dialect="postgres") for cast in tree.find_all(exp.Cast)}))
    return Traits(other_rows, clock, casts)


def _other_rows_in_plan(condition: str) -> str | None:
    """The first node of polars' plan of the condition that looks at other rows."""
    import polars as pl

    try:
        plan = parse(condition).meta.serialize(format="json")
    except (ValueError, pl.exceptions.PolarsError):
        return None  # the parse itself says what is wrong, at load
    nodes = set(re.findall(r'"([A-Za-z]+)"', plan)) & _OTHER_ROWS
    return f"{sorted(nodes)[0]} in polars' plan" if nodes else None


def columns_of(condition: str) -> list[str]:
    """The columns the condition names, in order of first mention."""
    return list(dict.fromkeys(parse(condition).meta.root_names()))


def check(condition: str) -> str:
    """Parse the condition and try it on no rows of text columns: a comparison of text
    with a number, or a condition that is not true or false, fails here, at load."""
    import polars as pl

    expr = parse(condition)
    found = traits(condition)  # ValueError when no dialect parses it
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
        raise ValueError(f"cannot be evaluated over text columns: {_taught(exc)}") from None
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

    base = kind.split("(")[0].upper()
    sample = _SAMPLES.get(base, "1")
    try:
        pl.DataFrame({"v": [sample]}).select(pl.sql_expr(f"CAST(v AS {kind})"))
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (write DATE(column) or STRPTIME(column, '%Y-%m-%d'))" if base in _SAMPLES else ""

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
        raise SourceError(f"{path}: source.where {condition!r}: {_shown(exc)}") from None
    return kept.fill_null(False).cast(pa.bool_())


# What a newcomer's first conditions meet, and what to write instead.
_HINTS = (
    (
        "cannot compare string with numeric",
        "every column is text: write CAST(column AS INT) (or DOUBLE) to compare it with a number",
    ),
    (
        "'date/datetime/time' to a string",
        "every column is text: compare DATE(column) or STRPTIME(column, '%Y-%m-%d') with a date",
    ),
)


def _taught(exc: BaseException) -> str:
    """polars' message at load (no data in it: the columns are empty), its first sentence
    only, with what to write instead when the mistake is a known one."""
    text = _one_line(exc).split(" This error occurred", 1)[0]
    for found, hint in _HINTS:
        if found in text:
            return f"{hint} ({text})"
    return text


def _shown(exc: BaseException) -> str:
    """polars' message when it has the one shape known to quote values (a cast's
    ``values: [...]``), those stripped; any other (a regex built from a value, ...) is
    not shown: it may quote the file's data."""
    text = _one_line(exc)
    if _VALUES.search(text) or _VALUES_TO_END.search(text):
        return _without_values(text)
    return (
        f"polars could not evaluate it on the file's data ({type(exc).__name__}; its "
        "message is not shown: it may quote the file's values)"
    )


def _without_values(text: str) -> str:
    """polars' message without the values it quotes (``for 1 out of 4 values: ["..."]``):
    a list's personal data. What follows them (the expression) stays when it is found."""
    text = _VALUES.sub(r"\1 (not shown)", text)
    return _VALUES_TO_END.sub(r"\1 (not shown)", text)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
