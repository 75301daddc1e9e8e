"""Window aggregate views: each spine row's aggregates over the events in its windows, exactly.

docs/semantics.md: for a spine row (k, t) and a window W, an aggregate runs over the events e with
e.keys = k and t - W <= e.ts + lag < t. A view's events come first (`event_rows`):

    SELECT user_id, count(*) AS cards_added, max(amount) FILTER (WHERE ok) AS top FROM card_events GROUP BY user_id
    →  SELECT user_id, <ts as UTC µs> AS __fs_ts, <ts + lag> AS __fs_known, 1 AS __fs_a0,
              CASE WHEN ok THEN amount END AS __fs_a1
       FROM card_events WHERE <ts> IS NOT NULL AND NOT <invalid>

then each window is answered by one of two methods (`WindowRows.methods`), chosen per window:

- "join": a range join of the spine with the events, grouped by spine row. Cheap while few
  events fall in one window of one key; quadratic on a hot key with a long window.
      SELECT s.__fs_row, count(e.__fs_a0) FILTER (WHERE e.__fs_known >= s.__fs_t - W) …
      FROM spine s JOIN events e ON keys AND s.__fs_t - W_max <= e.__fs_known AND e.__fs_known < s.__fs_t
      GROUP BY s.__fs_row
- "frames": window functions over the union of spine and events, per key in time order; a
  spine row sits 1 µs before its time t, with the frame RANGE BETWEEN W - 1 µs PRECEDING AND
  CURRENT ROW: [t - W, t), the strict upper bound. O((spine + events) · log) whatever the keys' shape.

Counts and sums of integers may instead come from running totals (`WindowRows.totals`, DuckDB only):
per key and known-at time, the total of every event known by then; a window's value is the total
known just before t less the total known just before t - W, each found by an ASOF join. Integer
arithmetic makes the difference exact, and two ASOF joins cost less than a framed aggregate on a
key with many events. (Sums and averages of floating-point numbers keep the other methods: a
difference of running totals is not exactly the window's sum.)

Aggregates: count(*), count(x), count(DISTINCT x), sum, avg, min, max, and the latest value
(`arg_max(x, o)`, `last(x ORDER BY o)`, and `last(x)`: x of the latest event): x of the event with the greatest
non-NULL o among those whose x is not NULL, the greatest x among tied events. FILTER clauses and
expressions inside aggregates are evaluated per event, in `event_rows`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlglot import exp

from featurestore.compiler.buckets import one_bucket, two_buckets
from featurestore.compiler.names import BUCKET, DUE, KNOWN, TIME, TS, T
from featurestore.compiler.point_in_time import ROW
from featurestore.compiler.times import instant, interval, known_at, utc_micros
from featurestore.definitions.selection import Selected
from featurestore.definitions.spec import FeatureView

__all__ = ["Aggregate", "WindowRows", "aggregate_call", "aggregates", "by_totals", "event_rows", "output_column"]

Kind = Literal["count", "count_distinct", "sum", "avg", "min", "max", "latest"]
Method = Literal["join", "frames", "totals"]
_MICROSECOND = timedelta(microseconds=1)
# What a sum of integers gives in DuckDB: running totals of these are exact.
_INTEGER_SUMS = re.compile(r"^(HUGEINT|INT128|UHUGEINT|UINT128|BIGINT|INT64|INTEGER|INT32|SMALLINT|TINYINT|UBIGINT)$")


@dataclass(frozen=True)
class Aggregate:
    """One aggregate output column of a window view, over the event rows' columns `value` (and `order`)."""

    column: str
    kind: Kind
    value: str
    order: str | None = None


def aggregates(view: FeatureView) -> list[Aggregate]:
    """The view's aggregates, in output order, named after the event rows' input columns."""
    return [aggregate for aggregate, _, _ in _parse(view, view.qualified or view.query, exp.column(TS))]


def event_rows(view: FeatureView, rendered: exp.Query) -> exp.Select:
    """The view's events: keys, UTC time, known-at time and each aggregate's inputs (see module doc).

    `rendered` is the view's query with its sources resolved (`render_query`).
    """
    assert isinstance(rendered, exp.Select)
    ts = utc_micros(exp.column(view.timestamp, quoted=True), view.event_time_type or "TIMESTAMPTZ", "ceil")
    keys = {p.alias_or_name: p.unalias() for p in rendered.expressions}
    columns: list[exp.Expr] = [exp.alias_(keys[k].copy(), k, quoted=True) for k in view.entity]
    arrival = utc_micros(exp.column(view.known_at, quoted=True), view.arrival_type or "TIMESTAMPTZ", "ceil") \
        if view.known_at else None
    columns += [exp.alias_(ts, TS, quoted=True), exp.alias_(known_at(view, ts, arrival), KNOWN, quoted=True)]
    if arrival is not None:  # windows start on time plus lag, and end on arrival
        columns.append(exp.alias_(known_at(view, ts), DUE, quoted=True))
    for aggregate, value, order in _parse(view, rendered, ts):
        if aggregate.value != KNOWN:
            columns.append(exp.alias_(value, aggregate.value, quoted=True))
        if order is not None and aggregate.order != TS:
            columns.append(exp.alias_(order, aggregate.order, quoted=True))
    events = rendered.copy()
    events.set("group", None)
    events.set("expressions", columns)
    condition: exp.Expr = exp.Not(this=exp.Is(this=ts.copy(), expression=exp.Null()))
    for period in view.invalid:
        condition = exp.and_(condition, exp.Not(this=exp.Between(this=ts.copy(), low=instant(period.start),
                                                                 high=instant(period.end))))
    return events.where(condition)


def _parse(view: FeatureView, query: exp.Query, ts: exp.Expr) -> list[tuple[Aggregate, exp.Expr, exp.Expr | None]]:
    """Each aggregate with the per-event expressions of its input and ordering (FILTER applied);
    `ts` is the event time, which `last(x)` orders by."""
    assert isinstance(query, exp.Select)
    found = []
    for projection in query.expressions:
        name = projection.alias_or_name
        if name in view.entity:
            continue
        inner = projection.unalias()
        condition = None
        if isinstance(inner, exp.Filter):
            condition = inner.expression.this if isinstance(inner.expression, exp.Where) else inner.expression
            inner = inner.this
        number = len(found)
        order: exp.Expr | None = None
        kind: Kind
        if isinstance(inner, exp.Count):
            argument = inner.this
            if isinstance(argument, exp.Distinct):
                kind, value = "count_distinct", argument.expressions[0]
            elif argument is None or isinstance(argument, exp.Star):
                kind, value = "count", exp.Literal.number(1)
            else:
                kind, value = "count", argument
        elif isinstance(inner, exp.ArgMax):
            kind, value, order = "latest", inner.this, inner.expression
        elif isinstance(inner, exp.Last):  # last(x) is x of the latest event; last(x ORDER BY o), of the greatest o
            kind, value = "latest", inner.this
            if isinstance(value, exp.Order):
                value, order = value.this, value.expressions[0].this
        else:
            kind = {exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}[type(inner)]  # type: ignore[assignment]
            value = inner.this
        value = _when(condition, value)
        if kind == "count" and isinstance(value, exp.Literal):  # count(*): every event has a known-at time
            found.append((Aggregate(name, kind, KNOWN), value, None))
        elif kind == "latest":
            order_name = f"__fs_o{number}" if order is not None or condition is not None else TS
            order = _when(condition, order if order is not None else ts)
            found.append((Aggregate(name, kind, f"__fs_a{number}", order_name), value, order))
        else:
            found.append((Aggregate(name, kind, f"__fs_a{number}"), value, None))
    return found


def _when(condition: exp.Expr | None, value: exp.Expr) -> exp.Expr:
    if condition is None:
        return value.copy()
    return exp.case().when(condition.copy(), value.copy())


def output_column(aggregate: Aggregate, window_label: str) -> str:
    return f"{aggregate.column}_{window_label}"


def by_totals(view: FeatureView, aggregate: Aggregate) -> bool:
    """Whether running totals give the aggregate exactly: a count, or a sum whose type is an integer."""
    if aggregate.kind == "count":
        return True
    types = {c.name: c.type for c in view.columns}
    return aggregate.kind == "sum" and bool(_INTEGER_SUMS.match(types.get(aggregate.column, "").upper()))


@dataclass(frozen=True)
class WindowRows:
    """A window view's events (`event_rows`) and the features taken from it, each window by its method."""

    view: FeatureView
    rows: exp.Query
    selected: tuple[Selected, ...]
    methods: dict[str, Method] = field(default_factory=dict)  # window label → method; "frames" where absent
    # DuckDB only: the output columns (`output_column`) computed from running totals, whatever their window's method.
    totals: frozenset[str] = frozenset()
    # DuckDB only: the "join" method's hash join also matches time buckets of this width (at least its
    # longest window), so a spine row meets its key's events near its time, not all of them.
    bucket: timedelta | None = None

    def join_parts(self, number: int, spine: str, dialect: str = "duckdb") -> tuple[
            list[exp.CTE], list[tuple[exp.Expr, exp.Expr]], list[exp.Expr]]:
        """What `point_in_time` adds for this view: CTEs, (table, condition) to LEFT JOIN on the spine
        row, and the feature columns to select (NULL where docs/semantics.md says so, counts 0 in empty windows).
        On DuckDB each feature has its view column's type; other engines give their own types."""
        view = self.view
        by_column = {a.column: a for a in aggregates(view)}
        events = f"__fs_v{number}_events"
        ctes = [_cte(events, self.rows)]
        joins: list[tuple[exp.Expr, exp.Expr]] = []
        selects: list[exp.Expr] = []
        wanted = list(dict.fromkeys((s.feature.column, s.feature.window) for s in self.selected))
        groups: dict[Method, list[tuple[Aggregate, timedelta, str]]] = {}
        for column, window in wanted:
            assert window is not None
            output = output_column(by_column[column], window.label)
            method = self.methods.get(window.label, "frames")
            if view.known_at:  # two bounds on two times: only the range join has them both
                method = "join"
            elif output in self.totals:
                method = "totals"
            elif method == "totals":  # a window all of whose features were running totals before this one was asked
                method = "frames"
            groups.setdefault(method, []).append((by_column[column], window.length, output))
        where: dict[str, str] = {}  # output column → alias of the CTE that computes it
        for method, items in groups.items():
            alias = f"v{number}{method[0]}"
            name = f"__fs_{alias}"
            if method == "totals":
                ctes.append(_cte(f"{name}_running", _running(view, events, items)))
                body = _totals(view, spine, f"{name}_running", items)
            elif method == "join":
                body = _joined(view, spine, events, items, dialect, self.bucket)
            else:
                body = _framed(view, spine, events, items, dialect)
            ctes.append(_cte(name, body))
            joins.append((exp.to_table(name, quoted=True).as_(alias, quoted=True),
                          exp.EQ(this=exp.column(ROW, "s", quoted=True),
                                 expression=exp.column(ROW, alias, quoted=True))))
            where.update((output, alias) for _, _, output in items)
        types = {c.name: c.type for c in view.columns}
        valid = exp.and_(*[exp.Not(this=exp.Is(this=exp.column(k, "s", quoted=True), expression=exp.Null()))
                           for k in view.entity],
                         exp.Not(this=exp.Is(this=exp.column(T, "s", quoted=True), expression=exp.Null())))
        if view.available_since is not None:
            valid = exp.and_(valid, exp.GTE(this=exp.column(T, "s", quoted=True),
                                            expression=instant(view.available_since)))
        for selected in self.selected:
            aggregate = by_column[selected.feature.column]
            assert selected.feature.window is not None
            output = output_column(aggregate, selected.feature.window.label)
            value: exp.Expr = exp.column(output, where[output], quoted=True)
            if aggregate.kind in ("count", "count_distinct"):
                value = exp.Coalesce(this=value, expressions=[exp.Literal.number(0)])
            if dialect == "duckdb":
                value = exp.cast(value, exp.DataType.build(types[aggregate.column], dialect="duckdb"))
            selects.append(exp.alias_(exp.case().when(valid.copy(), value), selected.output, quoted=True))
        return ctes, joins, selects


def aggregate_call(aggregate: Aggregate, alias: str | None = None, *, dialect: str = "duckdb",
                   where: exp.Expr | None = None, over: exp.Window | None = None) -> exp.Expr:
    """The aggregate over the event rows' columns (qualified by `alias`), for events where `where`
    holds, over the window `over` (a Window without `this`) if given, as `dialect` computes it.

    The latest value is x of the greatest (o, x) with neither NULL: DuckDB's arg_max over a struct,
    elsewhere the max of the struct itself. Spark has no DISTINCT in a window: the size of the set.
    """
    value = exp.column(aggregate.value, alias, quoted=True)
    finish: Callable[[exp.Expr], exp.Expr] | None = None
    call: exp.Expr
    if aggregate.kind == "count":
        call = exp.Count(this=value)
    elif aggregate.kind == "count_distinct" and over is not None and dialect == "spark":
        call = exp.ArrayUniqueAgg(this=value)
        finish = lambda inner: exp.ArraySize(this=inner)  # noqa: E731
    elif aggregate.kind == "count_distinct":
        call = exp.Count(this=exp.Distinct(expressions=[value]))
    elif aggregate.kind == "latest":
        assert aggregate.order is not None
        order = exp.column(aggregate.order, alias, quoted=True)
        # Ties on the order resolve to the greatest value; a NULL order never wins.
        known = exp.Not(this=exp.Is(this=order, expression=exp.Null()))
        if dialect != "duckdb":  # DuckDB's arg_max skips a NULL value itself
            known = exp.and_(known, exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())))
        ranked = exp.case().when(known, exp.Struct(expressions=[
            exp.PropertyEQ(this=exp.to_identifier("o"), expression=order.copy()),
            exp.PropertyEQ(this=exp.to_identifier("v"), expression=value.copy())]))
        if dialect == "duckdb":
            call = exp.ArgMax(this=value, expression=ranked)
        else:
            call = exp.Max(this=ranked)
            finish = lambda inner: exp.Dot(this=inner, expression=exp.to_identifier("v"))  # noqa: E731
    else:
        call = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max}[aggregate.kind](this=value)
    if where is not None:
        call = exp.Filter(this=call, expression=exp.Where(this=where))
    if over is not None:
        over = over.copy()
        over.set("this", call)
        call = exp.Paren(this=over) if finish is not None else over
    return finish(call) if finish is not None else call


def _joined(view: FeatureView, spine: str, events: str, items: list[tuple[Aggregate, timedelta, str]],
            dialect: str, bucket: timedelta | None = None) -> exp.Select:
    """The "join" method. With `bucket` (DuckDB), an event sits in the bucket of its known-at time and
    a spine row at t looks in the buckets of t and t - bucket, which hold every event of [t - W, t).

    With arrival times an event counts where t - W <= ts + lag (`__fs_due`) and known-at < t;
    as ts + lag <= known-at, its known-at time is in [t - W, t) too, so the buckets still hold it.
    """
    longest = max(length for _, length, _ in items)
    t = exp.column(T, "s", quoted=True)
    known = exp.column(KNOWN, "e", quoted=True)
    start = exp.column(DUE if view.known_at else KNOWN, "e", quoted=True)
    on = exp.and_(*[exp.EQ(this=exp.column(k, "s", quoted=True), expression=exp.column(k, "e", quoted=True))
                    for k in view.entity],
                  exp.GTE(this=start.copy(), expression=exp.Sub(this=t.copy(), expression=interval(longest))),
                  exp.LT(this=known.copy(), expression=t.copy()))
    asked: exp.Expr = exp.to_table(spine, quoted=True).as_("s", quoted=True)
    happened: exp.Expr = exp.to_table(events, quoted=True).as_("e", quoted=True)
    if bucket is not None:
        assert bucket >= longest
        asked = _aliased(two_buckets(spine, T, bucket), "s")
        happened = _aliased(one_bucket(events, KNOWN, bucket), "e")
        on = exp.and_(exp.EQ(this=exp.column(BUCKET, "s", quoted=True),
                             expression=exp.column(BUCKET, "e", quoted=True)), on)
    columns: list[exp.Expr] = [exp.column(ROW, "s", quoted=True)]
    for aggregate, length, output in items:
        where = None if length == longest else exp.GTE(this=start.copy(), expression=exp.Sub(
            this=t.copy(), expression=interval(length)))
        columns.append(exp.alias_(aggregate_call(aggregate, "e", dialect=dialect, where=where), output, quoted=True))
    return exp.select(*columns).from_(asked).join(happened, on=on, join_type="INNER") \
        .group_by(exp.column(ROW, "s", quoted=True))


def _aliased(query: exp.Query, alias: str) -> exp.Subquery:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))


def _framed(view: FeatureView, spine: str, events: str, items: list[tuple[Aggregate, timedelta, str]],
            dialect: str) -> exp.Select:
    keys = [exp.column(k, quoted=True) for k in view.entity]
    inputs = list(dict.fromkeys(c for a, _, _ in items for c in (a.value, a.order) if c is not None))
    happened = exp.select(*[k.copy() for k in keys], exp.alias_(exp.column(KNOWN, quoted=True), TIME, quoted=True),
                          *[exp.column(c, quoted=True) for c in inputs], exp.alias_(exp.Null(), ROW, quoted=True)) \
        .from_(exp.to_table(events, quoted=True))
    # A spine row at t sits at t - 1 µs, and its frame ends at the current row: [t - W, t) exactly,
    # at half the cost of a frame ending 1 µs before the current row.
    just_before = exp.Sub(this=exp.column(T, quoted=True), expression=interval(_MICROSECOND))
    asked = exp.select(*[k.copy() for k in keys], exp.alias_(just_before, TIME, quoted=True),
                       *[exp.Null() for _ in inputs], exp.column(ROW, quoted=True)) \
        .from_(exp.to_table(spine, quoted=True)).where(
        exp.and_(*[exp.Not(this=exp.Is(this=k.copy(), expression=exp.Null())) for k in keys],
                 exp.Not(this=exp.Is(this=exp.column(T, quoted=True), expression=exp.Null()))))
    union = exp.union(happened, asked, distinct=False)
    columns: list[exp.Expr] = [exp.column(ROW, quoted=True)]
    for aggregate, length, output in items:
        spec = exp.WindowSpec(kind="RANGE", start=interval(length - _MICROSECOND), start_side="PRECEDING",
                              end="CURRENT ROW")
        over = exp.Window(partition_by=[k.copy() for k in keys],
                          order=exp.Order(expressions=[exp.Ordered(this=exp.column(TIME, quoted=True))]), spec=spec)
        columns.append(exp.alias_(aggregate_call(aggregate, dialect=dialect, over=over), output, quoted=True))
    return exp.select(*columns).from_(exp.Subquery(this=union, alias=exp.TableAlias(
        this=exp.to_identifier("u", quoted=True)))).qualify(
        exp.Not(this=exp.Is(this=exp.column(ROW, quoted=True), expression=exp.Null())))


def _running(view: FeatureView, events: str, items: list[tuple[Aggregate, timedelta, str]]) -> exp.Select:
    """Per key and known-at time, the running count (and for sums the running sum) of each input of
    `items` over the events known by then:
        SELECT keys, __fs_known, sum(__fs_n1) OVER w AS __fs_n1, sum(__fs_s1) OVER w AS __fs_s1, …
        FROM (SELECT keys, __fs_known, count(__fs_a1) AS __fs_n1, sum(__fs_a1) AS __fs_s1 … GROUP BY keys, __fs_known)
        WINDOW w AS (PARTITION BY keys ORDER BY __fs_known ROWS UNBOUNDED PRECEDING)"""
    keys = [exp.column(k, quoted=True) for k in view.entity]
    known = exp.column(KNOWN, quoted=True)
    per_time: list[exp.Expr] = []
    running: list[exp.Expr] = []
    over = exp.Window(partition_by=[k.copy() for k in keys],
                      order=exp.Order(expressions=[exp.Ordered(this=known.copy())]),
                      spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"))
    for value, kind in dict.fromkeys((a.value, a.kind) for a, _, _ in items):
        for name, call in ((_count_of(value), exp.Count), *([(_sum_of(value), exp.Sum)] if kind == "sum" else [])):
            if name in {p.alias for p in per_time}:
                continue
            per_time.append(exp.alias_(call(this=exp.column(value, quoted=True)), name, quoted=True))
            window = over.copy()
            window.set("this", exp.Sum(this=exp.column(name, quoted=True)))
            running.append(exp.alias_(window, name, quoted=True))
    grouped = exp.select(*[k.copy() for k in keys], known.copy(), *per_time).from_(exp.to_table(events, quoted=True)) \
        .group_by(*[k.copy() for k in keys], known.copy())
    return exp.select(*[k.copy() for k in keys], known.copy(), *running).from_(
        exp.Subquery(this=grouped, alias=exp.TableAlias(this=exp.to_identifier("g", quoted=True))))


def _totals(view: FeatureView, spine: str, running: str, items: list[tuple[Aggregate, timedelta, str]]) -> exp.Select:
    """The "totals" method: per spine row, the running totals known just before t ("r0") and just before
    each t - W ("r1", …), by ASOF joins; a window's count is the difference, a sum is NULL where the
    window counts no value (as sum() is). Events are known strictly before t and at or after t - W."""
    t = exp.column(T, "s", quoted=True)
    lengths = sorted({length for _, length, _ in items})
    query = exp.select(exp.column(ROW, "s", quoted=True)).from_(exp.to_table(spine, quoted=True).as_("s", quoted=True))
    for number, before in enumerate([t.copy(), *[exp.Sub(this=t.copy(), expression=interval(w)) for w in lengths]]):
        alias = f"r{number}"
        on = exp.and_(*[exp.EQ(this=exp.column(k, "s", quoted=True), expression=exp.column(k, alias, quoted=True))
                        for k in view.entity],
                      exp.GT(this=before, expression=exp.column(KNOWN, alias, quoted=True)))
        query = query.join(exp.to_table(running, quoted=True).as_(alias, quoted=True), on=on, join_type="ASOF LEFT")

    def within(column: str, length: timedelta) -> exp.Expr:
        def total(alias: str) -> exp.Expr:
            return exp.Coalesce(this=exp.column(column, alias, quoted=True), expressions=[exp.Literal.number(0)])
        return exp.Sub(this=total("r0"), expression=total(f"r{lengths.index(length) + 1}"))

    for aggregate, length, output in items:
        value = within(_count_of(aggregate.value), length)
        if aggregate.kind == "sum":
            value = exp.case().when(exp.GT(this=value, expression=exp.Literal.number(0)),
                                    within(_sum_of(aggregate.value), length))
        query = query.select(exp.alias_(value, output, quoted=True))
    return query


def _count_of(value: str) -> str:
    return f"__fs_n_{value}"


def _sum_of(value: str) -> str:
    return f"__fs_s_{value}"


def _cte(name: str, query: exp.Query) -> exp.CTE:
    return exp.CTE(this=query, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True)))
