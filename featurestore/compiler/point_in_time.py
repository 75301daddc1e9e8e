"""The point-in-time join of a spine with snapshot views: one statement, DuckDB ASOF joins (or portable joins).

    point_in_time(Spine("__fs_spine", cols, "ts", "__fs_row"), [ViewRows(user_daily_stats, rows, selected)])
    →  WITH "__fs_spine" AS (SELECT s.*, <ts as UTC µs> AS "__fs_t" FROM "__fs_spine" AS s),
            "__fs_v0" AS (SELECT keys, <ts> AS "__fs_ts", <ts> + lag AS "__fs_known", features
                          FROM (<view rows>) WHERE <ts> NOT NULL AND NOT <invalid>)
       SELECT s.<spine columns>, CASE WHEN <ttl> AND <since> THEN v0.<feature> END AS <name>, …
       FROM "__fs_spine" AS s ASOF LEFT JOIN "__fs_v0" AS v0 ON s.key = v0.key AND s.__fs_t >= v0.__fs_known
       ORDER BY s.__fs_row

Exactly docs/semantics.md: the row with the greatest `ts` such that `ts + lag <= t`,
ties broken by `created`, NULL beyond TTL or before `available_since`. Engines without ASOF
joins (Spark, warehouses) get the "last" join: the spine and the rows in one stream per key in
known-at order, where a running max finds each spine row's latest row, which an equi-join fetches.
Without `created`, a tie is a data error: the query also returns the keys and time of each row it
took (`taken_columns`), and `ties` finds a taken row that is not alone. Times are compared as UTC
microseconds; a finer spine time is floored and a finer row time is ceiled, so rounding never lets
a row be seen before it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlglot import exp

from featurestore.compiler.buckets import bucket_of, one_bucket, two_buckets
from featurestore.compiler.names import BUCKET, HIT, KNOWN, ROW, SIDE, TS, UNTIL, T
from featurestore.compiler.times import instant, interval, known_at, utc_micros, value_used
from featurestore.definitions.selection import Selected
from featurestore.definitions.spec import Column, FeatureView

__all__ = ["ROW", "Spine", "ViewRows", "duplicate_fix", "duplicate_message", "duplicates", "point_in_time",
           "prepare_rows", "taken_columns", "taken_sources", "tie_winner", "ties", "validity_intervals"]


@dataclass(frozen=True)
class Spine:
    """The spine as a relation: its columns (in output order), time column and order column."""

    relation: str
    columns: tuple[Column, ...]
    timestamp: str


@dataclass(frozen=True)
class ViewRows:
    """A snapshot view's rows and the features taken from it.

    `rows` yields the view's own columns, or, when `prepared`, the output of `prepare_rows`
    (of `validity_intervals` for the "intervals" join). `join` is how a spine row finds its row:
    "asof" (ASOF join), "intervals" (hash join on validity intervals), "ranked" (hash join on
    the spine, latest within the TTL; only for a view with a TTL) or "last" (a running max over
    spine and rows in time order, then an equi-join: portable, O(n log n) whatever the keys).

    `bucket` (DuckDB only; "ranked" and "intervals") adds a time bucket of that width to the hash
    join's keys, so a spine row meets only the rows of its keys near its time, not all of them:
    with few keys of many rows each, a hash join on the keys alone compares every spine row of a
    key with every row of that key. "ranked" puts rows in the bucket of their time and a spine row
    looks in its bucket and the one before (the width is at least the TTL); "intervals" puts each
    interval in every bucket it overlaps, up to the spine's last time.
    """

    view: FeatureView
    rows: exp.Query
    selected: tuple[Selected, ...]
    prepared: bool = False
    join: Literal["asof", "intervals", "ranked", "last"] = "asof"
    bucket: timedelta | None = None


def point_in_time(spine: Spine, views: list[Any], *, passthrough: bool = True, dialect: str = "duckdb") -> exp.Select:
    """One SELECT: every spine row, in spine order, with the selected features as of its time.

    `views` are snapshot views' `ViewRows` and window views' `WindowRows` (compiler.windows).
    With `passthrough=False` only the features are selected (the caller holds the spine's columns).
    Views that may hold ties also yield `taken_columns` (see `ties`). `dialect` is the engine that
    will run it, for the few aggregates engines spell differently (see `windows.aggregate_call`).
    """
    spine_type = {c.name: c.type for c in spine.columns}[spine.timestamp]
    ctes = [_cte("__fs_spine_t", exp.select(exp.Star(), exp.alias_(
        utc_micros(exp.column(spine.timestamp, quoted=True), spine_type, "floor"), T, quoted=True))
        .from_(exp.to_table(spine.relation, quoted=True)))]
    kept = [c for c in spine.columns if c.name != ROW] if passthrough else []
    query = exp.select(*[exp.column(c.name, "s", quoted=True) for c in kept]) \
        .from_(exp.to_table("__fs_spine_t", quoted=True).as_("s", quoted=True))
    for number, item in enumerate(views):
        if not isinstance(item, ViewRows):  # a window view: joined on the spine row
            parts, joins, columns = item.join_parts(number, "__fs_spine_t", dialect)
            ctes += parts
            for table, on in joins:
                query = query.join(table, on=on, join_type="LEFT")
            query = query.select(*columns)
            continue
        alias = f"v{number}"
        rows = item.rows if item.prepared else prepare_rows(
            item.view, item.rows, list(dict.fromkeys(s.feature.column for s in item.selected)))
        table = exp.to_table(f"__fs_{alias}", quoted=True).as_(alias, quoted=True)
        condition = exp.and_(*[exp.EQ(this=exp.column(key, "s", quoted=True),
                                     expression=exp.column(key, alias, quoted=True)) for key in item.view.entity],
                             exp.GTE(this=exp.column(T, "s", quoted=True),
                                     expression=exp.column(KNOWN, alias, quoted=True)))
        if item.join in ("ranked", "last"):
            ctes.append(_cte(f"__fs_{alias}_rows", rows))
            if item.join == "ranked":
                ctes.append(_cte(f"__fs_{alias}", _latest_within_ttl(item.view, f"__fs_{alias}_rows", alias, condition,
                                                                     item.bucket)))
            else:
                ctes.append(_cte(f"__fs_{alias}_hit", _latest_known(item.view, f"__fs_{alias}_rows")))
                ctes.append(_cte(f"__fs_{alias}",
                                 _fetch_latest(item.view, f"__fs_{alias}_hit", f"__fs_{alias}_rows", alias)))
            query = query.join(table, on=exp.EQ(this=exp.column(ROW, "s", quoted=True),
                                                expression=exp.column(ROW, alias, quoted=True)), join_type="LEFT")
        elif item.join == "intervals":
            # Each row is the latest known from its own known-at time until the next row's.
            within = exp.and_(condition, exp.LT(this=exp.column(T, "s", quoted=True),
                                                expression=exp.column(UNTIL, alias, quoted=True)))
            if item.bucket is not None:
                rows = _interval_buckets(item.view, rows, item.bucket)
                within = exp.and_(exp.EQ(this=bucket_of(exp.column(T, "s", quoted=True), item.bucket),
                                         expression=exp.column(BUCKET, alias, quoted=True)), within)
            ctes.append(_cte(f"__fs_{alias}", rows))
            query = query.join(table, on=within, join_type="LEFT")
        else:
            ctes.append(_cte(f"__fs_{alias}", rows))
            query = query.join(table, on=condition, join_type="ASOF LEFT")
        guard = _guard(item.view, alias)
        for selected in item.selected:
            value: exp.Expr = exp.column(selected.feature.column, alias, quoted=True)
            if guard is not None:
                value = exp.case().when(guard, value)
            query = query.select(exp.alias_(value, selected.output, quoted=True))
        for column, name in zip(taken_sources(item.view), taken_columns(item, number)):
            value = exp.column(column, "s" if column == T else alias, quoted=True)
            query = query.select(exp.alias_(value if guard is None else exp.case().when(guard.copy(), value), name,
                                            quoted=True))
    query = query.order_by(exp.column(ROW, "s", quoted=True))
    query.set("with_", exp.With(expressions=ctes))
    return query


def taken_columns(item: Any, number: int) -> list[str]:
    """The hidden columns holding the keys and time of the row taken from view `number` (NULL where none
    or where its value is not used), and with arrival times the spine row's time, when the view's rows
    may hold ties; else none."""
    if not isinstance(item, ViewRows) or item.view.created or item.join == "intervals":
        return []  # a tie-break, or cached rows, which are free of ties
    return [f"__fs_taken{number}_{column}" for column in taken_sources(item.view)]


def taken_sources(view: FeatureView) -> tuple[str, ...]:
    """What `taken_columns` hold, in order: the taken row's keys and time, and with arrival times
    (where a tied row may not have arrived yet) the spine row's time."""
    return (*view.entity, TS, *([T] if view.known_at else []))


def ties(item: Any, number: int, result: str, *, repeated: bool) -> exp.Select | None:
    """One (keys…, time) that a frame took from view `number` although several rows have it, if any.

    `result` names the relation that `point_in_time` returned, `repeated` says whether it has
    more rows than the spine: a "ranked" join keeps every tied row, so without repeats it has
    no ties and needs no check, and so does "last". Only ties whose value a frame uses are errors there;
    `validate --data` and the cache report all of them.
    """
    names = taken_columns(item, number)
    # With arrival times, tied rows arrive apart: the later-known one is taken, unrepeated.
    if not names or (item.join in ("ranked", "last") and not repeated and not item.view.known_at):
        return None
    rows = item.rows if item.prepared else prepare_rows(item.view, item.rows, [])
    time = exp.column(names[len(item.view.entity)], quoted=True)  # the taken row's; NULL where none was taken
    taken = exp.select(*[exp.alias_(exp.column(name, quoted=True), column, quoted=True)
                         for name, column in zip(names, taken_sources(item.view))]).distinct() \
        .from_(exp.to_table(result, quoted=True)).where(exp.Not(this=exp.Is(this=time, expression=exp.Null())))
    return duplicates(item.view, rows, among=taken)


def _latest_within_ttl(view: FeatureView, rows: str, alias: str, condition: exp.Expr,
                       bucket: timedelta | None = None) -> exp.Select:
    """Per spine row, the latest known row whose value is used (within the TTL, from `available_since`):
    a hash join built on the spine.

    Equivalent to the ASOF plan when the view has a TTL (a latest row older than it is NULL either
    way), and needs memory for the spine rather than for all of the view's rows. With `bucket` (at
    least the TTL), a row sits in the bucket of its time and a spine row at t looks in the buckets
    of t and of t - bucket, which hold every row stamped in [t - TTL, t].
    """
    assert view.ttl is not None
    used = _guard(view, alias)
    assert used is not None
    spine: exp.Expr = exp.to_table("__fs_spine_t", quoted=True).as_("s", quoted=True)
    side: exp.Expr = exp.to_table(rows, quoted=True).as_(alias, quoted=True)
    if bucket is not None:
        assert bucket >= view.ttl
        spine = _aliased(two_buckets("__fs_spine_t", T, bucket), "s")
        side = _aliased(one_bucket(rows, TS, bucket), alias)
        condition = exp.and_(exp.EQ(this=exp.column(BUCKET, "s", quoted=True),
                                    expression=exp.column(BUCKET, alias, quoted=True)), condition)
    # rank(), not row_number(): rows tied on time all stay, so a tie shows as a spine row repeated (`ties`).
    # Of rows tied on time, the one known later is later (arrival times: `prepare_rows` keeps a row only
    # if it was the latest when it arrived).
    latest = exp.Window(this=exp.Rank(), partition_by=[exp.column(ROW, "s", quoted=True)], order=exp.Order(
        expressions=[exp.Ordered(this=exp.column(TS, alias, quoted=True), desc=True),
                     exp.Ordered(this=exp.column(KNOWN, alias, quoted=True), desc=True)]))
    return exp.select(exp.column(ROW, "s", quoted=True), exp.Column(this=exp.Star(), table=exp.to_identifier(
        alias, quoted=True))).from_(spine).join(side, on=exp.and_(condition.copy(), used), join_type="INNER") \
        .qualify(exp.EQ(this=latest, expression=exp.Literal.number(1)))


def _interval_buckets(view: FeatureView, intervals: exp.Query, width: timedelta) -> exp.Select:
    """Validity intervals, each in every bucket of `width` it overlaps while its value can be used:
    until the next row is known, the TTL expires, or the spine's last time (whichever is first).

        SELECT p.*, unnest(range(epoch_us(__fs_known) // W, epoch_us(least(__fs_until, <ends>) - 1 µs) // W + 1))
        FROM (<intervals>) AS p
    An interval that ends before it starts (known after the spine's last time) is in no bucket.
    """
    last = exp.Subquery(this=exp.select(exp.Max(this=exp.column(T, quoted=True))).from_(
        exp.to_table("__fs_spine_t", quoted=True)))
    ends: list[exp.Expr] = [exp.Add(this=last, expression=interval(timedelta(microseconds=1)))]
    if view.ttl is not None:  # a row's value is used while t - ts <= TTL
        ends.append(exp.Add(this=exp.column(TS, "p", quoted=True),
                            expression=interval(view.ttl + timedelta(microseconds=1))))
    end = exp.func("least", exp.column(UNTIL, "p", quoted=True), *ends)
    first = bucket_of(exp.column(KNOWN, "p", quoted=True), width)
    final = bucket_of(exp.Sub(this=end, expression=interval(timedelta(microseconds=1))), width)  # `end` is exclusive
    buckets = exp.Explode(this=exp.GenerateSeries(start=first,
                                                  end=exp.Add(this=final, expression=exp.Literal.number(1)),
                                                  is_end_exclusive=True))
    return exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("p", quoted=True)),
                      exp.alias_(buckets, BUCKET, quoted=True)).from_(_aliased(intervals, "p"))


def _aliased(query: exp.Query, alias: str) -> exp.Subquery:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))


def _latest_known(view: FeatureView, rows: str) -> exp.Select:
    """Per spine row with keys and a time, when the latest row of its keys known by then became known (or NULL).

        SELECT __fs_row, keys, __fs_t, __fs_hit FROM (
          SELECT *, max(__fs_known) OVER (PARTITION BY keys ORDER BY __fs_time, __fs_side
                                          ROWS UNBOUNDED PRECEDING) AS __fs_hit
          FROM (SELECT keys, __fs_known AS __fs_time, 0 AS __fs_side, NULL AS __fs_row, __fs_known FROM rows
                UNION ALL SELECT keys, __fs_t, 1, __fs_row, NULL FROM spine WHERE keys AND __fs_t NOT NULL))
        WHERE __fs_side = 1

    A row known exactly at t sorts before the spine row (side 0 < 1), so it is seen. Known-at
    order is time order (the lag is constant; with arrival times, `prepare_rows` keeps only rows
    that were the latest when they arrived), so the row known last is the latest row known.
    """
    keys = [exp.column(k, quoted=True) for k in view.entity]
    null = exp.Null()
    happened = exp.select(*[k.copy() for k in keys], exp.alias_(exp.column(KNOWN, quoted=True), T, quoted=True),
                          exp.alias_(exp.Literal.number(0), SIDE, quoted=True), exp.alias_(null, ROW, quoted=True),
                          exp.column(KNOWN, quoted=True)).from_(exp.to_table(rows, quoted=True))
    asked = exp.select(*[k.copy() for k in keys], exp.column(T, quoted=True), exp.Literal.number(1),
                       exp.column(ROW, quoted=True), exp.Null()).from_(exp.to_table("__fs_spine_t", quoted=True)).where(
        exp.and_(*[exp.Not(this=exp.Is(this=k.copy(), expression=exp.Null())) for k in keys],
                 exp.Not(this=exp.Is(this=exp.column(T, quoted=True), expression=exp.Null()))))
    stream = exp.union(happened, asked, distinct=False)
    latest = exp.Window(this=exp.Max(this=exp.column(KNOWN, quoted=True)), partition_by=[k.copy() for k in keys],
                        order=exp.Order(expressions=[exp.Ordered(this=exp.column(T, quoted=True)),
                                                     exp.Ordered(this=exp.column(SIDE, quoted=True))]),
                        spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"))
    ranked = exp.select(exp.Star(), exp.alias_(latest, HIT, quoted=True)).from_(
        exp.Subquery(this=stream, alias=exp.TableAlias(this=exp.to_identifier("u", quoted=True))))
    return exp.select(exp.column(ROW, quoted=True), *[k.copy() for k in keys], exp.column(T, quoted=True),
                      exp.column(HIT, quoted=True)).from_(exp.Subquery(
        this=ranked, alias=exp.TableAlias(this=exp.to_identifier("r", quoted=True)))).where(
        exp.EQ(this=exp.column(SIDE, quoted=True), expression=exp.Literal.number(1)))


def _fetch_latest(view: FeatureView, hits: str, rows: str, alias: str) -> exp.Select:
    """The row each spine row found (`_latest_known`), where its value is used: an equi-join on keys
    and known-at time. Rows tied on (keys, time) all join, so a tie shows as a spine row repeated (`ties`)."""
    on = exp.and_(*[exp.EQ(this=exp.column(k, "s", quoted=True), expression=exp.column(k, alias, quoted=True))
                    for k in view.entity],
                  exp.EQ(this=exp.column(KNOWN, alias, quoted=True), expression=exp.column(HIT, "s", quoted=True)))
    used = _guard(view, alias)
    return exp.select(exp.column(ROW, "s", quoted=True), exp.Column(this=exp.Star(), table=exp.to_identifier(
        alias, quoted=True))).from_(exp.to_table(hits, quoted=True).as_("s", quoted=True)) \
        .join(exp.to_table(rows, quoted=True).as_(alias, quoted=True),
              on=on if used is None else exp.and_(on, used), join_type="INNER")


def prepare_rows(view: FeatureView, source: exp.Query, columns: list[str]) -> exp.Select:
    """The view's rows ready to join: keys, UTC time, known-at time and `columns`.

    Rows without a time or inside an invalid period are gone; with `created`, only the winner
    of each (keys, time) tie is left. With arrival times (`known_at`), only the rows that were the
    latest of their keys when they became known (`_latest_on_arrival`): known-at order is then time
    order, as it is without arrival times, so every join below finds the latest row known by `t`
    as the row known last by `t`.
    """
    types = {c.name: c.type for c in view.columns}
    ts = utc_micros(exp.column(view.timestamp, "r", quoted=True), types[view.timestamp], "ceil")
    keys = [exp.column(k, "r", quoted=True) for k in view.entity]
    arrival = utc_micros(exp.column(view.known_at, "r", quoted=True), types[view.known_at], "ceil") \
        if view.known_at else None
    known = known_at(view, ts, arrival)
    rows = exp.select(*keys, exp.alias_(ts, TS, quoted=True), exp.alias_(known, KNOWN, quoted=True),
                      *[exp.column(c, "r", quoted=True) for c in columns]) \
        .from_(exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier("r", quoted=True)))) \
        .where(exp.Not(this=exp.Is(this=ts.copy(), expression=exp.Null())))
    for period in view.invalid:
        rows = rows.where(exp.Not(this=exp.Between(this=ts.copy(), low=instant(period.start),
                                                   high=instant(period.end))))
    if view.known_at:
        return _latest_on_arrival(view, rows, ts, known, columns)
    if view.created:
        rows = rows.qualify(tie_winner(view, keys, ts, exp.column(view.created, "r", quoted=True)))
    return rows


def _latest_on_arrival(view: FeatureView, rows: exp.Select, ts: exp.Expr, known: exp.Expr,
                       columns: list[str]) -> exp.Select:
    """Of `rows`, those no row of the same keys known no later has a later time than: a greater time,
    or (with `created`) the same time and a greater `created` (NULL loses to any value).

        SELECT keys, __fs_ts, __fs_known, columns FROM (
          SELECT …, max(<ts>) OVER (PARTITION BY keys ORDER BY <known> RANGE UNBOUNDED PRECEDING) AS __fs_latest,
                 <created> AS __fs_created,
                 max(<created>) OVER (PARTITION BY keys, <ts> ORDER BY <known> RANGE …) AS __fs_best FROM …) AS p
        WHERE __fs_ts = __fs_latest AND coalesce(__fs_created = __fs_best, __fs_best IS NULL)

    A row left out is never the latest known by any `t` (the later one is known by then too); a row
    kept is, from its known-at time until the next kept row's. (A subquery, not QUALIFY: engines
    without QUALIFY get it rewritten in a way that loses the row's own time.)
    """
    keys = [exp.column(k, "r", quoted=True) for k in view.entity]

    def latest_so_far(value: exp.Expr, partition: list[exp.Expr]) -> exp.Window:
        return exp.Window(this=exp.Max(this=value.copy()), partition_by=partition, order=exp.Order(
            expressions=[exp.Ordered(this=known.copy())]), spec=exp.WindowSpec(
            kind="RANGE", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"))

    def p(name: str) -> exp.Column:
        return exp.column(name, "p", quoted=True)

    inner = rows.select(exp.alias_(latest_so_far(ts, [k.copy() for k in keys]), "__fs_latest", quoted=True))
    kept: exp.Expr = exp.EQ(this=p(TS), expression=p("__fs_latest"))
    if view.created:
        created = exp.column(view.created, "r", quoted=True)
        inner = inner.select(exp.alias_(created, "__fs_created", quoted=True), exp.alias_(
            latest_so_far(created, [*[k.copy() for k in keys], ts.copy()]), "__fs_best", quoted=True))
        kept = exp.and_(kept, exp.Coalesce(this=exp.EQ(this=p("__fs_created"), expression=p("__fs_best")),
                                           expressions=[exp.Is(this=p("__fs_best"), expression=exp.Null())]))
    return exp.select(*[p(name) for name in (*view.entity, TS, KNOWN, *columns)]).from_(
        exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("p", quoted=True)))).where(kept)


def tie_winner(view: FeatureView, keys: list[exp.Expr], ts: exp.Expr, created: exp.Expr) -> exp.Expr:
    """The QUALIFY condition that keeps, of rows tied on (keys, time), the one with the greatest `created`."""
    rank = exp.Window(this=exp.RowNumber(), partition_by=[k.copy() for k in keys] + [ts.copy()], order=exp.Order(
        expressions=[exp.Ordered(this=created, desc=True, nulls_first=False)]))
    return exp.EQ(this=rank, expression=exp.Literal.number(1))


def validity_intervals(view: FeatureView, prepared: exp.Query) -> exp.Select:
    """Prepared rows, each with the instant the next row of its keys becomes known (or +infinity).

    A spine row at `t` then finds its row by hash join: keys equal and known <= t < until.
        SELECT *, coalesce(lead(__fs_known) OVER (PARTITION BY keys ORDER BY __fs_known), 'infinity') AS __fs_until
    """
    keys = [exp.column(k, quoted=True) for k in view.entity]
    following = exp.Window(this=exp.Lead(this=exp.column(KNOWN, quoted=True)), partition_by=keys,
                           order=exp.Order(expressions=[exp.Ordered(this=exp.column(KNOWN, quoted=True)),
                                                        exp.Ordered(this=exp.column(TS, quoted=True))]))
    until = exp.Coalesce(this=following, expressions=[exp.cast(exp.Literal.string("infinity"), "TIMESTAMPTZ")])
    return exp.select(exp.Star(), exp.alias_(until, UNTIL, quoted=True)).from_(
        exp.Subquery(this=prepared, alias=exp.TableAlias(this=exp.to_identifier("p", quoted=True))))


def duplicates(view: FeatureView, prepared: exp.Query, among: exp.Query | None = None) -> exp.Select:
    """One (keys…, time) that occurs more than once among prepared rows (and in `among`), if any.

    Without a `created` tie-break such rows make "the latest row" ambiguous: a data error.
        SELECT user_id, __fs_ts FROM (<prepared>) [SEMI JOIN (<among>) USING (user_id, __fs_ts)]
        GROUP BY ALL HAVING count(*) > 1 LIMIT 1
    With arrival times, `among` also holds the spine time `__fs_t` at which a row was taken, and
    only rows known by then count: a tied row that arrives later makes no tie before it arrives.
    """
    columns = [exp.column(k, "p", quoted=True) for k in view.entity] + [exp.column(TS, "p", quoted=True)]
    types = {c.name: c.type.upper() for c in view.columns}
    # Times leave as text: a Python driver may lack what it needs to build zoned datetimes.
    shown = [exp.cast(c.copy(), "VARCHAR") if c.name == TS or "TIME" in types.get(c.name, "") or "DATE" in
             types.get(c.name, "") else c.copy() for c in columns]
    query = exp.select(*shown).from_(exp.Subquery(this=prepared, alias=exp.TableAlias(
        this=exp.to_identifier("p", quoted=True))))
    groups = [c.copy() for c in columns]
    if among is not None:
        on = exp.and_(*[exp.EQ(this=c.copy(), expression=exp.column(c.name, "a", quoted=True)) for c in columns])
        if view.known_at:
            on = exp.and_(on, exp.LTE(this=exp.column(KNOWN, "p", quoted=True),
                                      expression=exp.column(T, "a", quoted=True)))
            groups.append(exp.column(T, "a", quoted=True))
        query = query.join(exp.Subquery(this=among, alias=exp.TableAlias(this=exp.to_identifier("a", quoted=True))),
                           on=on, join_type="INNER" if view.known_at else "SEMI")
    return query.group_by(*groups) \
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1))).limit(1)


def duplicate_message(view: FeatureView, row: tuple) -> str:
    """What is wrong: the view, and the first (keys, time) that occurs twice."""
    where = ", ".join(f"{k}={v!r}" for k, v in zip(view.entity, row))
    return f"view '{view.name}' has several rows with {where} and {view.timestamp}={row[-1]}"


def duplicate_fix(view: FeatureView) -> str:
    return (f"declare a tie-break column with `-- created: <column>` in {view.path.name}, or make the rows "
            f"unique on ({', '.join(view.entity)}, {view.timestamp})")


def _guard(view: FeatureView, alias: str) -> exp.Expr | None:
    return value_used(view, exp.column(TS, alias, quoted=True), exp.column(T, "s", quoted=True))


def _cte(name: str, query: exp.Query) -> exp.CTE:
    return exp.CTE(this=query, alias=exp.TableAlias(this=exp.to_identifier(name, quoted=True)))
