"""The online store: each snapshot view's latest row per entity in PostgreSQL, each window view's
recent events, and lookups of them.

    runs = materialize(project, until=T)      # → [Run(view="user_daily_stats", mode="incremental", …)]
    OnlineStore(project).lookup({"user_id": [1, 2]}, ["user_daily_stats.*"], at=T)   # → polars

Schema `featurestore_online` holds one typed table per view version, `"<view>__<version>"`:
the entity keys (primary key), `__fs_ts` (the row's time), the tie-break and the features,
readable with plain SQL; the view `"<view>"` names the current version's table. A window view's
table holds its events (`compiler.windows.event_rows`) known within its longest window of the
watermark, indexed on (keys, known-at time), from which a lookup aggregates exactly. The table
`watermarks` records per view version the instant materialization reached and a fingerprint
of the sources it read. A view's rows and its watermark move in one transaction, under an
advisory lock per view, so a killed run leaves nothing behind and concurrent runs queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from sqlglot import exp

from featurestore.cache import (
    added_files,
    duplicate_error,
    files_rewritten,
    prepared_rows,
    refuse_duplicates,
    source_state,
    state_digest,
    window_events,
)
from featurestore.compiler.incremental import latest_rows
from featurestore.compiler.point_in_time import instant
from featurestore.compiler.lookup import LookupView, lookup, lookup_by_key
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import BadRequestError, FeatureStoreError, UnavailableError
from featurestore.project import Project
from featurestore.selection import by_view, select_features, view_named
from featurestore.sources import register_sources
from featurestore.spec import INTEGER_TYPES, FeatureView

__all__ = ["SCHEMA", "OnlineStore", "Run", "last_run", "materialize", "rows_frame", "unmaterialized"]

SCHEMA = "featurestore_online"
_TS = "__fs_ts"
_COPY_ROWS = 65_536  # rows per Arrow batch encoded for a binary COPY
_WAIT_FOR_CONNECTION = 3.0  # seconds a lookup waits for a pooled connection before reporting it unavailable


@dataclass(frozen=True)
class Run:
    """What one view's materialization did."""

    view: str
    version: str
    mode: str  # "backfill" (a new version), "rebuild" (all rows again), "incremental", "unchanged" (nothing to do)
    read: int  # entities whose latest row the run computed
    written: int  # rows inserted or updated online
    late: int  # rows written that became known before the previous watermark: later than promised
    seconds: float
    until: datetime
    quarantined: int = 0  # rows set aside by failed expectations (a window view: entities, whose new events are)


def materialize(project: Project, until: datetime | None = None, views: Iterable[str] | None = None, *,
                lookback: timedelta | None = None, keep_old_versions: bool = False, full: bool = False,
                on_view: Callable[[FeatureView], None] | None = None) -> list[Run]:
    """Bring the online tables up to date with all source data known by `until` (default now).

    An incremental run reads rows that became known since the last run's watermark, and all rows
    of files its source gained (row-wise views), so rows that arrived later than their view's
    `available_after` promised are written and counted as late. Where the sources changed in a way
    the run cannot pin down (a database table), it looks `lookback` (default [online] lookback, 1d)
    before the watermark. A view whose file source lost or changed a file since the last run is
    rebuilt from all its rows, as is every view with `full` (after old rows of a database table changed).
    """
    until = _utc(until) if until is not None else datetime.now(timezone.utc)
    chosen = _views(project, views)
    url = postgres.resolve_url(project.settings.postgres_url, project.settings.state_dir)
    _ensure_schema(url)
    runs = []
    for view in chosen:
        if on_view is not None:
            on_view(view)
        runs.append(_materialize_view(project, url, view, until, lookback or project.settings.online_lookback,
                                      keep_old_versions, full))
    return runs


def unmaterialized(project: Project, url: str) -> list[str]:
    """The views whose current version has no online table yet: `materialize` backfills them."""
    with postgres.connect(url) as connection:
        done = {tuple(row) for row in connection.execute(f"SELECT view, version FROM {SCHEMA}.watermarks")} \
            if _has_watermarks(connection) else set()
    return [v.name for v in project.views.values() if (v.name, v.version) not in done]


def last_run(connection: Any, view: FeatureView) -> tuple | None:
    """The last materialization of the view's current version: (watermark, materialized_at,
    rows_written, late), or None if it has none."""
    if not _has_watermarks(connection):
        return None
    return connection.execute(f"SELECT watermark, materialized_at, rows_written, late FROM {SCHEMA}.watermarks "
                              "WHERE view = %s AND version = %s", [view.name, view.version]).fetchone()


def _has_watermarks(connection: Any) -> bool:
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.watermarks"]).fetchone()[0]


def _views(project: Project, names: Iterable[str] | None) -> list[FeatureView]:
    if names is None:
        return list(project.views.values())
    return [view_named(project.views, name) for name in names]


def _ensure_schema(url: str) -> None:
    with postgres.connect(url) as connection, connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(SCHEMA)])
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.watermarks (view text, version text, "
                           "watermark timestamptz NOT NULL, fingerprint text, rows_written bigint, late bigint, "
                           "materialized_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (view, version))")
        connection.execute(f"ALTER TABLE {SCHEMA}.watermarks ADD COLUMN IF NOT EXISTS state text")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.quarantine (view text, version text, expectation text, "
                           "row jsonb, until timestamptz, quarantined_at timestamptz NOT NULL DEFAULT now())")


def _columns(view: FeatureView) -> list[tuple[str, str]]:
    """The online table's columns (name, PostgreSQL type): keys, time, tie-break, features."""
    types = {c.name: c.type for c in view.columns}
    names = [*view.entity, _TS, *([view.created] if view.created else []),
             *dict.fromkeys(f.column for f in view.features)]
    columns = []
    for name in names:
        try:
            columns.append((name, "timestamptz" if name == _TS else postgres.postgres_type(types[name])))
        except ValueError as exc:
            raise FeatureStoreError(f"view '{view.name}', column '{name}': {exc}") from None
    return columns


def _materialize_view(project: Project, url: str, view: FeatureView, until: datetime, lookback: timedelta,
                      keep_old_versions: bool, full: bool) -> Run:
    from psycopg import sql

    started = time.perf_counter()
    settings = project.settings
    table = f"{view.name}__{view.version}"
    target = sql.Identifier(SCHEMA, table)
    batch_file = settings.temp_directory / f"{table}.{os.getpid()}.csv"
    try:
        with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as offline, \
                postgres.connect(url) as connection, connection.transaction():
            # A concurrent run of this view waits here, then finds the watermark this one leaves.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(f"materialize:{view.name}")])
            previous = connection.execute(f"SELECT watermark, fingerprint, state FROM {SCHEMA}.watermarks "
                                          "WHERE view = %s AND version = %s", [view.name, view.version]).fetchone()
            sources = source_state(offline, project, view)
            state = state_digest(sources)
            if previous is not None and previous[0] >= until and previous[1] == state and not full:
                return Run(view.name, view.version, "unchanged", 0, 0, 0, time.perf_counter() - started, until)
            if previous is None:
                mode = "backfill"
            elif full or files_rewritten(project, json.loads(previous[2] or "{}"), sources):
                mode, previous = "rebuild", None  # old rows changed: only a run over all of them is right
            else:
                mode = "incremental"
            before = previous and (previous[0], json.loads(previous[2] or "{}"))
            with duck.errors_as_feature_store_errors():
                register_sources(offline, project, [view], every_source=False, loaded=set())
                if view.windows:
                    batch, replaced_after = _changed_events(project, view, until, lookback, before, sources)
                    offline.execute(f"CREATE TEMP TABLE __fs_batch AS {batch.sql(dialect='duckdb', comments=False)}")
                    columns = _event_columns(view, offline)
                else:
                    columns = _columns(view)
                    batch = _changed_rows(project, view, [name for name, _ in columns][len(view.entity) + 1:],
                                          until, lookback, before, sources)
                    offline.execute(f"CREATE TEMP TABLE __fs_batch AS {batch.sql(dialect='duckdb', comments=False)}")
                    refuse_duplicates(offline, view, exp.select("*").from_("__fs_batch"))
                read = duck.first_row(offline, "SELECT count(*) FROM __fs_batch")[0]
                quarantine = _check_expectations(project, offline, view, until) if view.expect else []
                kept = duck.first_row(offline, "SELECT count(*) FROM __fs_batch")[0] if quarantine else read
                load = _batch_loader(offline, columns, batch_file)
            cursor = connection.cursor()
            if mode == "rebuild":  # the watermark is this run's, whatever an earlier run reached
                cursor.execute(f"DELETE FROM {SCHEMA}.watermarks WHERE view = %s AND version = %s",
                               [view.name, view.version])
            if previous is None:
                late = 0
                written = _backfill(cursor, view, table, columns, load)
            elif view.windows:
                old = duck.first_row(offline, "SELECT count(*) FROM __fs_batch WHERE __fs_known <= $1",
                                     [previous[0]])[0]
                written = kept
                late = _append_events(cursor, view, table, load, known_by_watermark=old, watermark=previous[0],
                                      replaced_after=replaced_after, until=until)
            else:
                written, late = _upsert(cursor, view, target, columns, load, previous[0])
            if quarantine:  # in the run's transaction: set aside exactly when the rest is written
                cursor.executemany(f"INSERT INTO {SCHEMA}.quarantine (view, version, expectation, row, until) "
                                   "VALUES (%s, %s, %s, %s::jsonb, %s)",
                                   [(view.name, view.version, condition, _json_for_postgres(row), until)
                                    for condition, row in quarantine])
            cursor.execute(f"INSERT INTO {SCHEMA}.watermarks AS w (view, version, watermark, fingerprint, state, "
                           "rows_written, late) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (view, version) DO "
                           "UPDATE SET watermark = greatest(w.watermark, EXCLUDED.watermark), fingerprint = "
                           "EXCLUDED.fingerprint, state = EXCLUDED.state, rows_written = EXCLUDED.rows_written, "
                           "late = EXCLUDED.late, materialized_at = now()",
                           [view.name, view.version, until, state, json.dumps(sources), written, late])
            if mode != "incremental":
                _switch(cursor, view, table, keep_old_versions)
    finally:
        batch_file.unlink(missing_ok=True)
    return Run(view.name, view.version, mode, read, written, late, time.perf_counter() - started, until,
               len(quarantine))


def _check_expectations(project: Project, offline: Any, view: FeatureView, until: datetime) -> list[tuple[str, str]]:
    """Check the view's `expect` conditions on what the run would write, in `__fs_batch`.

    A snapshot view's conditions hold for each row written; a window view's for the features, as
    of `until`, of each entity with events in the batch. A condition that is NULL passes. On a
    failure, with [online] on_failed_expectation = "fail" (the default) the run stops before
    writing anything; with "quarantine" the failing rows (a window view: the entity's new events)
    are left out and returned as (condition, row as JSON) to be recorded.
    """
    checked = "__fs_batch"
    keys = ", ".join(exp.column(k, quoted=True).sql(dialect="duckdb") for k in view.entity)
    if view.windows:  # the features the online store would serve at `until`, per entity in the batch
        from featurestore.compiler.point_in_time import ROW, Spine, point_in_time
        from featurestore.compiler.windows import WindowRows
        from featurestore.spec import Column

        at = instant(until).sql(dialect="duckdb")
        spine = duck.arrow(offline, f"SELECT {keys}, {at} AS __fs_until, CAST(row_number() OVER () AS BIGINT) AS {ROW} "
                                    f"FROM (SELECT DISTINCT {keys} FROM __fs_batch)")
        duck.load_arrow(offline, "__fs_expect_spine", spine)
        types = {c.name: c.type for c in view.columns}
        columns = (*[Column(name=k, type=types[k]) for k in view.entity], Column(name="__fs_until", type="TIMESTAMPTZ"),
                   Column(name=ROW, type="BIGINT"))
        selected = select_features(project.views, [f"{view.name}.*"])
        query = point_in_time(Spine("__fs_expect_spine", columns, "__fs_until"),
                              [WindowRows(view, window_events(project, view), tuple(selected))])
        offline.execute(f"CREATE TEMP TABLE __fs_expected AS {query.sql(dialect='duckdb')}")
        checked = "__fs_expected"
    failing = [(condition, duck.first_row(offline, f"SELECT count(*) FROM {checked} WHERE ({condition}) IS FALSE")[0])
               for condition in view.expect]
    failing = [(condition, count) for condition, count in failing if count]
    if not failing:
        return []
    condition, count = failing[0]
    shown = f"(SELECT {_shown(offline, checked)} FROM {checked}) AS c"
    example = duck.first_row(offline, f"SELECT to_json(c)::VARCHAR FROM {shown} WHERE ({condition}) IS FALSE LIMIT 1")[0]
    what = ("row" if count == 1 else "rows") if not view.windows else \
        ("entity's features" if count == 1 else "entities' features")
    if project.settings.on_failed_expectation == "fail":
        others = "".join(f"; {n:,} fail `{c}`" for c, n in failing[1:])
        raise FeatureStoreError(
            f"{view.path}:{view.line('expect')}: view '{view.name}': {count:,} {what} {'fails' if count == 1 else 'fail'} "
            f"`expect: {condition}` "
            f"(e.g. {example}){others}; nothing was written. Fix the data or the expectation, or set [online] "
            "on_failed_expectation = \"quarantine\" to set failing rows aside")
    any_fails = " OR ".join(f"({c}) IS FALSE" for c, _ in failing)
    first = "CASE " + " ".join(f"WHEN ({c}) IS FALSE THEN {exp.Literal.string(c).sql(dialect='duckdb')}"
                               for c, _ in failing) + " END"
    set_aside = offline.execute(f"SELECT {first}, to_json(c)::VARCHAR FROM {shown} WHERE {any_fails}").fetchall()
    if view.windows:  # the failing entities' events; keys compared NULL-safely
        same = " AND ".join(f"b.{k} IS NOT DISTINCT FROM x.{k}" for k in
                            (exp.to_identifier(k, quoted=True).sql(dialect="duckdb") for k in view.entity))
        offline.execute(f"DELETE FROM __fs_batch AS b WHERE EXISTS (SELECT 1 FROM __fs_expected AS x WHERE {same} "
                        f"AND ({any_fails}))")
    else:
        offline.execute(f"DELETE FROM __fs_batch WHERE {any_fails}")
    return [(condition, row) for condition, row in set_aside]


def _json_for_postgres(row: str) -> str:
    """DuckDB's JSON of a row as jsonb takes it: NaN and ±infinity (not JSON) become null, NUL is dropped."""
    def finite(value: Any) -> Any:
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value.replace("\x00", "") if isinstance(value, str) else value

    return json.dumps(finite(json.loads(row)))


def _shown(offline: Any, table: str) -> str:
    """The columns of `table` a person reads (keys, time as text, features), as a projection."""
    columns = []
    for name, *_ in offline.execute(f"DESCRIBE {table}").fetchall():
        if name == _TS:
            columns.append(f"CAST({_TS} AS VARCHAR) AS {exp.to_identifier('ts', quoted=True).sql(dialect='duckdb')}")
        elif not name.startswith("__fs_"):
            columns.append(exp.to_identifier(name, quoted=True).sql(dialect="duckdb"))
    return ", ".join(columns)


def _changed_rows(project: Project, view: FeatureView, columns: list[str], until: datetime, lookback: timedelta,
                  previous: tuple[datetime, dict[str, Any]] | None, sources: dict[str, Any]) -> exp.Select:
    """Per key, its latest row among those a run must read to reach `until`.

    After a run that reached watermark W over sources in state S:
    - sources still in state S: only rows becoming known after W;
    - a row-wise view whose one file source only gained files: the old files' rows known after W
      and every row of the new files (however late it came);
    - otherwise (a database table changed): rows known after W - `lookback`.
    """
    if previous is None:
        return latest_rows(view, [(prepared_rows(project, view, columns), None)], until)
    watermark, before = previous
    if before == sources:
        return latest_rows(view, [(prepared_rows(project, view, columns), watermark)], until)
    added = added_files(project, view, before, sources)
    if added:
        ((name, new),) = added.items()
        old = {name: [entry[0] for entry in before[name]]}
        return latest_rows(view, [(prepared_rows(project, view, columns, files=old), watermark),
                                  (prepared_rows(project, view, columns, files=added), None)], until)
    return latest_rows(view, [(prepared_rows(project, view, columns), watermark - lookback)], until)


def _changed_events(project: Project, view: FeatureView, until: datetime, lookback: timedelta,
                    previous: tuple[datetime, dict[str, Any]] | None, sources: dict[str, Any]
                    ) -> tuple[exp.Select, datetime | None]:
    """A window view's events a run writes, and after which known-at instant the stored ones are
    replaced by them (None: none are).

    Only events known within the longest window of `until` are kept: a lookup at `until` or later
    reads no older ones. After a run that reached watermark W over sources in state S, as for
    snapshot views (`_changed_rows`): events known after W; a row-wise view's new files whole; or,
    when a database table changed, every event known after W - `lookback`, replacing those stored.
    """
    horizon = _horizon(view, until)

    def known(files: dict[str, list[str]] | None, after: datetime | None) -> exp.Select:
        bounds: list[exp.Expr] = [exp.LTE(this=exp.column("__fs_known", quoted=True), expression=instant(until)),
                                  exp.GTE(this=exp.column("__fs_known", quoted=True), expression=instant(horizon))]
        if after is not None:
            bounds.append(exp.GT(this=exp.column("__fs_known", quoted=True), expression=instant(after)))
        return exp.select("*").from_(exp.Subquery(this=window_events(project, view, files=files), alias=exp.TableAlias(
            this=exp.to_identifier("e", quoted=True)))).where(exp.and_(*bounds))

    if previous is None:
        return known(None, None), None
    watermark, before = previous
    if before == sources:
        return known(None, watermark), None
    added = added_files(project, view, before, sources)
    if added:
        ((name, _),) = added.items()
        old = {name: [entry[0] for entry in before[name]]}
        return exp.union(known(old, watermark), known(added, None), distinct=False), None
    return known(None, watermark - lookback), watermark - lookback


def _event_columns(view: FeatureView, offline: Any) -> list[tuple[str, str]]:
    """A window view's online columns (name, PostgreSQL type): those of its events (`__fs_batch`)."""
    columns = []
    for column in duck.describe_relation(offline, "__fs_batch"):
        try:
            columns.append((column.name, "timestamptz" if column.name in (_TS, "__fs_known")
                            else postgres.postgres_type(column.type)))
        except ValueError as exc:
            raise FeatureStoreError(f"view '{view.name}': an aggregate's input ({column.name}): {exc}") from None
    return columns


def _horizon(view: FeatureView, until: datetime) -> datetime:
    """The oldest known-at time of a window view's events that a lookup from `until` on reads."""
    return until - max(w.length for w in view.windows)


def _append_events(cursor: Any, view: FeatureView, table: str, load: Callable[[Any, str, str], None], *,
                   known_by_watermark: int, watermark: datetime, replaced_after: datetime | None,
                   until: datetime) -> int:
    """Replace the stored events known after `replaced_after` (if any) by the batch, and drop the events
    no lookup from `until` on reads. Returns how many of the batch's events are late: known by the
    previous `watermark` yet not stored before (the batch holds `known_by_watermark` known by then)."""
    from psycopg import sql

    target = sql.Identifier(SCHEMA, table)
    known = sql.Identifier("__fs_known")
    horizon = _horizon(view, until)
    replaced = 0
    if replaced_after is not None:
        cursor.execute(sql.SQL("WITH gone AS (DELETE FROM {} WHERE {} > %s RETURNING {}) "
                               "SELECT count(*) FROM gone WHERE {} <= %s AND {} >= %s").format(
            target, known, known, known, known), [replaced_after, watermark, horizon])
        replaced = int(cursor.fetchone()[0])
    load(cursor, SCHEMA, table)
    cursor.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(target, known), [horizon])
    return max(known_by_watermark - replaced, 0)


def _batch_loader(offline: Any, columns: list[tuple[str, str]], batch_file: Any) -> Callable[[Any, str, str], None]:
    """How the run's batch (DuckDB table __fs_batch) goes into a PostgreSQL table: `load(cursor, schema, table)`.

    Binary COPY of Arrow batches when every column has a binary form (no text for PostgreSQL to
    parse: 3x faster for floats); otherwise (numeric, uuid, interval, time) a CSV file and COPY.
    """
    names = [name for name, _ in columns]
    if all(kind in postgres.BINARY_COPY_TYPES for _, kind in columns):
        select = exp.select(*[exp.cast(exp.column(name, quoted=True), postgres.BINARY_COPY_TYPES[kind][0])
                              for name, kind in columns]).from_("__fs_batch").sql(dialect="duckdb")

        def load_binary(cursor: Any, schema: str, table: str) -> None:
            with duck.errors_as_feature_store_errors():
                postgres.copy_binary(cursor, schema, table, columns, offline.sql(select).to_arrow_reader(_COPY_ROWS))

        return load_binary
    batch_file.parent.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(exp.to_identifier(n, quoted=True).sql(dialect="duckdb") for n in names)
    path = str(batch_file).replace("'", "''")
    offline.execute(f"COPY (SELECT {quoted} FROM __fs_batch) TO '{path}' (FORMAT csv, HEADER false)")
    return lambda cursor, schema, table: postgres.copy_csv(cursor, schema, table, names, batch_file)


def _backfill(cursor: Any, view: FeatureView, table: str, columns: list[tuple[str, str]],
              load: Callable[[Any, str, str], None]) -> int:
    """A new version's table, filled by COPY and then keyed (faster than keeping an index while loading):
    a snapshot view's on its keys, a window view's events indexed on (keys, known-at time)."""
    from psycopg import sql

    target = sql.Identifier(SCHEMA, table)
    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(target))  # and the view on it, if rebuilt
    # Room in each page for the next version of its rows: incremental runs then update in place
    # (HOT, no index writes), which made a 30k-row upsert 2.4x faster here. Events are only appended.
    cursor.execute(sql.SQL("CREATE TABLE {} ({}) WITH (fillfactor = {})").format(target, sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns),
        sql.Literal(100 if view.windows else 70)))
    load(cursor, SCHEMA, table)
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in view.entity)
    if view.windows:
        cursor.execute(sql.SQL("CREATE INDEX ON {} ({}, {})").format(target, keys, sql.Identifier("__fs_known")))
    else:
        cursor.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(target, keys))
    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
    return int(cursor.fetchone()[0])


def _upsert(cursor: Any, view: FeatureView, target: Any, columns: list[tuple[str, str]],
            load: Callable[[Any, str, str], None], watermark: datetime) -> tuple[int, int]:
    """Stage the batch, refuse ties with stored rows, and write rows newer than the stored ones.

    Returns (rows written, of which late: known before `watermark`).
    """
    from psycopg import sql

    names = [name for name, _ in columns]
    cursor.execute(sql.SQL("CREATE TEMP TABLE __fs_staging (LIKE {}) ON COMMIT DROP").format(target))
    load(cursor, "pg_temp", "__fs_staging")
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in view.entity)
    same = sql.SQL(" AND ").join(sql.SQL("s.{k} = t.{k}").format(k=sql.Identifier(k)) for k in view.entity)
    values = [n for n in names if n not in view.entity and n != _TS]
    lag = view.available_after or timedelta(0)
    if not view.created and values:  # the same (keys, time) with other values: a tie across runs
        # Only a row known by the watermark (read again for late rows) can share a stored row's time.
        differ = sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(n)) for n in values),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in values))
        cursor.execute(sql.SQL("SELECT {}, s.{ts}::text FROM __fs_staging s JOIN {} t ON {} AND s.{ts} = t.{ts} "
                               "WHERE s.{ts} + %s <= %s AND {} LIMIT 1").format(
            sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in view.entity),
            target, same, differ, ts=sql.Identifier(_TS)), [lag, watermark])
        tie = cursor.fetchone()
        if tie:
            raise duplicate_error(view, tuple(tie))
    newer = sql.SQL("EXCLUDED.{ts} > t.{ts}").format(ts=sql.Identifier(_TS))
    if view.created:
        newer = sql.SQL("{} OR (EXCLUDED.{ts} = t.{ts} AND EXCLUDED.{c} IS NOT NULL AND (t.{c} IS NULL OR "
                        "EXCLUDED.{c} > t.{c}))").format(newer, ts=sql.Identifier(_TS), c=sql.Identifier(view.created))
    updates = sql.SQL(", ").join(sql.SQL("{n} = EXCLUDED.{n}").format(n=sql.Identifier(n))
                                 for n in names if n not in view.entity)
    cursor.execute(sql.SQL("WITH written AS (INSERT INTO {} AS t SELECT * FROM __fs_staging ON CONFLICT ({}) "
                           "DO UPDATE SET {} WHERE {} RETURNING t.{}) "
                           "SELECT count(*), count(*) FILTER (WHERE {} + %s <= %s) FROM written").format(
        target, keys, updates, newer, sql.Identifier(_TS), sql.Identifier(_TS)), [lag, watermark])
    written, late = cursor.fetchone()
    return int(written), int(late)


def _switch(cursor: Any, view: FeatureView, table: str, keep_old_versions: bool) -> None:
    """Point the view's name at the new version's table; drop older versions unless kept."""
    from psycopg import sql

    name = sql.Identifier(SCHEMA, view.name)
    cursor.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(name))
    cursor.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(name, sql.Identifier(SCHEMA, table)))
    if keep_old_versions:
        return
    cursor.execute(f"SELECT version FROM {SCHEMA}.watermarks WHERE view = %s AND version <> %s",
                   [view.name, view.version])
    for (version,) in cursor.fetchall():
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, f"{view.name}__{version}")))
    cursor.execute(f"DELETE FROM {SCHEMA}.watermarks WHERE view = %s AND version <> %s", [view.name, view.version])


class OnlineStore:
    """Lookups of materialized views, over a small pool of prepared connections."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._pool: Any = None
        self._async_pool: Any = None
        self._async_loop: Any = None  # the event loop the asynchronous pool belongs to
        self._plans: dict[Any, tuple[str, list[tuple[str, str]], Any, list[FeatureView], bool]] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        self.close()
        if self._async_pool is not None and self._async_loop is asyncio.get_running_loop():
            await self._async_pool.close()
        self._async_pool = self._async_loop = None

    def lookup(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
               full_names: bool = False, columns: bool = False) -> Any:
        """One row per requested entity, in request order: its key columns, then the features as of `at`.

        A polars DataFrame, or with `columns` a dict of column name to list (what a JSON answer needs).
        """
        request = self._request(entities, features, at, full_names)
        rows = self._fetch(request.statement, request.parameters, request.views) if request.count else []
        return request.result(rows, columns)

    async def lookup_async(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
                           full_names: bool = False, columns: bool = False) -> Any:
        """`lookup` for asyncio callers (the HTTP service), on an asynchronous connection pool."""
        request = self._request(entities, features, at, full_names)
        rows = await self._fetch_async(request.statement, request.parameters, request.views) if request.count else []
        return request.result(rows, columns)

    def _request(self, entities: Any, features: Iterable[str] | str, at: datetime | None,
                 full_names: bool) -> "_Request":
        requested = _entity_lists(entities)
        plan_key = (tuple([features] if isinstance(features, str) else features), full_names, tuple(requested))
        if plan_key not in self._plans:
            self._plans[plan_key] = self._plan(features, full_names, list(requested))
        statement, keys, schema, views, by_key = self._plans[plan_key]
        count = _check_entities(requested, keys, views)
        parameters: dict[str, Any] = {f"k{i}": requested[name] for i, (name, _) in enumerate(keys)}
        parameters["at"] = _utc(at) if at is not None else datetime.now(timezone.utc)
        return _Request(statement, parameters, schema, views, by_key, count)

    def _plan(self, features: Iterable[str] | str, full_names: bool, given: list[str]) -> Any:
        project = self._project
        selected = select_features(project.views, features, full_names=full_names, taken=given)
        grouped = by_view(selected)
        views = [project.views[name] for name in grouped]
        keys: list[tuple[str, str]] = []
        for view in views:
            types = {c.name: c.type for c in view.columns}
            for key in view.entity:
                if key not in given:
                    raise BadRequestError(f"the entities lack '{key}', the entity key of view '{view.name}' "
                                            f"(given: {', '.join(given) or 'none'})")
                if key not in dict(keys):
                    keys.append((key, types[key]))
        items = [LookupView(v, (SCHEMA, f"{v.name}__{v.version}"), tuple(grouped[v.name]), tuple(
            (c.name, postgres.postgres_type(c.type)) for c in v.columns if v.windows and c.name not in v.entity))
            for v in views]
        pg_keys = [(name, postgres.postgres_type(kind)) for name, kind in keys]
        # One view with one integer or text key (the usual serving lookup) has a cheaper statement.
        by_key = len(items) == 1 and len(keys) == 1 and not views[0].windows and (
            keys[0][1].upper() in INTEGER_TYPES or keys[0][1] == "VARCHAR")
        query = lookup_by_key(items[0], pg_keys[0][1]) if by_key else lookup(items, pg_keys)
        columns = keys + [(s.output, s.feature.type) for item in items for s in item.selected]
        return query.sql(dialect="postgres"), keys, _polars_schema(columns), views, by_key

    def warm_up(self) -> None:
        """Find the result type of every column of every view now rather than in a first lookup."""
        _polars_schema([(f"c{i}", kind) for i, kind in enumerate(
            {c.type for view in self._project.views.values() for c in view.columns})])

    def ping(self) -> None:
        """Raise UnavailableError unless PostgreSQL answers a trivial query."""
        self._fetch("SELECT 1", {}, [])

    async def ping_async(self) -> None:
        await self._fetch_async("SELECT 1", {}, [])

    def _url(self) -> str:
        settings = self._project.settings
        return postgres.resolve_url(settings.postgres_url, settings.state_dir)

    def _fetch(self, statement: str, parameters: dict[str, Any], views: list[FeatureView]) -> list[tuple]:
        if self._pool is None:
            self._pool = postgres.pool(self._url())
        with _database_errors(views):
            with self._pool.connection(timeout=_WAIT_FOR_CONNECTION) as connection:
                return connection.execute(statement, parameters).fetchall()

    async def _fetch_async(self, statement: str, parameters: dict[str, Any], views: list[FeatureView]) -> list[tuple]:
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop:  # a pool works in the event loop it was opened in
            self._async_pool, self._async_loop = await postgres.async_pool(self._url()), loop
        with _database_errors(views):
            async with self._async_pool.connection(timeout=_WAIT_FOR_CONNECTION) as connection:
                cursor = await connection.execute(statement, parameters)
                return await cursor.fetchall()


@dataclass(frozen=True)
class _Request:
    """A lookup ready to run: its statement and parameters, and how to shape the rows it returns."""

    statement: str
    parameters: dict[str, Any]
    schema: Any
    views: list[FeatureView]
    by_key: bool
    count: int

    def result(self, rows: list[tuple], columns: bool) -> Any:
        if self.by_key:  # rows came back by key, in no order: put them in request order, NULLs for the rest
            found = {row[0]: row for row in rows}
            missing = (None,) * (len(self.schema) - 1)
            rows = [found.get(value) or (value, *missing) for value in self.parameters["k0"]]
        if columns:
            names = list(self.schema)
            values = list(zip(*rows)) if rows else [()] * len(names)
            return {name: list(column) for name, column in zip(names, values)}
        return rows_frame(rows, self.schema)


@contextmanager
def _database_errors(views: list[FeatureView]) -> Iterator[None]:
    """psycopg's errors as the store's: what a caller can fix, or that the online store is unavailable."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        yield
    except psycopg.errors.UndefinedTable:
        missing = ", ".join(f"'{v.name}'" for v in views)
        raise UnavailableError(f"a view of {missing} is not materialized in its current version; run "
                               "`featurestore materialize`") from None
    except psycopg.DataError as exc:  # e.g. a key beyond its column's range
        raise BadRequestError(f"an entity key does not fit its column: {str(exc).strip()}") from None
    except (psycopg.OperationalError, PoolTimeout) as exc:  # the pool reconnects once the server is back
        raise UnavailableError(f"PostgreSQL is unreachable: {str(exc).strip()}") from None


def _entity_lists(entities: Any) -> dict[str, list[Any]]:
    """A mapping of key column to values, from a mapping of lists or a DataFrame/Arrow table."""
    if isinstance(entities, Mapping):
        result = {}
        for name, values in entities.items():
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise BadRequestError(f"entities['{name}'] must be a list of values, one per entity")
            result[str(name)] = values.tolist() if hasattr(values, "tolist") else list(values)  # numpy → Python
        return result
    module = type(entities).__module__.split(".")[0]
    if module in ("polars", "pandas", "pyarrow"):
        import polars as pl

        frame = entities if module == "polars" else pl.from_pandas(entities) if module == "pandas" \
            else pl.from_arrow(entities)
        return {name: frame[name].to_list() for name in frame.columns}
    raise BadRequestError(f"entities are a mapping of key column to a list of values, or a DataFrame; "
                            f"got {type(entities).__name__}")


_KEY_TYPES = {"integers": (int, type(None)), "strings": (str, type(None))}  # exact types: a bool is no integer


def _check_entities(requested: dict[str, list[Any]], keys: list[tuple[str, str]], views: list[FeatureView]) -> int:
    lengths = {name: len(values) for name, values in requested.items()}
    if len(set(lengths.values())) > 1:
        raise BadRequestError("the entity key lists differ in length: " +
                                ", ".join(f"{name} has {n}" for name, n in lengths.items()))
    for name, kind in keys:
        wanted = "integers" if kind.upper() in INTEGER_TYPES else "strings" if kind.upper() == "VARCHAR" else None
        if wanted is None:
            continue
        allowed = _KEY_TYPES[wanted]
        values = requested[name]
        if all(type(value) in allowed for value in values):  # the usual case, fast
            continue
        wrong = [(i, v) for i, v in enumerate(values) if v is not None and
                 (not isinstance(v, allowed[0]) or isinstance(v, bool))]  # subclasses pass, but a bool is no key
        if not wrong:
            continue
        index, value = wrong[0]
        owner = next(v.name for v in views if name in v.entity)
        raise BadRequestError(f"entities['{name}'][{index}] is {value!r} ({type(value).__name__}), but "
                                f"view '{owner}' keys '{name}' as {kind}: pass {wanted}")
    return len(requested[keys[0][0]]) if keys else 0


def rows_frame(rows: list[tuple], schema: Any) -> Any:
    """A polars DataFrame of `rows` with `schema`.

    Through polars' row constructor itself when it is there: the public one re-checks the schema
    on every call, which is most of a one-entity lookup's time in Python (47 µs against 9).
    """
    import polars as pl

    try:
        from polars._plr import PyDataFrame

        return pl.DataFrame._from_pydf(PyDataFrame.from_rows(rows, schema=schema))
    except (ImportError, AttributeError, TypeError):  # another polars release: the public way
        return pl.DataFrame(rows, schema=schema, orient="row")


def _polars_schema(columns: list[tuple[str, str]]) -> Any:
    """The polars types a training frame gives columns of these DuckDB types."""
    import polars as pl
    import pyarrow as pa

    empty = pa.table({name: pa.array([], _arrow_type(kind)) for name, kind in columns})
    return pl.from_arrow(empty).schema


_ARROW: dict[str, Any] = {}


def _arrow_type(duckdb_type: str) -> Any:
    """The Arrow type DuckDB gives a column of `duckdb_type`, as a training frame has it (zoned times in UTC)."""
    import pyarrow as pa

    if duckdb_type not in _ARROW:
        import duckdb

        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            kind = connection.sql(f"SELECT NULL::{duckdb_type} AS x").to_arrow_table().schema.field("x").type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            kind = pa.timestamp(kind.unit, tz="UTC")
        _ARROW[duckdb_type] = kind
    return _ARROW[duckdb_type]


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise BadRequestError(f"expected a datetime, got {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
