"""The queries behind feature statistics, as sqlglot trees over a relation of feature values.

    counts("v", "amount")              SELECT count(*), count(*) - count(amount), approx_count_distinct(amount) FROM v
    moments("v", "amount", (0.5,))     min, max, avg, stddev_samp and quantiles of the finite values, and how many
                                       are NaN or ±infinity
    bins("v", "amount", 10)            per equal-width bin (from parameters $1 low, $2 width) its count
    time_range("v", "ts")              the earliest and latest value, as text
    top_values("v", "merchant", 10)    the most frequent values, as text, with their counts
    keys_at_end(view, events, since)   each entity with events once, at just after the last event is known

Each takes the relation and column names and returns a query for DuckDB (governance.stats runs them).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlglot import exp

from featurestore.compiler.names import KNOWN, TS
from featurestore.compiler.times import instant, interval
from featurestore.definitions.spec import FeatureView

__all__ = ["AT_END", "bins", "counts", "keys_at_end", "moments", "time_range", "top_values"]

AT_END = "_stats_at"  # the spine time column of `keys_at_end`


def counts(relation: str, column: str) -> exp.Select:
    """Rows, NULLs and (approximately) distinct values of `column`."""
    value = _column(column)
    return exp.select(exp.Count(this=exp.Star()),
                      exp.Sub(this=exp.Count(this=exp.Star()), expression=exp.Count(this=value.copy())),
                      exp.func("approx_count_distinct", value.copy())).from_(_table(relation))


def finite(column: str) -> exp.Expr:
    """`column` as DOUBLE where it is finite, else NULL: NaN and ±infinity are counted apart."""
    raw = exp.cast(_column(column), "DOUBLE")
    return exp.case().when(exp.func("isfinite", raw), raw.copy())


def moments(relation: str, column: str, quantiles: tuple[float, ...]) -> exp.Select:
    """min, max, avg, stddev_samp and each quantile of the finite values, then the count of the others."""
    number = finite(column)
    columns: list[exp.Expr] = [exp.Min(this=number.copy()), exp.Max(this=number.copy()), exp.Avg(this=number.copy()),
                               exp.func("stddev_samp", number.copy())]
    columns += [exp.func("quantile_cont", number.copy(), exp.Literal.number(q)) for q in quantiles]
    raw = exp.cast(_column(column), "DOUBLE")
    columns.append(exp.Sub(this=exp.Count(this=raw), expression=exp.Count(this=number.copy())))
    return exp.select(*columns).from_(_table(relation))


def bins(relation: str, column: str, count: int) -> exp.Select:
    """Per bin number (0 to count - 1, the last one closed) the count of finite values in it; the
    bins start at parameter $1 and are parameter $2 wide."""
    number = finite(column)
    position = exp.cast(exp.Floor(this=exp.Div(this=exp.Paren(this=exp.Sub(this=number.copy(),
                                                                            expression=exp.Placeholder(this="1"))),
                                               expression=exp.Placeholder(this="2"))), "BIGINT")
    bin_number = exp.alias_(exp.func("least", position, exp.Literal.number(count - 1)), "b")
    return exp.select(bin_number, exp.Count(this=exp.Star())).from_(_table(relation)) \
        .where(exp.Not(this=exp.Is(this=number.copy(), expression=exp.Null()))).group_by(exp.column("b"))


def time_range(relation: str, column: str) -> exp.Select:
    """The earliest and latest value of `column`, as text."""
    value = _column(column)
    return exp.select(exp.cast(exp.Min(this=value), "VARCHAR"), exp.cast(exp.Max(this=value.copy()), "VARCHAR")) \
        .from_(_table(relation))


def top_values(relation: str, column: str, limit: int) -> exp.Select:
    """The `limit` most frequent non-NULL values of `column` as text, with their counts (ties by value)."""
    text = exp.cast(_column(column), "VARCHAR")
    return exp.select(text, exp.Count(this=exp.Star())).from_(_table(relation)) \
        .where(exp.Not(this=exp.Is(this=_column(column), expression=exp.Null()))) \
        .group_by(exp.Literal.number(1)) \
        .order_by(exp.Ordered(this=exp.Literal.number(2), desc=True), exp.Ordered(this=exp.Literal.number(1))) \
        .limit(limit)


def keys_at_end(view: FeatureView, events: exp.Select, since: datetime | None) -> exp.Select:
    """Each entity with events (since `since`, by event time) once, at 1 µs after the last event of the
    view becomes known (`AT_END`): a spine for the features of every entity at the end of the data.

        WITH e AS (<events>) SELECT DISTINCT keys, (SELECT max(__fs_known) FROM e) + 1 µs AS _stats_at
        FROM e WHERE keys IS NOT NULL [AND __fs_ts >= since]
    """
    keys = [_column(k) for k in view.entity]
    last = exp.Subquery(this=exp.select(exp.Max(this=exp.column(KNOWN, quoted=True))).from_("e"))
    at = exp.alias_(exp.Add(this=last, expression=interval(timedelta(microseconds=1))), AT_END, quoted=True)
    condition = exp.and_(*[exp.Not(this=exp.Is(this=k.copy(), expression=exp.Null())) for k in keys])
    if since is not None:
        condition = exp.and_(condition, exp.GTE(this=exp.column(TS, quoted=True), expression=instant(since)))
    query = exp.select(*keys, at).distinct().from_("e").where(condition)
    return query.with_("e", as_=events)


def _column(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _table(name: str) -> exp.Table:
    return exp.to_table(name, quoted=True)
