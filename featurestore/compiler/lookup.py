"""One PostgreSQL statement that looks up many entities in several views' online tables.

    lookup([LookupView(user_daily_stats, ("featurestore_online", "user_daily_stats__ab12"), selected)],
           [("user_id", "bigint")])
    →  SELECT r.user_id, v0.txn_count, …
       FROM unnest(%(k0)s::bigint[]) WITH ORDINALITY AS r(user_id, __fs_i)
       LEFT JOIN featurestore_online.user_daily_stats__ab12 AS v0
         ON v0.user_id = r.user_id AND v0.__fs_ts + <lag> <= %(at)s AND %(at)s - <ttl> <= v0.__fs_ts
       ORDER BY r.__fs_i

One row per requested entity, in request order: its keys, then the features. They are NULL
for unknown entities, for a row not yet known at `%(at)s` or older than the TTL then, and
before `available_since` (docs/semantics.md). Keys and the instant are parameters; table and
column names come from the registry of views.

A window view's table holds its events (`compiler.windows.event_rows`) of the longest window;
each requested entity aggregates its events known in [at - W, at) in a lateral subquery:

       LEFT JOIN LATERAL (SELECT count(e.__fs_a0) FILTER (WHERE e.__fs_known >= %(at)s - <3h>) AS cards_added_3h, …
                          FROM featurestore_online.cards_added__cd34 AS e
                          WHERE e.user_id = r.user_id AND e.__fs_known >= %(at)s - <7d> AND e.__fs_known < %(at)s
                         ) AS v1 ON TRUE
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from featurestore.compiler.names import DUE, KNOWN, TS
from featurestore.compiler.times import instant, interval, known_at, value_used
from featurestore.compiler.windows import Aggregate, aggregates
from featurestore.definitions.selection import Selected
from featurestore.definitions.spec import FeatureView

__all__ = ["LookupView", "lookup", "lookup_by_key"]


@dataclass(frozen=True)
class LookupView:
    """A view's online table and the features taken from it; `types`: a window view's column (by
    name) → PostgreSQL type of its values."""

    view: FeatureView
    table: tuple[str, str]
    selected: tuple[Selected, ...]
    types: tuple[tuple[str, str], ...] = ()


def lookup(views: list[LookupView], keys: list[tuple[str, str]]) -> exp.Select:
    """The lookup; parameters `k0`, `k1`, … are arrays of each key column in `keys`, `at` the instant."""
    arrays = ", ".join(f"CAST(%(k{i})s AS {kind}[])" for i, (_, kind) in enumerate(keys))
    names = ", ".join(_quoted(name) for name, _ in keys)
    query = sqlglot.parse_one(f'SELECT 1 FROM unnest({arrays}) WITH ORDINALITY AS "r"({names}, "__fs_i") '
                              'ORDER BY "r"."__fs_i"', read="postgres")
    assert isinstance(query, exp.Select)
    query.set("expressions", [exp.column(name, "r", quoted=True) for name, _ in keys])
    at = exp.cast(exp.Placeholder(this="at"), "TIMESTAMPTZ")
    for number, item in enumerate(views):
        alias = f"v{number}"
        if item.view.windows:
            query = query.join(exp.Lateral(this=exp.Subquery(this=_windowed(item, at)),
                                           alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))),
                               join_type="LEFT", on=exp.true())
            query = query.select(*_window_values(item, alias, at))
            continue
        table = exp.table_(item.table[1], db=item.table[0], quoted=True, alias=exp.to_identifier(alias, quoted=True))
        query = query.join(table, join_type="LEFT", on=exp.and_(*[
            exp.EQ(this=exp.column(k, alias, quoted=True), expression=exp.column(k, "r", quoted=True))
            for k in item.view.entity], *_known(item.view, alias, at)))
        for selected in item.selected:
            query = query.select(exp.alias_(exp.column(selected.feature.column, alias, quoted=True), selected.output,
                                            quoted=True))
    return query


def lookup_by_key(item: LookupView, key_type: str) -> exp.Select:
    """One view with one key column: its rows for the keys in `%(k0)s`, in no order (the caller
    orders them and fills in unknown keys). About the cost of a bare `WHERE key = ANY(…)`; the
    general `lookup` costs more than that in PostgreSQL (~70 µs for one entity, measured).

        SELECT user_id, txn_count, … FROM featurestore_online.user_daily_stats__ab12 AS v0
        WHERE v0.user_id = ANY(%(k0)s::bigint[]) AND v0.__fs_ts + <lag> <= %(at)s AND …
    """
    (key,) = item.view.entity
    alias = "v0"
    at = exp.cast(exp.Placeholder(this="at"), "TIMESTAMPTZ")
    table = exp.table_(item.table[1], db=item.table[0], quoted=True, alias=exp.to_identifier(alias, quoted=True))
    wanted = exp.EQ(this=exp.column(key, alias, quoted=True), expression=exp.Any(this=exp.Paren(
        this=exp.cast(exp.Placeholder(this="k0"), exp.DataType.build(f"{key_type}[]", dialect="postgres")))))
    return exp.select(exp.column(key, alias, quoted=True), *[
        exp.alias_(exp.column(s.feature.column, alias, quoted=True), s.output, quoted=True) for s in item.selected]) \
        .from_(table).where(exp.and_(wanted, *_known(item.view, alias, at)))


def _windowed(item: LookupView, at: exp.Expr) -> exp.Select:
    """The lateral subquery of a window view: one row of its selected aggregates for the entity `r`."""
    view = item.view
    by_column = {a.column: a for a in aggregates(view)}
    types = dict(item.types)
    longest = max(s.feature.window.length for s in item.selected if s.feature.window is not None)
    known = exp.column(KNOWN, "e", quoted=True)
    start = exp.column(DUE if view.known_at else KNOWN, "e", quoted=True)  # arrival times: windows start on ts + lag
    columns = []
    for selected in item.selected:
        window = selected.feature.window
        assert window is not None
        within = None if window.length == longest else exp.GTE(this=start.copy(), expression=exp.Sub(
            this=at.copy(), expression=interval(window.length)))
        value = _postgres_aggregate(by_column[selected.feature.column], types[selected.feature.column] == "text",
                                    within)
        columns.append(exp.alias_(value, selected.output, quoted=True))
    table = exp.table_(item.table[1], db=item.table[0], quoted=True, alias=exp.to_identifier("e", quoted=True))
    return exp.select(*columns).from_(table).where(exp.and_(
        *[exp.EQ(this=exp.column(k, "e", quoted=True), expression=exp.column(k, "r", quoted=True))
          for k in view.entity],
        exp.GTE(this=known.copy(), expression=exp.Sub(this=at.copy(), expression=interval(longest))),
        *([exp.GTE(this=start.copy(), expression=exp.Sub(this=at.copy(), expression=interval(longest)))]
          if view.known_at else []),
        exp.LT(this=known.copy(), expression=at.copy())))


def _window_values(item: LookupView, alias: str, at: exp.Expr) -> list[exp.Expr]:
    """The window view's features: NULL for a NULL key and before `available_since`, in the view's types."""
    view = item.view
    types = dict(item.types)
    valid = exp.and_(*[exp.Not(this=exp.Is(this=exp.column(k, "r", quoted=True), expression=exp.Null()))
                       for k in view.entity])
    if view.available_since is not None:
        valid = exp.and_(valid, exp.GTE(this=at.copy(), expression=instant(view.available_since)))
    return [exp.alias_(exp.case().when(valid.copy(), exp.cast(
        exp.column(s.output, alias, quoted=True),
        exp.DataType.build(types[s.feature.column], dialect="postgres"))), s.output, quoted=True)
        for s in item.selected]


def _postgres_aggregate(aggregate: Aggregate, text: bool, within: exp.Expr | None) -> exp.Expr:
    """The aggregate over the stored events (those `within` a shorter window), as PostgreSQL computes
    what DuckDB does offline.

    Text (`text`: the value is) compares byte-wise ("C"), as DuckDB does; the latest value is the
    first of the values ordered by (order, value) descending, NULLs left out; an average divides the
    sum by the count.
    """
    value = exp.column(aggregate.value, "e", quoted=True)

    def over(function: exp.Expr, *conditions: exp.Expr) -> exp.Expr:
        where = [c for c in (*conditions, within) if c is not None]
        return exp.Filter(this=function, expression=exp.Where(this=exp.and_(*[c.copy() for c in where]))) \
            if where else function

    if aggregate.kind == "count":
        return over(exp.Count(this=value))
    if aggregate.kind == "count_distinct":
        return over(exp.Count(this=exp.Distinct(expressions=[value])))
    if aggregate.kind == "sum":
        return over(exp.Sum(this=value))
    if aggregate.kind == "avg":
        return exp.Div(this=exp.cast(over(exp.Sum(this=value)), "DOUBLE"), expression=exp.Nullif(
            this=over(exp.Count(this=value.copy())), expression=exp.Literal.number(0)))
    if aggregate.kind in ("min", "max"):
        return over((exp.Min if aggregate.kind == "min" else exp.Max)(this=_bytewise(value) if text else value))
    assert aggregate.order is not None
    order = exp.column(aggregate.order, "e", quoted=True)
    ordered = exp.Order(this=value.copy(), expressions=[
        exp.Ordered(this=order, desc=True),
        exp.Ordered(this=_bytewise(value.copy()) if text else value.copy(), desc=True)])
    latest = over(exp.ArrayAgg(this=ordered), exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())),
                  exp.Not(this=exp.Is(this=order.copy(), expression=exp.Null())))
    return exp.Bracket(this=exp.Paren(this=latest), expressions=[exp.Literal.number(1)], offset=1)  # 1-based


def _bytewise(value: exp.Expr) -> exp.Expr:
    return exp.Collate(this=value, expression=exp.to_identifier("C", quoted=True))


def _known(view: FeatureView, alias: str, at: exp.Expr) -> list[exp.Expr]:
    """The stored row counts at `at`: known by then, and its values used then (docs/semantics.md)."""
    ts = exp.column(TS, alias, quoted=True)
    used = value_used(view, ts, at)
    known = exp.column(KNOWN, alias, quoted=True) if view.known_at else known_at(view, ts)  # stored with arrivals
    return [exp.LTE(this=known, expression=at.copy()), *([used] if used is not None else [])]


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="postgres")
