"""Structural checks of a view's SQL that need no schema: leakage and shape.

    check_query(view)  →  [Problem(…, "now() reads the clock: …"), …]

A feature definition must compute the same value whenever it is run for the
same past instant, so anything that reads the clock, randomness, or rows later
than the current one is refused here, before any data is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from featurestore.definitions.loader import Definition, column_of, find_word, line_of
from featurestore.definitions.spec import FeatureView
from featurestore.errors import Problem

__all__ = ["SUPPORTED_AGGREGATES", "check_query"]

_CLOCK = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.CurrentDatetime,
          exp.CurrentTimestampLTZ, exp.Localtimestamp, exp.Localtime)
_RANDOM = (exp.Rand, exp.Randn, exp.Uuid)
_CLOCK_NAMES = {"now", "get_current_timestamp", "get_current_time", "transaction_timestamp", "current_localtimestamp",
                "current_localtime", "statement_timestamp", "clock_timestamp", "epoch_ms_now"}
_RANDOM_NAMES = {"random", "setseed", "uuidv4", "uuidv7", "gen_random_uuid", "uuid"}
_TABLE_FUNCTIONS_ALLOWED = (exp.GenerateSeries, exp.Unnest)
SUPPORTED_AGGREGATES = "count(*), count(x), count(DISTINCT x), sum, avg, min, max, arg_max(x, ts), last(x)"
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.ArgMax, exp.Last)


def check_query(view: FeatureView | Definition) -> list[Problem]:
    """Every construct in the view's SQL that can read the future or breaks its kind's shape.

    Given a Definition whose header did not validate, only the SQL's leaks are checked.
    """
    if isinstance(view, Definition):
        if view.query is None:
            return []
        timestamp = view.annotations["timestamp"].value if "timestamp" in view.annotations else None
        return _future_reads(_Located(view.path, view.text, view.query), timestamp)
    problems = _future_reads(_Located(view.path, view.text, view.query), view.timestamp)
    if view.windows:
        problems += _window_shape(view)
    else:
        problems += _snapshot_shape(view)
    return problems


@dataclass(frozen=True)
class _Located:
    path: Path
    text: str
    query: exp.Query


def _problem(view: FeatureView | _Located, node: exp.Expr, message: str, hint: str, code: str) -> Problem:
    if not any("line" in n.meta for n in node.walk()):
        # Keyword functions (CURRENT_TIMESTAMP) carry no position: find the word in the text.
        line, column = find_word(view.text, node.sql(dialect="duckdb").split("(")[0], line_of(view.query))
        return Problem(view.path, line, message, hint, code=code, column=column)
    return Problem(view.path, line_of(node, line_of(view.query)), message, hint, code=code,
                   column=column_of(node))


_CLOCK_STRINGS = {"now", "today", "tomorrow", "yesterday", "current", "infinity"} - {"infinity"}
_PARTITION_SIZE = (exp.PercentRank, exp.CumeDist, exp.Ntile)
_PARTITION_SIZE_NAMES = {"percent_rank", "cume_dist", "ntile"}


def _future_reads(view: _Located, timestamp: str | None) -> list[Problem]:
    found: list[Problem] = []

    def report(node: exp.Expr, message: str, hint: str, code: str) -> None:
        found.append(_problem(view, node, message, hint, code))

    clock_hint = "compute from the data's own timestamps; the store applies `as of t` for you"
    for node in view.query.walk():
        name = node.name.lower() if isinstance(node, exp.Anonymous) else ""
        if isinstance(node, _CLOCK) or name in _CLOCK_NAMES:
            report(node, f"{node.sql(dialect='duckdb')} reads the clock, so past values would change", clock_hint,
                   "reads-clock")
        elif name == "age" and len(node.expressions) == 1:
            report(node, "age() with one argument measures from today, so past values would change",
                   "subtract two of the data's timestamps instead: age(later_ts, earlier_ts)", "reads-clock")
        elif isinstance(node, (exp.Cast, exp.TryCast)) and isinstance(node.this, exp.Literal) \
                and node.this.is_string and node.this.name.strip().lower() in _CLOCK_STRINGS:
            report(node, f"'{node.this.name}' as a time reads the clock, so past values would change", clock_hint,
                   "reads-clock")
        elif isinstance(node, _RANDOM) or name in _RANDOM_NAMES:
            report(node, f"{node.sql(dialect='duckdb')} is random, so a feature would not be reproducible",
                   "derive the value from the data (e.g. hash(key)) instead", "random")
        elif isinstance(node, exp.TableSample):
            report(node, "sampling is random, so a feature would not be reproducible",
                   "filter on a hash of the key instead, e.g. WHERE hash(user_id) % 10 = 0", "random")
        elif isinstance(node, exp.Lead):
            report(node, "lead() reads a later row: the future leaks into the feature",
                   "use lag() or a window frame that ends at CURRENT ROW", "reads-future")
        elif isinstance(node, exp.Lag) and not _positive(node.args.get("offset")):
            report(node, "lag() needs a positive whole-number offset; anything else may read a later row",
                   "write lag(x) or lag(x, 2)", "reads-future")
        elif isinstance(node, exp.WindowSpec) and "FOLLOWING" in {
                str(node.args.get("start_side") or "").upper(), str(node.args.get("end_side") or "").upper()}:
            report(node.parent or node, "a window frame with FOLLOWING reads later rows",
                   "end the frame at CURRENT ROW: ROWS BETWEEN n PRECEDING AND CURRENT ROW", "reads-future")
        elif isinstance(node, exp.Window) and not node.args.get("alias") and not _partitioned_by_time(node, timestamp):
            _window_leaks(node, report)
        elif isinstance(node, exp.Table) and not isinstance(node.this, (exp.Identifier, *_TABLE_FUNCTIONS_ALLOWED)):
            report(node, f"{node.this.sql(dialect='duckdb')} reads data that is not a declared source",
                   "declare the file under [sources] in featurestore.toml and read it by name", "undeclared-source")
    return found


def _window_leaks(node: exp.Window, report: Any) -> None:
    """An OVER clause may only look at rows at or before the current one in time."""
    function = node.this.this if isinstance(node.this, (exp.IgnoreNulls, exp.RespectNulls)) else node.this
    name = function.name.lower() if isinstance(function, exp.Anonymous) else ""
    fix = "ORDER BY the time column, ascending, so the frame ends at the current row"
    if isinstance(function, _PARTITION_SIZE) or name in _PARTITION_SIZE_NAMES:
        report(node, f"{function.sql(dialect='duckdb')} depends on the whole partition, later rows included",
               "use row_number() or count(*) over a frame that ends at the current row", "reads-future")
        return
    order = node.args.get("order")
    if order is None or not order.expressions:
        if isinstance(function, (exp.RowNumber, exp.Lag)) or name in ("rank", "dense_rank"):
            report(node, f"{function.sql(dialect='duckdb')} OVER without ORDER BY numbers rows in no set order",
                   fix, "reads-future")
        else:
            report(node, "a window without ORDER BY spans the whole partition, later rows included", fix,
                   "reads-future")
        return
    if order.expressions[0].args.get("desc"):
        report(node, "a window ordered DESC puts later rows first, so its frame reads the future",
               "order ascending by time; to keep the latest row per key, the store already does that", "reads-future")


def _partitioned_by_time(node: exp.Window, timestamp: str | None) -> bool:
    """All rows of a partition that includes the timestamp share one instant: no row is later."""
    partition = node.args.get("partition_by") or []
    return timestamp is not None and any(isinstance(p, exp.Column) and p.name == timestamp for p in partition)


def _positive(offset: exp.Expr | None) -> bool:
    if offset is None:
        return True
    return isinstance(offset, exp.Literal) and offset.is_int and int(offset.this) > 0


def _window_shape(view: FeatureView) -> list[Problem]:
    query = view.query
    keys = ", ".join(view.entity)
    shape = f"write `SELECT {keys}, <aggregates> FROM <source> GROUP BY {keys}`"
    if not isinstance(query, exp.Select):
        return [_problem(view, query, "a view with windows must be one SELECT … GROUP BY the entity keys", shape,
                         "window-shape")]
    group = query.args.get("group")
    grouped = _grouping_names(query)
    if not group or grouped is None or set(grouped) != set(view.entity) or len(grouped) != len(view.entity):
        return [Problem(view.path, view.line("windows"),
                        f"windows needs a GROUP BY over exactly the entity keys ({keys})", shape, code="window-shape")]
    problems = []
    for clause in ("having", "qualify", "order", "limit", "distinct"):
        if query.args.get(clause):
            problems.append(_problem(view, query.args[clause], f"{clause.upper()} is not supported in a window view",
                                     shape, "window-shape"))
    for projection in query.expressions:
        inner = projection.unalias()
        if isinstance(inner, exp.Column) and inner.name in view.entity:
            continue
        aggregate = inner.this if isinstance(inner, exp.Filter) else inner
        if not isinstance(aggregate, _AGGREGATES) or _unsupported_form(aggregate) or any(
                isinstance(n, exp.AggFunc) for n in aggregate.iter_expressions() for n in n.walk()):
            problems.append(_problem(view, projection,
                                     f"'{projection.sql(dialect='duckdb')}' is not a supported window aggregate",
                                     f"each output column is an entity key or one of: {SUPPORTED_AGGREGATES} "
                                     "(FILTER and expressions inside allowed)", "window-aggregate"))
        elif not isinstance(projection, exp.Alias):
            problems.append(_problem(view, projection, f"'{projection.sql(dialect='duckdb')}' has no name",
                                     f"name it: {projection.sql(dialect='duckdb')} AS my_feature", "window-aggregate"))
    if any(isinstance(n, exp.Window) for n in query.find_all(exp.Window)):
        node = next(query.find_all(exp.Window))
        problems.append(_problem(view, node, "window functions (OVER) are not supported in a window view",
                                 "compute them in a snapshot view and aggregate its source here", "window-shape"))
    return problems


def _unsupported_form(aggregate: exp.Expr) -> bool:
    """arg_max with a count (a list), DISTINCT other than count(DISTINCT x), ORDER BY other than
    last(x ORDER BY o) by one expression ascending."""
    argument = aggregate.this
    if (isinstance(argument, exp.Distinct) and not isinstance(aggregate, exp.Count)) or \
            (isinstance(argument, exp.Order) and not isinstance(aggregate, exp.Last)):
        return True
    if isinstance(aggregate, exp.ArgMax):
        return aggregate.args.get("count") is not None
    if isinstance(aggregate, exp.Count) and isinstance(argument, exp.Distinct):
        return len(argument.expressions) != 1
    if isinstance(aggregate, exp.Last) and isinstance(argument, exp.Order):
        return len(argument.expressions) != 1 or bool(argument.expressions[0].args.get("desc"))
    return False


def _snapshot_shape(view: FeatureView) -> list[Problem]:
    query = view.query
    if not isinstance(query, exp.Select):
        return []
    projection = next((p for p in query.expressions if p.alias_or_name == view.timestamp), None)
    early = _moved_earlier(view, projection) if projection is not None else []
    aggregated = bool(query.args.get("group")) or any(_is_aggregate(p) for p in query.expressions)
    if not aggregated:
        return early
    if projection is not None and not _is_aggregate(projection) and _is_grouped(query, projection):
        return early
    return [_problem(view, query.args.get("group") or query,
                     "this view aggregates over all of history per entity, so each row would see the future",
                     f"add `-- windows: 1d, 7d` to aggregate over windows before each instant, or GROUP BY a time "
                     f"bucket that the view outputs as its timestamp '{view.timestamp}' "
                     f"(e.g. date_trunc('day', ts) + INTERVAL 1 DAY AS {view.timestamp})", "aggregate-without-windows")]


def _moved_earlier(view: FeatureView, projection: exp.Expr) -> list[Problem]:
    """A timestamp truncated or shifted back makes a row known before its data existed."""
    inner = projection.unalias()
    truncated = isinstance(inner, (exp.DateTrunc, exp.TimestampTrunc, exp.DateBin)) or (
        isinstance(inner, exp.Anonymous) and inner.name.lower() in ("time_bucket", "date_trunc")) or (
        isinstance(inner, exp.Cast) and inner.to.this == exp.DataType.Type.DATE)
    if truncated:
        return [_problem(view, projection, f"'{view.timestamp}' is rounded down to the start of its period, so a "
                         "row would be known before its data existed (later events included)",
                         f"stamp it at the period's end: {inner.sql(dialect='duckdb')} + INTERVAL 1 DAY "
                         f"(by the period's length) AS {view.timestamp}", "bucket-start")]
    if isinstance(inner, exp.Sub) and isinstance(inner.expression, exp.Interval):
        return [_problem(view, projection, f"'{view.timestamp}' is shifted back in time, so a row would be known "
                         "before its data existed", f"use `-- available_after:` for delays; never move "
                         f"{view.timestamp} earlier", "bucket-start")]
    return []


def _grouping_names(query: exp.Select) -> list[str] | None:
    """The grouped columns' names (positions and ALL resolved), or None if one is not a plain column."""
    group = query.args.get("group")
    if group is None:
        return None
    if group.args.get("all"):
        expressions = [p.unalias() for p in query.expressions if not _is_aggregate(p)]
    else:
        expressions = []
        for expression in group.expressions:
            if isinstance(expression, exp.Literal) and expression.is_int \
                    and 0 < int(expression.this) <= len(query.expressions):
                expression = query.expressions[int(expression.this) - 1].unalias()
            expressions.append(expression)
    names = [e.name for e in expressions if isinstance(e, exp.Column)]
    return names if len(names) == len(expressions) else None


def _is_aggregate(node: exp.Expr) -> bool:
    """Whether `node` aggregates at its own level (not inside OVER, nor inside a subquery)."""
    home = node if isinstance(node, exp.Select) else node.find_ancestor(exp.Select)
    for candidate in node.walk():
        if not isinstance(candidate, exp.AggFunc) or candidate.find_ancestor(exp.Window):
            continue
        if candidate.find_ancestor(exp.Select) is home or home is None:
            return True
    return False


def _is_grouped(query: exp.Select, projection: exp.Expr) -> bool:
    group = query.args.get("group")
    if group is None:
        return False
    if group.args.get("all"):
        return True
    position = query.expressions.index(projection) + 1
    inner = projection.unalias()
    for expression in group.expressions:
        if isinstance(expression, exp.Literal) and expression.is_int and int(expression.this) == position:
            return True
        if isinstance(expression, exp.Column) and expression.name == projection.alias_or_name:
            return True
        if expression == inner:
            return True
    return False
