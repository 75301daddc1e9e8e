"""A cache of snapshot views' rows in the offline DuckDB database, ready to join.

Data scientists build frames over the same features again and again. A view's rows are
kept in `featurestore_cache` as validity intervals (each row with the instant the next
row of its keys becomes known), keyed by the view's version and a fingerprint of every
source it reads: file sizes and modification times, row-hash checksums of DuckDB and
PostgreSQL tables. A frame fills a stale or missing entry itself, before it joins, when the
project's `[offline] cache` setting says so (by default at the second read of the same
version over the same sources, `read_before`), and otherwise computes the view inline;
later frames join the intervals by hash instead of sorting. When a row-wise view's file
source only gained files, the refresh reads just those files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from featurestore.compiler.point_in_time import tie_winner, validity_intervals
from featurestore.definitions.spec import FeatureView
from featurestore.engines import duckdb as duck
from featurestore.offline.changes import added_files, fingerprint, source_state, state_digest
from featurestore.offline.rows import prepared_rows, refuse_duplicates
from featurestore.project import Project

__all__ = ["SCHEMA", "cache_state", "cached_table", "clear", "fill", "read_before", "status"]


SCHEMA = "featurestore_cache"


_ENTRIES = f"{SCHEMA}.catalog"


def cache_state(connection: Any, project: Project, view: FeatureView) -> tuple[bool, str]:
    """Whether the view's cached intervals match its version and sources now, and its sources'
    fingerprint now; reads only."""
    now = fingerprint(connection, project, view)
    if not _has_schema(connection):
        return False, now
    row = duck.first_row(connection, f"SELECT fingerprint FROM {_ENTRIES} WHERE view = $1 AND version = $2",
                         [view.name, view.version])
    return row is not None and row[0] == now, now


def cached_table(view: FeatureView) -> exp.Table:
    """The table holding the view's cached intervals (see `cache_state` for whether they are current)."""
    return _table(view)


def read_before(project: Project, view: FeatureView, digest: str) -> bool:
    """Whether a frame already read this version of the view over sources with fingerprint `digest`;
    records this read if not (a small file under `.featurestore/cache/reads/`, written atomically)."""
    folder = project.settings.state_dir / "cache" / "reads"
    marker = folder / f"{view.name}__{view.version}"
    try:
        if marker.read_text() == digest:
            return True
    except OSError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{marker.name}.{os.getpid()}.partial"
    partial.write_text(digest)
    os.replace(partial, marker)
    return False


def fill(connection: Any, project: Project, view: FeatureView, load_sources: Callable[[], None]) -> str:
    """Bring the view's cached intervals up to date in one transaction; refuses duplicate (keys, time) rows.

    When the view is row-wise over one file source and that source only gained files since the
    cache was written, only the new files are read, and only the keys they hold are recomputed;
    otherwise (and for a view with arrival times) the view is rebuilt. Returns "incremental" or "full".
    """
    state = source_state(connection, project, view)
    load_sources()
    _ensure_schema(connection)
    table = _table(view)
    columns = _cached_columns(view)
    previous = duck.first_row(connection, f"SELECT state FROM {_ENTRIES} WHERE view = $1 AND version = $2",
                              [view.name, view.version])
    added = added_files(project, view, json.loads(previous[0]) if previous and previous[0] else None, state)
    if view.known_at:  # a new row may come before cached ones in known-at order and supersede them: rebuild
        added = {}
    connection.execute("BEGIN TRANSACTION")
    try:
        with duck.errors_as_feature_store_errors():
            if added:
                read = _append(connection, project, view, table, columns, added)
            else:
                prepared = _keyed(view, prepared_rows(project, view, columns))
                connection.execute(exp.Create(this=table, kind="TABLE", expression=validity_intervals(view, prepared),
                                              replace=True).sql(dialect="duckdb", comments=False))
                if not view.created:
                    refuse_duplicates(connection, view, exp.select("*").from_(table.copy()))
                read = None
        count = duck.first_row(connection, f"SELECT count(*) FROM {table.sql(dialect='duckdb')}")[0]
        connection.execute(f"DELETE FROM {_ENTRIES} WHERE view = $1 AND version = $2", [view.name, view.version])
        connection.execute(f"INSERT INTO {_ENTRIES} (view, version, fingerprint, rows, created_at, state, refresh, "
                           "read_rows) VALUES ($1, $2, $3, $4, now(), $5, $6, $7)",
                           [view.name, view.version, state_digest(state), count, json.dumps(state),
                            "incremental" if added else "full", count if read is None else read])
        connection.execute("COMMIT")
    except BaseException:
        duck.abandon(connection)
        raise
    return "incremental" if added else "full"


def _append(connection: Any, project: Project, view: FeatureView, table: exp.Table, columns: list[str],
            added: dict[str, list[str]]) -> int:
    """Merge the rows of the new files into the cached intervals; returns how many rows they held.

    A key whose new rows all come after its newest cached row only gets them appended, and that
    row's interval closed where the first of them becomes known. A key with a row arriving late
    (at or before its newest cached time) is recomputed from its cached and new rows.
    """
    delta = _keyed(view, prepared_rows(project, view, columns, files=added))
    _run(connection, _temp_table("__fs_delta", delta))
    if not view.created:
        refuse_duplicates(connection, view, exp.select("*").from_("__fs_delta"))
    # Per key the new rows touch: when the first of them becomes known, and whether one comes late.
    firsts = exp.select(*_keys(view), exp.alias_(exp.Min(this=_col("__fs_known")), "first_known", quoted=True),
                        exp.alias_(exp.Min(this=_col("__fs_ts")), "first_ts", quoted=True)) \
        .from_("__fs_delta").group_by(*_keys(view))
    newest = exp.select(*_keys(view), _col("__fs_ts")).from_(table.copy()).where(
        exp.EQ(this=_col("__fs_until"), expression=exp.cast(exp.Literal.string("infinity"), "TIMESTAMPTZ")))
    late = exp.Coalesce(this=exp.LTE(this=_col("first_ts", "d"), expression=_col("__fs_ts", "c")),
                        expressions=[exp.false()])
    touched = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("d", quoted=True)),
                         exp.alias_(late, "late", quoted=True)) \
        .from_(_aliased(firsts, "d")).join(_aliased(newest, "c"), on=_same_keys(view, "d", "c"), join_type="LEFT")
    _run(connection, _temp_table("__fs_touched", touched))
    late_keys = exp.select(*_keys(view)).from_("__fs_touched").where(_col("late"))
    if duck.first_row(connection, "SELECT count(*) FROM __fs_touched WHERE late")[0]:
        _recompute(connection, view, table, late_keys)
    on_time = exp.select("*").from_("__fs_touched").where(exp.Not(this=_col("late")))
    _run(connection, exp.Update(
        this=table.copy(), expressions=[exp.EQ(this=_col("__fs_until"), expression=_col("first_known", "t"))],
        from_=exp.From(this=_aliased(on_time, "t")),
        where=exp.Where(this=exp.and_(_same_keys(view, table.name, "t"), exp.EQ(
            this=_col("__fs_until", table.name), expression=exp.cast(exp.Literal.string("infinity"), "TIMESTAMPTZ"))))))
    appended = exp.select("*").from_("__fs_delta").join(_aliased(on_time, "t"),
                                                        on=_same_keys(view, "__fs_delta", "t"), join_type="SEMI")
    _run(connection, exp.Insert(this=table.copy(), expression=validity_intervals(view, appended), by_name=True))
    read = duck.first_row(connection, "SELECT count(*) FROM __fs_delta")[0]
    connection.execute("DROP TABLE __fs_delta")
    connection.execute("DROP TABLE __fs_touched")
    return read


def _recompute(connection: Any, view: FeatureView, table: exp.Table, keys: exp.Select) -> None:
    """Replace the intervals of `keys` with ones computed from their cached and new rows."""
    cached = exp.select(exp.Star(except_=[_col("__fs_until")])).from_(table.copy()).join(
        _aliased(keys, "l"), on=_same_keys(view, table.name, "l"), join_type="SEMI")
    arrived = exp.select("*").from_("__fs_delta").join(_aliased(keys, "l"), on=_same_keys(view, "__fs_delta", "l"),
                                                      join_type="SEMI")
    rows: exp.Query = exp.Union(this=cached, expression=arrived, distinct=False, by_name=True)
    if view.created:  # a late row may win a tie against a cached one
        rows = exp.select("*").from_(_aliased(rows, "u")).qualify(
            tie_winner(view, _keys(view), _col("__fs_ts"), _col(view.created)))
    else:
        refuse_duplicates(connection, view, rows)
    _run(connection, _temp_table("__fs_merged", validity_intervals(view, rows)))
    _run(connection, exp.Delete(this=table.copy(), using=[_aliased(keys, "l")],
                                where=exp.Where(this=_same_keys(view, table.name, "l"))))
    _run(connection, exp.Insert(this=table.copy(), expression=exp.select("*").from_("__fs_merged"), by_name=True))
    connection.execute("DROP TABLE __fs_merged")


def _run(connection: Any, statement: exp.Expr) -> None:
    connection.execute(statement.sql(dialect="duckdb", comments=False))


def _temp_table(name: str, query: exp.Query) -> exp.Create:
    return exp.Create(this=exp.to_table(name, quoted=True), kind="TABLE", expression=query, replace=True,
                      properties=exp.Properties(expressions=[exp.TemporaryProperty()]))


def _keys(view: FeatureView) -> list[exp.Column]:
    return [_col(k) for k in view.entity]


def _same_keys(view: FeatureView, left: str, right: str) -> exp.Expr:
    return exp.and_(*[exp.EQ(this=_col(k, left), expression=_col(k, right)) for k in view.entity])


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table, quoted=True)


def _aliased(query: exp.Query, alias: str) -> exp.Subquery:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))


def _keyed(view: FeatureView, rows: exp.Select) -> exp.Select:
    """Prepared rows without NULL keys, which match no spine row."""
    return rows.where(exp.and_(*[exp.Not(this=exp.Is(this=_col(k, "r"), expression=exp.Null()))
                                 for k in view.entity]))


def _cached_columns(view: FeatureView) -> list[str]:
    """The feature columns, and the tie-break, which later rows must be compared with."""
    return list(dict.fromkeys([*(f.column for f in view.features), *([view.created] if view.created else [])]))


def status(project: Project) -> list[dict[str, Any]]:
    """One entry per cached view version: rows, whether it is current (version) and fresh (sources)."""
    settings = project.settings
    if not settings.offline_database.exists():
        return []
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection:
        if not _has_schema(connection):
            return []
        cursor = connection.execute(f"SELECT * REPLACE (created_at::VARCHAR AS created_at) FROM {_ENTRIES} "
                                    "ORDER BY view, version")
        names = [d[0] for d in cursor.description]
        result = []
        for entry in (dict(zip(names, row)) for row in cursor.fetchall()):  # catalogs of older releases lack columns
            view, version = entry["view"], entry["version"]
            current = view in project.views and project.views[view].version == version
            fresh = current and fingerprint(connection, project, project.views[view]) == entry["fingerprint"]
            result.append({"view": view, "version": version, "rows": entry["rows"], "current": current,
                           "fresh": fresh, "created_at": entry["created_at"], "refresh": entry.get("refresh") or "full",
                           "read_rows": entry.get("read_rows")})
        return result


def clear(project: Project, views: list[str] | None = None) -> int:
    """Drop cached rows (of `views`, or all), and forget that frames read them; returns how many
    entries were dropped."""
    settings = project.settings
    for marker in (settings.state_dir / "cache" / "reads").glob("*__*"):
        if not views or marker.name.rsplit("__", 1)[0] in views:
            marker.unlink(missing_ok=True)
    if not settings.offline_database.exists():
        return 0
    with duck.offline(settings.offline_database, settings.temp_directory) as connection:
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


def _table(view: FeatureView) -> exp.Table:
    return exp.to_table(f"{SCHEMA}.{view.name}__{view.version}", quoted=True)


def _has_schema(connection: Any) -> bool:
    return duck.first_row(connection, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $1 "
                          "AND table_name = 'catalog' AND database_name = current_database()", [SCHEMA])[0] > 0


def _ensure_schema(connection: Any) -> None:
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    connection.execute(f"CREATE TABLE IF NOT EXISTS {_ENTRIES} (view VARCHAR, version VARCHAR, fingerprint VARCHAR, "
                       "rows BIGINT, created_at TIMESTAMPTZ)")
    for column, kind in (("state", "VARCHAR"), ("refresh", "VARCHAR"), ("read_rows", "BIGINT")):  # added later
        connection.execute(f"ALTER TABLE {_ENTRIES} ADD COLUMN IF NOT EXISTS {column} {kind}")
