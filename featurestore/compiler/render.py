"""A view as runnable SQL for one engine: upstream views inlined, sources resolved.

    render_view(user_spend_trend, views, sources, root, "duckdb")
    →  WITH "user_daily_stats" AS (SELECT … FROM read_parquet('/p/data/transactions.parquet') AS "transactions" …)
       SELECT … FROM "user_daily_stats" AS "user_daily_stats"

Definitions are DuckDB SQL; sqlglot writes them in the other dialects, and a construct it cannot
write faithfully in one is an error naming the view, not SQL that means something else. Sources
are read where they live: files by DuckDB's readers, and Parquet files by Spark in place
(parquet.`path`); DuckDB tables by DuckDB, PostgreSQL tables by PostgreSQL. Elsewhere a source
is the table of its name in the engine's catalog (e.g. a CSV source `events` on Spark, or any
source on Trino, Snowflake or BigQuery), which the user provides there.
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp

from featurestore.compiler import DIALECTS
from featurestore.compiler.windows import aggregates, event_rows
from featurestore.config import DuckDBSource, FileSource, PostgresSource, Source
from featurestore.definitions.graph import table_references
from featurestore.definitions.spec import FeatureView
from featurestore.errors import FeatureStoreError

__all__ = ["DIALECTS", "nulls_first_by_default", "render_query", "render_view", "write"]

_READERS = {"parquet": "read_parquet", "csv": "read_csv"}


def render_view(view: FeatureView, views: dict[str, FeatureView], sources: dict[str, Source],
                root: Path, dialect: str) -> str:
    """The SQL that yields the view's rows in `dialect` (a view must be resolved: `qualified` set);
    a window view's events (`event_rows`), which its windows aggregate, after a comment saying so."""
    query = render_query(view, views, sources, root, dialect)
    header = ""
    if view.windows:
        query = event_rows(view, query)
        labels = ", ".join(w.label for w in view.windows)
        inputs = ", ".join(f"{a.column} = {a.kind}({a.value}{', ' + a.order if a.order else ''})"
                           for a in aggregates(view))
        header = (f"-- {view.name} aggregates these events over windows {labels}: for an entity at t, the events\n"
                  "-- with t - window <= __fs_known < t (a training row's time, or an online lookup's).\n"
                  f"-- {inputs}\n")
    return header + write(query, dialect, view)


def write(query: exp.Expr, dialect: str, view: FeatureView | None = None) -> str:
    """`query` as `dialect` SQL, or an error naming `view` (if given) and what has no faithful form there."""
    where = f"{view.path}: view '{view.name}' cannot be written in {dialect} SQL" if view else \
        f"the query cannot be written in {dialect} SQL"
    # sqlglot passes functions it does not know through by name: DuckDB's own would not run elsewhere.
    unknown = sorted({f.name.lower() for f in query.find_all(exp.Anonymous)}) if dialect != "duckdb" else []
    if unknown:
        raise FeatureStoreError(f"{where}: it calls {', '.join(f + '()' for f in unknown)}, which sqlglot cannot "
                                f"translate from DuckDB; write it with functions {dialect} also has")
    if dialect != "duckdb":
        query = query.transform(_in_seconds) if dialect == "trino" else query.copy()  # changed below
        for ordered in query.find_all(exp.Ordered):  # our own columns hold no NULLs where they are sorted
            if isinstance(ordered.this, exp.Column) and ordered.this.name.startswith("__fs_"):
                ordered.set("nulls_first", nulls_first_by_default(dialect, bool(ordered.args.get("desc"))))
    try:  # a wide limit keeps long file paths on one line, so the layout does not depend on them
        return query.sql(dialect=dialect, pretty=True, comments=False, max_text_width=10_000,
                         unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        reasons = "; ".join(dict.fromkeys(line.strip() for line in str(exc).splitlines() if line.strip()))
        raise FeatureStoreError(f"{where}: {reasons}; rewrite that part, or compile for another dialect") from None


def nulls_first_by_default(dialect: str, desc: bool) -> bool:
    """Where `dialect` sorts NULLs when not told: an order whose NULLs do not matter is written without
    NULLS FIRST/LAST (which some engines cannot write, e.g. BigQuery in a window)."""
    ordering = sqlglot.Dialect.get_or_raise(dialect).NULL_ORDERING
    return (ordering == "nulls_are_small" and not desc) or (ordering == "nulls_are_large" and desc)


def _in_seconds(node: exp.Expr) -> exp.Expr:
    """Trino's intervals stop at seconds (with a fraction): INTERVAL '1500000' MICROSECOND → '1.500000' SECOND."""
    if isinstance(node, exp.Interval) and node.unit and node.unit.name.upper() == "MICROSECOND" and node.this.is_string:
        micros = int(node.this.name)
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        return exp.Interval(this=exp.Literal.string(f"{sign}{micros // 1_000_000}.{micros % 1_000_000:06d}"),
                            unit=exp.var("SECOND"))
    return node


def render_query(view: FeatureView, views: dict[str, FeatureView], sources: dict[str, Source],
                 root: Path, dialect: str, files: dict[str, list[str]] | None = None) -> exp.Query:
    """The tree behind `render_view`. `files` reads only these files of the named file sources."""
    ctes = [exp.CTE(this=_resolve(views[name], sources, root, dialect, files or {}), alias=exp.TableAlias(
        this=exp.to_identifier(name, quoted=True))) for name in _upstream(view, views)]
    query = _resolve(view, sources, root, dialect, files or {})
    if ctes:
        existing = query.args.get("with_")
        query.set("with_", exp.With(expressions=ctes + (existing.expressions if existing else [])))
    return query


def _upstream(view: FeatureView, views: dict[str, FeatureView]) -> list[str]:
    """Views `view` reads, directly or not, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        for upstream in views[name].reads:
            if upstream in views and upstream not in order:
                visit(upstream)
                order.append(upstream)

    visit(view.name)
    return order


def _resolve(view: FeatureView, sources: dict[str, Source], root: Path, dialect: str,
             files: dict[str, list[str]]) -> exp.Query:
    if view.qualified is None:
        raise ValueError(f"view {view.name} is not resolved")
    query = view.qualified.copy()
    for table in table_references(query):
        name = table.name
        if table.args.get("db") or name not in sources:
            continue
        source = sources[name]
        if isinstance(source, FileSource) and dialect == "duckdb":
            location: exp.Expr = exp.Literal.string(str(root / source.path))
            if name in files:
                location = exp.Array(expressions=[exp.Literal.string(f) for f in files[name]])
            reader = exp.Anonymous(this=_READERS[source.format], expressions=[location])
            if source.arrival is None:
                table.set("this", reader)
                continue
            # A source that accepts pushes: its files and the rows pushed to it (`offline.pushed`).
            union = exp.Union(this=exp.select("*").from_(exp.Table(this=reader)), expression=exp.select("*").from_(
                exp.to_table(f"__fs_pushed_{name}", quoted=True)), distinct=False, by_name=True)
            table.replace(exp.Subquery(this=union, alias=exp.TableAlias(
                this=exp.to_identifier(table.alias or name, quoted=True))))
        elif isinstance(source, PostgresSource) and dialect == "postgres":
            table.set("this", exp.to_identifier(source.table, quoted=True))
            table.set("db", exp.to_identifier(source.schema_name, quoted=True))
        elif isinstance(source, DuckDBSource) and dialect == "duckdb":
            table.set("this", exp.to_identifier(source.table, quoted=True))
        elif isinstance(source, FileSource) and dialect == "spark" and source.format == "parquet" and \
                source.arrival is None:  # (with pushes, the session's table of its name: files and pushed rows)
            table.set("this", exp.to_identifier(str(root / source.path), quoted=True))
            table.set("db", exp.to_identifier("parquet"))
    return query
