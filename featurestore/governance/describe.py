"""One view as its owner and its readers need it: annotations, the span of its data, online
freshness and recorded consumers.

    describe_view(project, "user_spend_trend", url)
    → ViewDescription(view=..., owner=..., ..., data=DataSpan(...), online=OnlineFreshness(...),
                      recorded_consumers=(RecordedConsumer(...), ...))

Frozen pydantic models whose field names are the keys of their JSON (`model_dump(mode="json")`, as
`featurestore describe --format json` prints it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer, model_validator
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

__all__ = [
    "DataSpan",
    "DeprecationNote",
    "FeatureType",
    "OnlineFreshness",
    "RecordedConsumer",
    "SourceSpan",
    "ViewDescription",
    "describe_view",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSpan(_Frozen):
    """A source column the view's time column comes from: its rows and the span of its values."""

    column: str
    rows: int
    first: str | None
    last: str | None


class DataSpan(_Frozen):
    """What the view yields now: `rows` (a snapshot view) or `events` (the rows a window view
    aggregates; the other one is None and left out of the JSON), the span of its time column
    (None without rows), per source column the same, and the view's declared gaps and start."""

    rows: int | None = None
    events: int | None = None
    first: str | None
    last: str | None
    sources: tuple[SourceSpan, ...]
    invalid: tuple[tuple[str, str], ...]
    available_since: str | None

    @model_validator(mode="after")
    def _one_count(self) -> DataSpan:
        if (self.rows is None) == (self.events is None):
            raise ValueError("a data span counts either rows or events")
        return self

    @model_serializer(mode="wrap")
    def _only_its_count(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        del data["events" if self.events is None else "rows"]
        return data

    @property
    def count(self) -> int:
        """The rows, or the events of a window view."""
        return self.rows if self.rows is not None else self.events or 0

    @property
    def unit(self) -> Literal["rows", "events"]:
        """What `count` counts."""
        return "rows" if self.rows is not None else "events"


class OnlineFreshness(_Frozen):
    """The last materialization of the view's current version (instants in ISO 8601)."""

    watermark: str
    materialized_at: str
    lag_seconds: float
    rows_written_last_run: int | None
    late_last_run: int | None


class RecordedConsumer(_Frozen):
    """A consumer that read the view in the last CONSUMER_DAYS days: how often, and when last."""

    consumer: str
    reads: int
    last_read: str


class FeatureType(_Frozen):
    """A feature of the view and its SQL type."""

    name: str
    type: str


class DeprecationNote(_Frozen):
    """The view's sunset date (ISO 8601) and hint."""

    sunset: str
    hint: str


class ViewDescription(_Frozen):
    """One view: its catalog entry (`definitions.spec.catalog_entry`: annotations as text), then the
    span of its data (None only where the catalog page could not read it), its online freshness (None
    if not materialized) and its recorded consumers (None without PostgreSQL)."""

    view: str
    kind: Literal["snapshot", "window"]
    entity: tuple[str, ...]
    timestamp: str
    owner: str
    description: str
    version: str
    tags: tuple[str, ...]
    path: str
    deprecated: DeprecationNote | None
    consumers: tuple[str, ...]
    available_after: str
    available_since: str | None
    ttl: str | None
    invalid: tuple[tuple[str, str], ...]
    created: str | None
    known_at: str | None = None
    windows: tuple[str, ...]
    reads: tuple[str, ...]
    features: tuple[FeatureType, ...]
    data: DataSpan | None
    online: OnlineFreshness | None
    recorded_consumers: tuple[RecordedConsumer, ...] | None


def describe_view(project: Project, name: str, url: str | None, now: datetime | None = None) -> ViewDescription:
    """A view's annotations, the span of its data, its online freshness and its consumers."""
    now = now or datetime.now(UTC)
    view = view_named(project.views, name)
    entry = catalog_entry(view, project.settings.root)
    data = _data_span(project, view)
    if url is None:
        return ViewDescription(**entry, data=data, online=None, recorded_consumers=None)
    with postgres.connect(url) as connection:
        mark = last_run(connection, view)
    online = None
    if mark is not None:
        online = OnlineFreshness(watermark=mark[0].isoformat(), materialized_at=mark[1].isoformat(),
                                 lag_seconds=round((now - mark[0]).total_seconds(), 3),
                                 rows_written_last_run=mark[2], late_last_run=mark[3])
    recent = readers(project.settings, url, now - timedelta(days=CONSUMER_DAYS))
    consumers: dict[str, dict[str, Any]] = {}
    for feature in view.features:
        for consumer, info in recent.get((view.name, feature.name), {}).items():
            slot = consumers.setdefault(consumer, {"reads": 0, "last_read": info["last_read"]})
            slot["reads"] += info["reads"]
            slot["last_read"] = max(slot["last_read"], info["last_read"])
    recorded = [RecordedConsumer(consumer=consumer, reads=c["reads"], last_read=c["last_read"].isoformat())
                for consumer, c in sorted(consumers.items())]
    return ViewDescription(**entry, data=data, online=online, recorded_consumers=recorded)


def _data_span(project: Project, view: Any) -> DataSpan:
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
            per_source.append(SourceSpan(column=reference, rows=count, first=low, last=high))
    return DataSpan(**{"rows" if not view.windows else "events": rows}, first=first, last=last, sources=per_source,
                    invalid=[(i.start.isoformat(), i.end.isoformat()) for i in view.invalid],
                    available_since=view.available_since.isoformat() if view.available_since else None)
