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
from featurestore.graph import table_references
from featurestore.config import DuckDBSource, FileSource, PostgresSource, Source
from featurestore.errors import FeatureStoreError
from featurestore.spec import FeatureView

__all__ = ["DIALECTS", "render_query", "render_view"]

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
    where = f"{view.path}: view '{view.name}' cannot be written in {dialect} SQL"
    # sqlglot passes functions it does not know through by name: DuckDB's own would not run elsewhere.
    unknown = sorted({f.name.lower() for f in query.find_all(exp.Anonymous)}) if dialect != "duckdb" else []
    if unknown:
        raise FeatureStoreError(f"{where}: it calls {', '.join(f + '()' for f in unknown)}, which sqlglot cannot "
                                f"translate from DuckDB; write it with functions {dialect} also has")
    try:  # a wide limit keeps long file paths on one line, so the layout does not depend on them
        return header + query.sql(dialect=dialect, pretty=True, comments=False, max_text_width=10_000,
                                  unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        reasons = "; ".join(dict.fromkeys(line.strip() for line in str(exc).splitlines() if line.strip()))
        raise FeatureStoreError(f"{where}: {reasons}; rewrite that part, or compile for another dialect") from None


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
            table.set("this", exp.Anonymous(this=_READERS[source.format], expressions=[location]))
        elif isinstance(source, PostgresSource) and dialect == "postgres":
            table.set("this", exp.to_identifier(source.table, quoted=True))
            table.set("db", exp.to_identifier(source.schema_name, quoted=True))
        elif isinstance(source, DuckDBSource) and dialect == "duckdb":
            table.set("this", exp.to_identifier(source.table, quoted=True))
        elif isinstance(source, FileSource) and dialect == "spark" and source.format == "parquet":
            table.set("this", exp.to_identifier(str(root / source.path), quoted=True))
            table.set("db", exp.to_identifier("parquet"))
    return query
