"""Structural checks of a view's SQL that need no schema: leakage and shape.

    check_query(view)  →  [Problem(…, "now() reads the clock: …"), …]

A feature definition must compute the same value whenever it is run for the
same past instant, so anything that reads the clock, randomness, or rows later
than the current one is refused here, before any data is touched.
"""

from __future__ import annotations

from sqlglot import exp

from featurestore.errors import Problem
from featurestore.loader import column_of, find_word, line_of
from featurestore.spec import FeatureView

__all__ = ["SUPPORTED_AGGREGATES", "check_query"]

_CLOCK = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.CurrentDatetime,
          exp.CurrentTimestampLTZ, exp.Localtimestamp, exp.Localtime)
_RANDOM = (exp.Rand, exp.Randn, exp.Uuid)
_CLOCK_NAMES = {"now", "get_current_timestamp", "get_current_time", "transaction_timestamp", "current_localtimestamp",
                "current_localtime", "statement_timestamp", "clock_timestamp", "epoch_ms_now"}
_RANDOM_NAMES = {"random", "setseed", "uuidv4", "uuidv7", "gen_random_uuid", "uuid"}
_TABLE_FUNCTIONS_ALLOWED = (exp.GenerateSeries, exp.Unnest)
SUPPORTED_AGGREGATES = "count(*), count(x), count(DISTINCT x), sum, avg, min, max, arg_max(x, ts)"
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.ArgMax)


def check_query(view: FeatureView) -> list[Problem]:
    """Every construct in the view's SQL that can read the future or breaks its kind's shape."""
    problems = _future_reads(view)
    if view.windows:
        problems += _window_shape(view)
    else:
        problems += _snapshot_shape(view)
    return problems


def _problem(view: FeatureView, node: exp.Expr, message: str, hint: str, code: str) -> Problem:
    if not any("line" in n.meta for n in node.walk()):
        # Keyword functions (CURRENT_TIMESTAMP) carry no position: find the word in the text.
        line, column = find_word(view.text, node.sql(dialect="duckdb").split("(")[0], line_of(view.query))
        return Problem(view.path, line, message, hint, code=code, column=column)
    return Problem(view.path, line_of(node, line_of(view.query)), message, hint, code=code,
                   column=column_of(node))


def _future_reads(view: FeatureView) -> list[Problem]:
    found: list[Problem] = []
    for node in view.query.walk():
        if isinstance(node, _CLOCK) or (isinstance(node, exp.Anonymous) and node.name.lower() in _CLOCK_NAMES):
            found.append(_problem(view, node, f"{node.sql(dialect='duckdb')} reads the clock, so past values would change",
                                  "compute from the data's own timestamps; the store applies `as of t` for you",
                                  "reads-clock"))
        elif isinstance(node, _RANDOM) or (isinstance(node, exp.Anonymous) and node.name.lower() in _RANDOM_NAMES):
            found.append(_problem(view, node, f"{node.sql(dialect='duckdb')} is random, so a feature would not be reproducible",
                                  "derive the value from the data (e.g. hash(key)) instead", "random"))
        elif isinstance(node, exp.Lead):
            found.append(_problem(view, node, "lead() reads a later row: the future leaks into the feature",
                                  "use lag() or a window frame that ends at CURRENT ROW", "reads-future"))
        elif isinstance(node, exp.Lag) and _negative(node.args.get("offset")):
            found.append(_problem(view, node, "lag() with a negative offset reads a later row",
                                  "use a positive offset: lag(x, 1)", "reads-future"))
        elif isinstance(node, exp.WindowSpec) and "FOLLOWING" in {
                str(node.args.get("start_side") or "").upper(), str(node.args.get("end_side") or "").upper()}:
            found.append(_problem(view, node.parent or node, "a window frame with FOLLOWING reads later rows",
                                  "end the frame at CURRENT ROW: ROWS BETWEEN n PRECEDING AND CURRENT ROW",
                                  "reads-future"))
        elif isinstance(node, exp.Table) and not isinstance(node.this, (exp.Identifier, *_TABLE_FUNCTIONS_ALLOWED)):
            found.append(_problem(view, node, f"{node.this.sql(dialect='duckdb')} reads data that is not a declared source",
                                  "declare the file under [sources] in featurestore.toml and read it by name",
                                  "undeclared-source"))
    return found


def _negative(offset: exp.Expr | None) -> bool:
    if offset is None:
        return False
    if isinstance(offset, exp.Neg):
        return True
    return isinstance(offset, exp.Literal) and not offset.is_string and offset.this.startswith("-")


def _window_shape(view: FeatureView) -> list[Problem]:
    query = view.query
    keys = ", ".join(view.entity)
    shape = f"write `SELECT {keys}, <aggregates> FROM <source> GROUP BY {keys}`"
    if not isinstance(query, exp.Select):
        return [_problem(view, query, "a view with windows must be one SELECT … GROUP BY the entity keys", shape, "window-shape")]
    group = query.args.get("group")
    grouped = [e.name for e in group.expressions if isinstance(e, exp.Column)] if group else []
    if not group or len(grouped) != len(group.expressions) or set(grouped) != set(view.entity) \
            or len(grouped) != len(view.entity):
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
        if not isinstance(aggregate, _AGGREGATES) or any(
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


def _snapshot_shape(view: FeatureView) -> list[Problem]:
    query = view.query
    if not isinstance(query, exp.Select):
        return []
    aggregated = bool(query.args.get("group")) or any(_is_aggregate(p) for p in query.expressions)
    if not aggregated:
        return []
    projection = next((p for p in query.expressions if p.alias_or_name == view.timestamp), None)
    if projection is not None and not _is_aggregate(projection) and _is_grouped(query, projection):
        return []
    return [_problem(view, query.args.get("group") or query,
                     "this view aggregates over all of history per entity, so each row would see the future",
                     f"add `-- windows: 1d, 7d` to aggregate over windows before each instant, or GROUP BY a time "
                     f"bucket that the view outputs as its timestamp '{view.timestamp}' "
                     f"(e.g. date_trunc('day', ts) + INTERVAL 1 DAY AS {view.timestamp})", "aggregate-without-windows")]


def _is_aggregate(node: exp.Expr) -> bool:
    return any(isinstance(n, exp.AggFunc) and not isinstance(n.parent, exp.Window) for n in node.walk())


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
