"""One view as its owner and its readers need it: annotations, the span of its data, online
freshness and recorded consumers.

    describe_view(project, "user_spend_trend", url)  → {"view": ..., "data": {...}, "online": {...}, "consumers": [...]}
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlglot import exp

from featurestore.compiler.lineage import column_sources
from featurestore.compiler.render import render_query
from featurestore.config import DuckDBSource
from featurestore.definitions.selection import view_named
from featurestore.definitions.spec import catalog_entry
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.governance.usage import CONSUMER_DAYS, readers
from featurestore.offline.sources import register_sources
from featurestore.online.materialize import last_run
from featurestore.project import Project

__all__ = ["describe_view"]


def describe_view(project: Project, name: str, url: str | None, now: datetime | None = None) -> dict[str, Any]:
    """A view's annotations, the span of its data, its online freshness and its consumers."""
    now = now or datetime.now(UTC)
    view = view_named(project.views, name)
    result: dict[str, Any] = {**catalog_entry(view, project.settings.root), "data": _data_span(project, view)}
    result["online"] = None
    result["recorded_consumers"] = None
    if url is not None:
        with postgres.connect(url) as connection:
            mark = last_run(connection, view)
        if mark is not None:
            result["online"] = {"watermark": mark[0].isoformat(), "materialized_at": mark[1].isoformat(),
                                "lag_seconds": round((now - mark[0]).total_seconds(), 3),
                                "rows_written_last_run": mark[2], "late_last_run": mark[3]}
        recent = readers(project.settings, url, now - timedelta(days=CONSUMER_DAYS))
        consumers: dict[str, dict[str, Any]] = {}
        for feature in view.features:
            for consumer, info in recent.get((view.name, feature.name), {}).items():
                slot = consumers.setdefault(consumer, {"consumer": consumer, "reads": 0,
                                                       "last_read": info["last_read"]})
                slot["reads"] += info["reads"]
                slot["last_read"] = max(slot["last_read"], info["last_read"])
        result["recorded_consumers"] = [{**c, "last_read": c["last_read"].isoformat()}
                                        for _, c in sorted(consumers.items())]
    return result


def _data_span(project: Project, view: Any) -> dict[str, Any]:
    """The rows the view yields now and the span of their time column (read with DuckDB)."""
    settings = project.settings
    query = render_query(view, project.views, settings.sources, settings.root, "duckdb")
    ts = exp.column(view.timestamp, quoted=True)
    span = exp.select(exp.Count(this=exp.Star()), exp.cast(exp.Min(this=ts), "VARCHAR"),
                      exp.cast(exp.Max(this=ts.copy()), "VARCHAR")).from_(
        exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("v", quoted=True))))
    if view.windows:  # a window view's timestamp is the event time of the rows it aggregates
        inner = render_query(view, project.views, settings.sources, settings.root, "duckdb")
        for clause in ("group", "having", "qualify", "order", "limit"):
            inner.set(clause, None)
        inner.set("expressions", [exp.alias_(exp.column(view.timestamp, quoted=True), view.timestamp, quoted=True)])
        span = span.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("v", quoted=True))))
    if view.windows:  # the event-time column of the sources it reads directly
        columns = [f"{name}.{view.timestamp}" for name in view.reads if name in project.sources
                   and view.timestamp in {c.name for c in project.sources[name]}]
    else:
        columns = column_sources(project.views, project.sources, view.name, view.timestamp)
    per_source = []
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection, \
            duck.errors_as_feature_store_errors():
        register_sources(connection, project, [view], every_source=True, loaded=set())
        rows, first, last = duck.first_row(connection, span.sql(dialect="duckdb"))
        for reference in columns:
            name, _, column = reference.partition(".")
            source = settings.sources[name]
            table = exp.to_table(source.table, quoted=True) if isinstance(source, DuckDBSource) else \
                exp.to_table(name, quoted=True)
            found = exp.column(column, quoted=True)
            count, low, high = duck.first_row(connection, exp.select(
                exp.Count(this=exp.Star()), exp.cast(exp.Min(this=found), "VARCHAR"),
                exp.cast(exp.Max(this=found.copy()), "VARCHAR")).from_(table).sql(dialect="duckdb"))
            per_source.append({"column": reference, "rows": count, "first": low, "last": high})
    return {"rows" if not view.windows else "events": rows, "first": first, "last": last, "sources": per_source,
            "invalid": [[i.start.isoformat(), i.end.isoformat()] for i in view.invalid],
            "available_since": view.available_since.isoformat() if view.available_since else None}
