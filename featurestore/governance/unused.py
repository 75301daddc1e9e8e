"""Features nobody reads: the clean-up list.

    unused_features(project, url, days=30)
    → [UnusedFeature(feature="view.f", owner=..., last_read=..., online_bytes=...), ..., UnusedSource(source=...)]

Frozen pydantic models whose field names are the keys of their JSON (`model_dump(mode="json")`,
as `featurestore unused --format json` prints them).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from featurestore.compiler.windows import aggregates
from featurestore.engines import postgres
from featurestore.governance.usage import readers
from featurestore.online.materialize import SCHEMA as ONLINE_SCHEMA
from featurestore.project import Project

__all__ = ["UnusedFeature", "UnusedSource", "unread_features", "unused_features"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnusedFeature(_Frozen):
    """A feature no consumer read lately: its last read ever (ISO 8601; None if never) and who read it
    then, and about what its column costs in the online table (None if not online)."""

    kind: Literal["feature"] = "feature"
    feature: str
    view: str
    owner: str
    version: str
    last_read: str | None
    last_consumers: tuple[str, ...]
    online_bytes: int | None


class UnusedSource(_Frozen):
    """A source no view reads (`feature`, `owner` and `last_read` are always None: the same keys as
    an unused feature's, for readers of the JSON list)."""

    kind: Literal["source"] = "source"
    feature: None = None
    source: str
    owner: None = None
    last_read: None = None


def unused_features(project: Project, url: str, days: int,
                    now: datetime | None = None) -> list[UnusedFeature | UnusedSource]:
    """Features no consumer read in the last `days` days (never-read ones included), then unread sources.

    Each feature (`UnusedFeature`): feature, view, owner, version, last_read (ever; None if never), the
    consumers that read it then, and online_bytes: about what its column costs in the online table.
    """
    now = now or datetime.now(UTC)
    ever = readers(project.settings, url)
    sizes = _online_bytes(url, project)
    found: list[UnusedFeature | UnusedSource] = []
    for view, feature, last, reads in unread_features(project, ever, now - timedelta(days=days)):
        found.append(UnusedFeature(feature=feature.qualified, view=view.name, owner=view.owner, version=view.version,
                                   last_read=last.isoformat() if last else None, last_consumers=sorted(reads),
                                   online_bytes=sizes.get((view.name, feature.column))))
    read = {r for v in project.views.values() for r in v.reads}
    found += [UnusedSource(source=source) for source in sorted(set(project.settings.sources) - read)]
    return found


def unread_features(project: Project, ever: dict[tuple[str, str], dict[str, dict[str, Any]]],
                    since: datetime) -> Iterator[tuple[Any, Any, datetime | None, dict[str, dict[str, Any]]]]:
    """(view, feature, last read or None, its readers) for each feature nobody read since `since`,
    given every read ever recorded (`usage.readers`)."""
    for view in project.views.values():
        for feature in view.features:
            reads = ever.get((view.name, feature.name), {})
            last = max((info["last_read"] for info in reads.values()), default=None)
            if last is None or last < since:
                yield view, feature, last, reads


def _online_bytes(url: str, project: Project) -> dict[tuple[str, str], int]:
    """Per (view, column) of each current online table: its share of the table's bytes, by average width
    (a window view's aggregate: that of its inputs, which all its windows share)."""
    tables = {f"{v.name}__{v.version}": v.name for v in project.views.values()}
    with postgres.connect(url) as connection:
        found = connection.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), c.reltuples FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
            [ONLINE_SCHEMA, list(tables)]).fetchall()
        sizes: dict[tuple[str, str], int] = {}
        for table, total, tuples in found:
            widths = dict(connection.execute("SELECT attname, avg_width FROM pg_stats WHERE schemaname = %s AND "
                                             "tablename = %s", [ONLINE_SCHEMA, table]).fetchall())
            if not widths and tuples != 0:
                connection.execute(f'ANALYZE {ONLINE_SCHEMA}."{table}"')  # name checked against the registry above
                widths = dict(connection.execute("SELECT attname, avg_width FROM pg_stats WHERE schemaname = %s AND "
                                                 "tablename = %s", [ONLINE_SCHEMA, table]).fetchall())
            whole = sum(widths.values()) or 1
            view = project.views[tables[table]]
            for column, width in widths.items():
                sizes[(view.name, column)] = int(total * width / whole)
            for aggregate in aggregates(view) if view.windows else []:  # a window view stores each one's inputs
                sizes[(view.name, aggregate.column)] = sum(sizes.get((view.name, c), 0) for c in (
                    aggregate.value, aggregate.order) if c and c != "__fs_ts")
    return sizes
