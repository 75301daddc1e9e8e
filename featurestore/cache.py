"""A cache of snapshot views' rows in the offline DuckDB database, ready to join.

Data scientists build frames over the same features again and again. A view's rows are
kept in `featurestore_cache` as validity intervals (each row with the instant the next
row of its keys becomes known), keyed by the view's version and a fingerprint of every
source it reads: file sizes and modification times, row-hash checksums of DuckDB and
PostgreSQL tables. Frames only read the cache; a stale or missing entry is computed
inline for that frame and written afterwards, in the background, so the first frame
pays nothing for the cache and later ones join by hash instead of sorting.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from sqlglot import exp

from featurestore.compiler.point_in_time import (
    duplicate_fix,
    duplicate_message,
    duplicates,
    prepare_rows,
    validity_intervals,
)
from featurestore.compiler.render import render_query
from featurestore.config import DuckDBSource, FileSource, PostgresSource
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError
from featurestore.project import Project
from featurestore.spec import FeatureView

__all__ = ["SCHEMA", "clear", "duplicate_error", "fill", "fresh_table", "prepared_rows", "sources_of", "status"]

SCHEMA = "featurestore_cache"
_ENTRIES = f"{SCHEMA}.catalog"


def fresh_table(connection: Any, project: Project, view: FeatureView) -> exp.Table | None:
    """The view's cached intervals if they match its version and sources now; reads only."""
    if not _has_schema(connection):
        return None
    row = duck.first_row(connection, f"SELECT fingerprint FROM {_ENTRIES} WHERE view = $1 AND version = $2",
                         [view.name, view.version])
    if row is None or row[0] != fingerprint(connection, project, view):
        return None
    return _table(view)


def fill(connection: Any, project: Project, view: FeatureView, load_sources: Callable[[], None]) -> None:
    """(Re)build the view's cached intervals in one transaction; refuses duplicate (keys, time) rows."""
    state = fingerprint(connection, project, view)
    load_sources()
    _ensure_schema(connection)
    prepared = prepared_rows(project, view, list(dict.fromkeys(f.column for f in view.features)))
    table = _table(view)
    create = exp.Create(this=table, kind="TABLE", expression=validity_intervals(view, prepared), replace=True)
    connection.execute("BEGIN TRANSACTION")
    try:
        with duck.errors_as_feature_store_errors():
            connection.execute(create.sql(dialect="duckdb", comments=False))
        if not view.created:
            duplicate = duck.first_row(connection, duplicates(view, exp.select("*").from_(table.copy())).sql(
                dialect="duckdb"))
            if duplicate:
                raise duplicate_error(view, duplicate)
        count = duck.first_row(connection, f"SELECT count(*) FROM {table.sql(dialect='duckdb')}")[0]
        connection.execute(f"DELETE FROM {_ENTRIES} WHERE view = $1 AND version = $2", [view.name, view.version])
        connection.execute(f"INSERT INTO {_ENTRIES} VALUES ($1, $2, $3, $4, now())",
                           [view.name, view.version, state, count])
        connection.execute("COMMIT")
    except BaseException:
        duck.abandon(connection)
        raise


def prepared_rows(project: Project, view: FeatureView, columns: list[str]) -> exp.Select:
    """The view's rows read from its sources (DuckDB dialect), prepared to join (`prepare_rows`)."""
    settings = project.settings
    return prepare_rows(view, render_query(view, project.views, settings.sources, settings.root, "duckdb"), columns)


def duplicate_error(view: FeatureView, row: tuple) -> FeatureStoreError:
    return FeatureStoreError(f"{duplicate_message(view, row)}; {duplicate_fix(view)}")


def status(project: Project) -> list[dict[str, Any]]:
    """One entry per cached view version: rows, whether it is current (version) and fresh (sources)."""
    settings = project.settings
    duck.wait_for_background(settings.offline_database)
    if not settings.offline_database.exists():
        return []
    connection = duck.connect_offline(settings.offline_database, settings.state_dir / "tmp", read_only=True)
    try:
        if not _has_schema(connection):
            return []
        rows = connection.execute(f"SELECT view, version, fingerprint, rows, created_at::VARCHAR FROM {_ENTRIES} "
                                  "ORDER BY view, version").fetchall()
        result = []
        for view, version, state, count, created in rows:
            current = view in project.views and project.views[view].version == version
            fresh = current and fingerprint(connection, project, project.views[view]) == state
            result.append({"view": view, "version": version, "rows": count, "current": current, "fresh": fresh,
                           "created_at": created})
        return result
    finally:
        connection.close()


def clear(project: Project, views: list[str] | None = None) -> int:
    """Drop cached rows (of `views`, or all); returns how many entries were dropped."""
    settings = project.settings
    duck.wait_for_background(settings.offline_database)
    if not settings.offline_database.exists():
        return 0
    connection = duck.connect_offline(settings.offline_database, settings.state_dir / "tmp")
    try:
        if not _has_schema(connection):
            return 0
        dropped = 0
        for view, version in connection.execute(f"SELECT view, version FROM {_ENTRIES}").fetchall():
            if views and view not in views:
                continue
            table = exp.to_table(f"{SCHEMA}.{view}__{version}", quoted=True)
            connection.execute(f"DROP TABLE IF EXISTS {table.sql(dialect='duckdb')}")
            connection.execute(f"DELETE FROM {_ENTRIES} WHERE view = $1 AND version = $2", [view, version])
            dropped += 1
        connection.execute("CHECKPOINT")  # give the space back to the file
        return dropped
    finally:
        connection.close()


def fingerprint(connection: Any, project: Project, view: FeatureView) -> str:
    """A digest of the state of every source the view reads, directly or through other views."""
    settings = project.settings
    state: dict[str, Any] = {}
    for name in sorted(sources_of(project, view)):
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


def _table(view: FeatureView) -> exp.Table:
    return exp.to_table(f"{SCHEMA}.{view.name}__{view.version}", quoted=True)


def _has_schema(connection: Any) -> bool:
    return duck.first_row(connection, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $1 "
                          "AND table_name = 'catalog'", [SCHEMA])[0] > 0


def _ensure_schema(connection: Any) -> None:
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {_ENTRIES} (view VARCHAR, version VARCHAR, fingerprint VARCHAR, "
                       "rows BIGINT, created_at TIMESTAMPTZ)")


def sources_of(project: Project, view: FeatureView) -> set[str]:
    """Every source the view reads, directly or through other views."""
    found: set[str] = set()
    for read in view.reads:
        if read in project.views:
            found |= sources_of(project, project.views[read])
        else:
            found.add(read)
    return found


def _stat(path: str) -> tuple[int, int]:
    info = Path(path).stat()
    return info.st_size, info.st_mtime_ns
