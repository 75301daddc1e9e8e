"""A cache of snapshot views' rows in the offline DuckDB database, ready to join.

Data scientists build frames over the same features again and again. A view's rows,
prepared for the point-in-time join, are kept in `featurestore_cache`, keyed by the
view's version and a fingerprint of every source it reads (file sizes and
modification times; a row hash for DuckDB tables; change counters for PostgreSQL
tables). A frame reuses them while both match and rebuilds them when either changes.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from sqlglot import exp

from featurestore.compiler.point_in_time import duplicate_message, duplicates, prepare_rows
from featurestore.compiler.render import render_query
from featurestore.config import DuckDBSource, FileSource, PostgresSource
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError
from featurestore.project import Project
from featurestore.spec import FeatureView

__all__ = ["SCHEMA", "cached_rows", "clear", "status"]

SCHEMA = "featurestore_cache"
_ENTRIES = exp.to_table(f"{SCHEMA}.entries")


def cached_rows(connection: Any, project: Project, view: FeatureView, load_sources: Callable[[], None]) -> exp.Query:
    """A query over the view's cached, prepared rows; (re)built first when stale.

    `load_sources` makes the view's PostgreSQL sources readable; it runs only for a rebuild.
    """
    _ensure_schema(connection)
    fingerprint = _fingerprint(connection, project, view)
    table = exp.to_table(f"{SCHEMA}.{view.name}__{view.version}", quoted=True)
    row = connection.execute(f"SELECT fingerprint FROM {_ENTRIES.sql(dialect='duckdb')} WHERE view = $1 AND version = $2",
                             [view.name, view.version]).fetchone()
    if row is None or row[0] != fingerprint:
        load_sources()
        rows = render_query(view, project.views, project.settings.sources, project.settings.root, "duckdb")
        prepared = prepare_rows(view, rows, list(dict.fromkeys(f.column for f in view.features)))
        create = exp.Create(this=table, kind="TABLE", expression=prepared, replace=True)
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(create.sql(dialect="duckdb", comments=False))
            count = connection.execute(f"SELECT count(*) FROM {table.sql(dialect='duckdb')}").fetchone()[0]
            if not view.created:
                duplicate = connection.execute(
                    duplicates(view, exp.select("*").from_(table.copy())).sql(dialect="duckdb")).fetchone()
                if duplicate:
                    raise FeatureStoreError(duplicate_message(view, duplicate))
            connection.execute(f"DELETE FROM {_ENTRIES.sql(dialect='duckdb')} WHERE view = $1 AND version = $2",
                               [view.name, view.version])
            connection.execute(f"INSERT INTO {_ENTRIES.sql(dialect='duckdb')} VALUES ($1, $2, $3, $4, now(), now())",
                               [view.name, view.version, fingerprint, count])
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    else:
        connection.execute(f"UPDATE {_ENTRIES.sql(dialect='duckdb')} SET last_used_at = now() "
                           "WHERE view = $1 AND version = $2", [view.name, view.version])
    return exp.select("*").from_(table)


def status(project: Project) -> list[dict[str, Any]]:
    """One entry per cached view version: rows, whether it is current and fresh, when last used."""
    settings = project.settings
    if not settings.offline_database.exists():
        return []
    connection = duck.connect_offline(settings.offline_database, settings.state_dir / "tmp")
    try:
        _ensure_schema(connection)
        rows = connection.execute(f"SELECT view, version, fingerprint, rows, created_at::VARCHAR, last_used_at::VARCHAR "
                                  f"FROM {_ENTRIES.sql(dialect='duckdb')} ORDER BY view, version").fetchall()
        result = []
        for view, version, fingerprint, count, created, used in rows:
            current = view in project.views and project.views[view].version == version
            fresh = current and _fingerprint(connection, project, project.views[view]) == fingerprint
            result.append({"view": view, "version": version, "rows": count, "current": current, "fresh": fresh,
                           "created_at": created, "last_used_at": used})
        return result
    finally:
        connection.close()


def clear(project: Project, views: list[str] | None = None) -> int:
    """Drop cached rows (of `views`, or all); returns how many entries were dropped."""
    settings = project.settings
    if not settings.offline_database.exists():
        return 0
    connection = duck.connect_offline(settings.offline_database, settings.state_dir / "tmp")
    try:
        _ensure_schema(connection)
        entries = connection.execute(f"SELECT view, version FROM {_ENTRIES.sql(dialect='duckdb')}").fetchall()
        dropped = 0
        for view, version in entries:
            if views and view not in views:
                continue
            table = exp.to_table(f"{SCHEMA}.{view}__{version}", quoted=True)
            connection.execute(f"DROP TABLE IF EXISTS {table.sql(dialect='duckdb')}")
            connection.execute(f"DELETE FROM {_ENTRIES.sql(dialect='duckdb')} WHERE view = $1 AND version = $2",
                               [view, version])
            dropped += 1
        return dropped
    finally:
        connection.close()


def _ensure_schema(connection: Any) -> None:
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {_ENTRIES.sql(dialect='duckdb')} (view VARCHAR, version VARCHAR, "
                       "fingerprint VARCHAR, rows BIGINT, created_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ)")


def _fingerprint(connection: Any, project: Project, view: FeatureView) -> str:
    """A digest of the state of every source the view reads, directly or through other views."""
    settings = project.settings
    state: dict[str, Any] = {}
    for name in sorted(_sources_of(project, view)):
        source = settings.sources[name]
        if isinstance(source, FileSource):
            files = sorted(glob.glob(str(settings.root / source.path), recursive=True))
            state[name] = [[f, *_stat(f)] for f in files]
        elif isinstance(source, DuckDBSource):
            state[name] = duck.table_checksum(connection, source.table)
        elif isinstance(source, PostgresSource):
            url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
            state[name] = postgres.table_checksum(url, source.schema_name, source.table)
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sources_of(project: Project, view: FeatureView) -> set[str]:
    found: set[str] = set()
    for read in view.reads:
        if read in project.views:
            found |= _sources_of(project, project.views[read])
        else:
            found.add(read)
    return found


def _stat(path: str) -> tuple[int, int]:
    info = Path(path).stat()
    return info.st_size, info.st_mtime_ns
