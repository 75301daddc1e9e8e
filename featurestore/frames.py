"""Training frames: a spine, point-in-time joined with features, and immutable snapshots of them.

    frame = training_frame(project, spine, ["user_daily_stats.*"], timestamp="ts")
    frame.to_polars(); frame.save_snapshot("snapshots/fraud_v3")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from sqlglot import exp

from featurestore.cache import (
    cache_state,
    cached_table,
    duplicate_error,
    fill,
    prepared_rows,
    read_before,
    sources_of,
    window_events,
)
from featurestore.compiler.point_in_time import (
    ROW,
    Spine,
    ViewRows,
    duplicate_fix,
    duplicate_message,
    duplicates,
    point_in_time,
    taken_columns,
    ties,
)
from featurestore.compiler.render import nulls_first_by_default, write
from featurestore.compiler.shape import key_shape
from featurestore.compiler.windows import WindowRows, aggregates, by_totals, output_column
from featurestore.engines import ENGINES
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError, Problem, did_you_mean
from featurestore import planner
from featurestore.planner import Choice, Shape, forced
from featurestore.project import Project
from featurestore.selection import Selected, by_view, select_features
from featurestore.sources import register_sources
from featurestore.spec import INTEGER_TYPES, Column

__all__ = ["TrainingFrame", "data_problems", "frame_sql", "load_snapshot", "training_frame"]

_STRINGS = {"VARCHAR"}
MANIFEST = "manifest.json"
DATA = "frame.parquet"


class TrainingFrame:
    """The spine's rows and columns, in its order, then the features; and how it was made."""

    def __init__(self, table: Any, sql: str, info: dict[str, Any], spine_columns: int = 0) -> None:
        self._table = table
        self.sql = sql
        self.info = info
        self._spine_columns = spine_columns  # the spine's hash is taken when a snapshot needs it

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"TrainingFrame({self._table.num_rows} rows, columns={self._table.column_names})"

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def to_arrow(self) -> Any:
        return self._table

    def to_polars(self) -> Any:
        import polars as pl

        return pl.from_arrow(self._table)

    def to_pandas(self) -> Any:
        """pandas with nullable dtypes, so integer and boolean columns with NULLs keep their type."""
        import pandas as pd
        import pyarrow as pa

        mapping = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                   pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                   pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
                   pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
        return self._table.to_pandas(types_mapper=mapping.get)

    def content_hash(self) -> str:
        return _content_hash(self._table)

    def save_snapshot(self, path: str | Path) -> Path:
        """Write the frame as Parquet plus a manifest; refuses to overwrite an existing snapshot."""
        import pyarrow.parquet as pq

        folder = Path(path)
        if (folder / MANIFEST).exists():
            raise FeatureStoreError(f"a snapshot already exists in {folder}; snapshots are immutable, choose a new path")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self._table, folder / DATA)
        if "spine_hash" not in self.info:
            self.info["spine_hash"] = _content_hash(self._table.select(range(self._spine_columns)))
        manifest = {
            **self.info,
            "rows": self._table.num_rows,
            "columns": self._table.column_names,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "content_hash": self.content_hash(),
            "sql": self.sql,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        return folder


def load_snapshot(path: str | Path) -> TrainingFrame:
    """A saved frame, after checking that its data still matches the manifest's content hash."""
    import pyarrow.parquet as pq

    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        table = pq.read_table(folder / DATA)
    except (OSError, ValueError) as exc:
        raise FeatureStoreError(f"{folder} is not a readable snapshot: {exc}") from None
    actual = _content_hash(table)
    if actual != manifest.get("content_hash"):
        raise FeatureStoreError(f"snapshot {folder} was modified after it was saved: its content hash is {actual}, "
                                f"the manifest says {manifest.get('content_hash')}; rebuild it from the definitions")
    info = {k: v for k, v in manifest.items() if k not in ("sql",)}
    return TrainingFrame(table, manifest.get("sql", ""), info)


def training_frame(project: Project, spine: Any, features: Iterable[str] | str, *, timestamp: str = "ts",
                   full_names: bool = False, cache: bool = True, plan: str = "auto", engine: str = "duckdb",
                   spark: Any = None) -> TrainingFrame:
    """Every spine row with the selected features as of its `timestamp` (SEMANTICS.md).

    With `cache`, views whose cached rows are fresh are joined from the cache; the others are
    computed inline, or first cached when the project's `[offline] cache` setting says so. `plan` chooses how uncached
    views are joined (auto; asof, ranked or last for snapshot views; join, frames or totals, running
    totals for counts and integer sums, for window views); it exists for benchmarks and tests. `engine="spark"` runs the join on Apache Spark
    (`spark`, a SparkSession, or a local one) from the same definitions, with the same answer and
    types; the spine is read here as for DuckDB, and the cache is DuckDB's, so it is not used.
    """
    if engine not in ENGINES:
        raise FeatureStoreError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    plans = _SPARK_PLANS if engine == "spark" else _DUCKDB_PLANS
    if plan not in plans:
        only = " runs only on DuckDB" if plan in _DUCKDB_PLANS else " is not a plan"
        raise FeatureStoreError(f"plan '{plan}'{only}; with engine '{engine}' choose one of {', '.join(plans)}")
    settings = project.settings
    cached = _cache_views(project, features, full_names) if cache and engine == "duckdb" else set()
    # Frames only read the offline database, so several processes can build frames at once.
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection:
        with duck.errors_as_feature_store_errors():
            loaded: set[str] = set()
            if isinstance(spine, str) and not spine.strip().lower().endswith(".parquet"):
                register_sources(connection, project, [], every_source=True, loaded=loaded)
            spine_table = _spine_arrow(spine, connection, project)
            spine_columns = _describe_spine(connection, spine_table)
            selected = select_features(project.views, features, full_names=full_names, taken=spine_table.column_names)
            grouped = by_view(selected)
            views = [project.views[name] for name in grouped]
            _check_spine(spine_columns, timestamp, views)
            if engine == "spark":
                result, sql, joins, choices = _spark_frame(connection, project, spine_table, spine_columns, timestamp, grouped,
                                                  plan, spark, loaded)
                result = _as_duckdb_types(result, _feature_schema(connection, result.column_names, joins))
            else:
                result, sql, joins, choices = _duckdb_frame(connection, project, spine_table, spine_columns,
                                                            timestamp, grouped, plan, loaded, cached=cached)
    hidden = {name for number, item in enumerate(joins) for name in taken_columns(item, number)}
    table = spine_table
    for name in result.column_names:
        if name not in hidden:
            table = table.append_column(name, _utc(result.column(name)))
    info = {
        "features": [s.feature.qualified for s in selected],
        "view_versions": {v.name: v.version for v in views},
        "timestamp": timestamp,
        "engine": engine,
        "plans": [choice.as_dict() for choice in choices],
    }
    return TrainingFrame(table, sql, info, spine_table.num_columns)


def _duckdb_frame(connection: Any, project: Project, spine_table: Any, spine_columns: tuple[Column, ...],
                  timestamp: str, grouped: dict[str, list[Selected]], plan: str, loaded: set[str], *,
                  cached: set[str]) -> tuple[Any, str, list[Any], list[Choice]]:
    """The features of every spine row, computed by DuckDB (one statement): the result, its SQL and
    the joins. Views named in `cached` are joined from their cached rows, the others computed from
    their sources; `loaded` names the sources already registered in `connection` (a SQL spine reads them)."""
    numbered = spine_table.append_column(ROW, _row_numbers(spine_table.num_rows))
    duck.load_arrow(connection, "__fs_spine", numbered)
    joins: list[Any] = []
    choices: list[Choice] = []
    for name, items in grouped.items():
        view = project.views[name]
        if view.windows:
            register_sources(connection, project, [view], every_source=False, loaded=loaded)
            events = window_events(project, view)
            choice = _window_choice(connection, view, events, items, plan)
            joins.append(WindowRows(view, events, tuple(items), choice.plans, bucket=choice.bucket,
                                    totals=frozenset(choice.totals)))
        elif name in cached:
            rows = exp.select("*").from_(cached_table(view))
            choice = _snapshot_choice(connection, view, rows, plan if plan == "auto" else "intervals",
                                      cached=True)
            joins.append(ViewRows(view, rows, tuple(items), prepared=True, join=choice.plan, bucket=choice.bucket))
        else:
            register_sources(connection, project, [view], every_source=False, loaded=loaded)
            rows = prepared_rows(project, view, list(dict.fromkeys(f.column for f in view.features)))
            choice = _snapshot_choice(connection, view, rows, plan)
            joins.append(ViewRows(view, rows, tuple(items), prepared=True, join=choice.plan, bucket=choice.bucket))
        choices.append(choice)
    query = point_in_time(Spine("__fs_spine", (*spine_columns, Column(name=ROW, type="BIGINT")), timestamp),
                          joins, passthrough=False)
    sql = plan_header(choices) + query.sql(dialect="duckdb", pretty=True, comments=False)
    result = duck.arrow(connection, sql)
    _refuse_ties(lambda name, table: duck.load_arrow(connection, name, table),
                 lambda query: duck.first_row(connection, query.sql(dialect="duckdb")), joins, result,
                 repeated=result.num_rows != spine_table.num_rows)
    return result, sql, joins, choices


_SPARK_SNAPSHOT_PLANS = {"auto": "last", "last": "last", "ranked": "ranked"}  # where DuckDB cannot measure
_SPARK_WINDOW_PLANS = {"auto": "frames", "frames": "frames", "join": "join"}
_SPARK_PLANS = tuple(dict.fromkeys([*_SPARK_SNAPSHOT_PLANS, *_SPARK_WINDOW_PLANS]))
_DUCKDB_PLANS = ("auto", "asof", "ranked", "last", "join", "frames", "totals")


def _spark_frame(connection: Any, project: Project, spine_table: Any, spine_columns: tuple[Column, ...],
                 timestamp: str, grouped: dict[str, list[Selected]], plan: str, spark: Any,
                 loaded: set[str]) -> tuple[Any, str, list[Any], list[Choice]]:
    """The features of every spine row, computed by Spark from the same trees, in Spark SQL.

    Spark has no ASOF join: snapshot views take the "last" join or "ranked", window views the
    "frames" or "join" plan. With plan "auto", the choice is DuckDB's, from the same cheap pass
    over the data, when DuckDB can read all of a view's sources (Parquet files); else the plans
    whose cost does not depend on the data's shape ("last", "frames"). Only the spine's keys and
    time go to Spark, the time as UTC microseconds (floored, as DuckDB reads a finer time).
    """
    import uuid

    from featurestore.engines import spark as sparks

    views = [project.views[name] for name in grouped]
    keys = list(dict.fromkeys(k for view in views for k in view.entity))
    types = {c.name: c.type for c in spine_columns}
    sent = _spine_for_spark(spine_table, keys, timestamp)
    spine_name = f"__fs_spine_{uuid.uuid4().hex[:12]}"
    spine_of_keys = (*[Column(name=k, type=types[k]) for k in keys], Column(name=timestamp, type="TIMESTAMPTZ"),
                     Column(name=ROW, type="BIGINT"))
    if plan == "auto":
        duck.load_arrow(connection, "__fs_spine", spine_table.append_column(ROW, _row_numbers(spine_table.num_rows)))
    with sparks.session(spark) as session:
        _check_spark_sources(project, views, session)
        joins: list[Any] = []
        choices: list[Choice] = []
        for view in views:
            items = tuple(grouped[view.name])
            measured = plan == "auto" and _parquet_only(project, view)
            if measured:
                register_sources(connection, project, [view], every_source=False, loaded=loaded)
            if view.windows:
                events = window_events(project, view, dialect="spark")
                write(events, "spark", view)  # what Spark cannot run is an error naming the view
                choice = _window_choice(connection, view, window_events(project, view), items, plan, buckets=False) \
                    if measured else forced(view, "windows", {w.label: _SPARK_WINDOW_PLANS.get(plan, "frames")
                                                               for w in view.windows})
                joins.append(WindowRows(view, events, items, choice.plans))
                choices.append(choice)
                continue
            columns_read = list(dict.fromkeys(f.column for f in view.features))
            rows = prepared_rows(project, view, columns_read, dialect="spark")
            write(rows, "spark", view)
            choice = _snapshot_choice(connection, view, prepared_rows(project, view, columns_read), plan, buckets=False) \
                if measured else forced(view, _SPARK_SNAPSHOT_PLANS.get(plan, "last"))
            if choice.plan != "ranked" or view.ttl is None:  # Spark has no ASOF join: the portable one
                choice = replace(choice, plan="last")
            joins.append(ViewRows(view, rows, items, prepared=True, join=choice.plan))
            choices.append(choice)
        query = point_in_time(Spine(spine_name, spine_of_keys, timestamp), joins, passthrough=False, dialect="spark")
        sql = plan_header(choices) + write(query, "spark")
        sparks.load_arrow(session, spine_name, sent)
        try:
            result = sparks.arrow(session, sql)
            _refuse_ties(lambda name, table: sparks.load_arrow(session, name, table),
                         lambda query: _first(sparks.arrow(session, write(query, "spark"))), joins, result,
                         repeated=result.num_rows != spine_table.num_rows, name=f"{spine_name}_result")
        finally:
            with contextlib.suppress(Exception):  # a session that died keeps nothing, and the error above matters
                session.catalog.dropTempView(spine_name)
                session.catalog.dropTempView(f"{spine_name}_result")
    return result, sql, joins, choices


def _as_duckdb_types(result: Any, schema: Any) -> Any:
    """Spark's result in the types DuckDB gives the same frame; a value that does not fit is an error."""
    import pyarrow as pa

    columns = []
    for field in schema:
        try:
            columns.append(result.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FeatureStoreError(f"Spark's value of '{field.name}' does not fit its type {field.type} "
                                    f"({exc}); build this frame with engine 'duckdb'") from None
    return pa.Table.from_arrays(columns, schema=schema)


def frame_sql(project: Project, features: Iterable[str] | str, *, dialect: str = "duckdb", spine: str = "spine",
              timestamp: str = "ts", full_names: bool = False) -> str:
    """The SQL of a training frame in `dialect`, over a spine in the table `spine` holding the views'
    entity keys and a time column `timestamp` (UTC; a timestamp with time zone, or naive UTC).

    It yields the spine's keys and time, then the features, one row per spine row, ordered by time
    and keys. Snapshot views are joined by ASOF on DuckDB and by the portable "last" join elsewhere;
    window views by window frames on DuckDB and Spark, and by a range join elsewhere. Feature
    types are the engine's own outside DuckDB. The latest value of a window (arg_max, last) is
    written for DuckDB and Spark only; elsewhere it is an error naming the view.
    """
    views = [project.views[name] for name in by_view(select_features(project.views, features))]
    keys = list(dict.fromkeys(k for view in views for k in view.entity))
    # Again, now that the spine's columns are known: a feature named like one is the usual error.
    grouped = by_view(select_features(project.views, features, full_names=full_names, taken=[*keys, timestamp]))
    joins: list[Any] = []
    for view in views:
        items = tuple(grouped[view.name])
        if view.windows:
            if dialect not in ("duckdb", "spark") and any(a.kind == "latest" for a in aggregates(view)):
                raise FeatureStoreError(f"{view.path}: view '{view.name}' takes a latest value (arg_max or last), "
                                        f"which featurestore writes for duckdb and spark only; compile the frame for "
                                        f"one of those, or select other features of the view")
            events = window_events(project, view, dialect=dialect)
            write(events, dialect, view)
            plan = "frames" if dialect in ("duckdb", "spark") else "join"
            joins.append(WindowRows(view, events, items, {w.label: plan for w in view.windows}))
            continue
        rows = prepared_rows(project, view, list(dict.fromkeys(f.column for f in view.features)), dialect=dialect)
        write(rows, dialect, view)
        joins.append(ViewRows(view, rows, items, prepared=True, join="asof" if dialect == "duckdb" else "last"))
    columns = (*[Column(name=k, type="") for k in keys], Column(name=timestamp, type="TIMESTAMPTZ"),
               Column(name=ROW, type="BIGINT"))
    query = point_in_time(Spine("__fs_spine", columns, timestamp), joins, dialect=dialect)
    hidden = {name for number, item in enumerate(joins) for name in taken_columns(item, number)}
    query.set("expressions", [e for e in query.expressions if e.alias_or_name not in hidden])
    # Rows in time order, NULLs wherever the engine puts them (they get no features).
    numbered = exp.select(*[exp.column(c, quoted=True) for c in (*keys, timestamp)], exp.alias_(
        exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[
            exp.Ordered(this=exp.column(c, quoted=True), nulls_first=nulls_first_by_default(dialect, False))
            for c in (timestamp, *keys)])), ROW, quoted=True)) \
        .from_(exp.to_table(spine))
    query.args["with_"].expressions.insert(0, exp.CTE(this=numbered, alias=exp.TableAlias(
        this=exp.to_identifier("__fs_spine", quoted=True))))
    return _UTC_HEADERS[dialect] + write(query, dialect)


# Times without a zone are UTC here: the frame's casts read them in the session's time zone.
_UTC_HEADERS = {
    "duckdb": "-- Run with the session time zone UTC: SET TimeZone = 'UTC';\n",
    "postgres": "-- Run with the session time zone UTC: SET TIME ZONE 'UTC';\n",
    "spark": "-- Run with the session time zone UTC (spark.sql.session.timeZone=UTC).\n",
    "trino": "-- Run with the session time zone UTC: SET TIME ZONE 'UTC';\n",
    "snowflake": "-- Run with the session time zone UTC: ALTER SESSION SET TIMEZONE = 'UTC';\n",
    "bigquery": "-- BigQuery's TIMESTAMP is UTC; naive DATETIME spine times are read as UTC.\n",
}


def _parquet_only(project: Project, view: Any) -> bool:
    """Whether every source the view reads is a Parquet file source (DuckDB and Spark read the same files)."""
    from featurestore.config import FileSource

    sources = project.settings.sources
    return all(isinstance(sources.get(name), FileSource) and sources[name].format == "parquet"
               for name in sources_of(project, view))


def _first(table: Any) -> tuple | None:
    rows = table.slice(0, 1).to_pylist()
    return tuple(rows[0].values()) if rows else None


def _spine_for_spark(spine: Any, keys: list[str], timestamp: str) -> Any:
    """The spine's keys, its time as UTC microseconds (a naive time is UTC; a finer one floored;
    a date is its midnight UTC) and the row number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    time = spine.column(timestamp)
    if pa.types.is_null(time.type):
        time = time.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_date(time.type):
        time = time.cast(pa.timestamp("us"))
    if time.type.unit == "ns":
        time = pc.floor_temporal(time, unit="microsecond")
    time = time.cast(pa.timestamp("us", tz=time.type.tz)).cast(pa.timestamp("us", tz="UTC")) \
        if time.type.tz is not None else pc.assume_timezone(time.cast(pa.timestamp("us")), "UTC")
    return pa.table([*(spine.column(k) for k in keys), time, _row_numbers(spine.num_rows)],
                    names=[*keys, timestamp, ROW])


def _check_spark_sources(project: Project, views: list[Any], spark: Any) -> None:
    """Each source the views read must be a Parquet file source or a table in the session's catalog,
    and times must be in microseconds (Spark has no nanoseconds and refuses them in Parquet)."""
    from featurestore.config import FileSource
    from featurestore.engines import spark as sparks

    for view in views:
        if "_NS" in (view.event_time_type or "").upper() or any(
                c.name == view.timestamp and "_NS" in c.type.upper() for c in view.columns):
            raise FeatureStoreError(f"{view.path}: view '{view.name}' has nanosecond times in '{view.timestamp}', "
                                    "which Spark cannot read; store them in microseconds, or use engine 'duckdb'")
        for name in sorted(sources_of(project, view)):
            source = project.settings.sources.get(name)
            if source is None or (isinstance(source, FileSource) and source.format == "parquet"):
                continue
            if not sparks.has_table(spark, name):
                kind = f"a {source.format} file" if isinstance(source, FileSource) else f"a {source.kind} table"
                raise FeatureStoreError(
                    f"view '{view.name}' reads source '{name}', {kind}, which Spark does not read in place (it reads "
                    f"Parquet sources); register a table or temporary view named '{name}' in the Spark session "
                    f"(e.g. spark.read.csv(...).createOrReplaceTempView('{name}')), or use engine 'duckdb'")


def _feature_schema(connection: Any, names: list[str], joins: list[Any]) -> Any:
    """The Arrow types DuckDB gives each result column: a feature has its view column's type."""
    import pyarrow as pa

    types: dict[str, str] = {}
    for number, item in enumerate(joins):
        view_types = {c.name: c.type for c in item.view.columns}
        for selected in item.selected:
            types[selected.output] = view_types[selected.feature.column]
        for column, name in zip((*item.view.entity, "__fs_ts"), taken_columns(item, number)):
            types[name] = view_types.get(column, "TIMESTAMPTZ")
    arrow_types = duck.arrow_types(connection, [types[name] for name in names])
    return pa.schema([pa.field(name, kind) for name, kind in zip(names, arrow_types)])


def _snapshot_choice(connection: Any, view: Any, rows: exp.Query, plan: str, *, cached: bool = False,
                     buckets: bool = True) -> Choice:
    """How the view's rows are joined: the cheapest plan for the shape of the rows and the spine (one
    cheap pass, `compiler.shape.key_shape`), or `plan` if one was asked for ("ranked": the cheaper of
    its two forms; a window view's plan means "auto" here). Cached rows are validity intervals: a hash
    join on them ("intervals") or an ASOF join."""
    plan = "auto" if plan in ("join", "frames", "totals") else plan
    if plan not in ("auto", "ranked") or (plan == "ranked" and view.ttl is None):
        return forced(view, "asof" if plan == "ranked" else plan)
    widths = planner.cached_widths(view) if cached else planner.snapshot_widths(view)
    shape = Shape.of(duck.first_row(connection, key_shape(list(view.entity), rows, "__fs_ts", "__fs_spine", widths)
                                    .sql(dialect="duckdb")), widths)
    if cached:
        return planner.cached_plan(view, shape, buckets=buckets)
    choice = planner.snapshot_plan(view, shape, buckets=buckets, only=None if plan == "auto" else plan)
    return choice if plan == "auto" else replace(choice, reason="asked for")


def _window_choice(connection: Any, view: Any, events: exp.Query, items: list[Selected] | tuple[Selected, ...],
                   plan: str, *, buckets: bool = True) -> Choice:
    """Per window of a window view, "join" or "frames", and running totals for the counts and integer
    sums where cheaper (DuckDB): the cheapest for the shape of the events and the spine (one cheap
    pass), or `plan` if one was asked for ("join": in time buckets when they pay; "totals": running
    totals wherever exact; a snapshot view's plan means "auto" here)."""
    plan = plan if plan in ("join", "frames", "totals") else "auto"
    if plan == "frames" or (plan == "join" and not buckets):
        return forced(view, "windows", {w.label: plan for w in view.windows})
    widths = planner.window_widths(view)
    shape = Shape.of(duck.first_row(connection, key_shape(list(view.entity), events, "__fs_known", "__fs_spine", widths)
                                    .sql(dialect="duckdb")), widths)
    counts = Counter(selected.feature.window.label for selected in items if selected.feature.window is not None)
    totals: dict[str, list[str]] = {}
    if buckets:  # DuckDB: ASOF joins
        by_column = {a.column: a for a in aggregates(view)}
        for selected in items:
            aggregate, window = by_column[selected.feature.column], selected.feature.window
            if window is not None and by_totals(view, aggregate):
                totals.setdefault(window.label, []).append(output_column(aggregate, window.label))
    choice = planner.window_plans(view, shape, counts, totals=totals, buckets=buckets, only_join=plan == "join",
                                  only_totals=plan == "totals")
    return choice if plan == "auto" else replace(choice, reason="asked for")


def plan_header(choices: list[Choice]) -> str:
    """SQL comment lines naming each view's plan and the estimates that chose it."""
    return "".join(f"-- plan {choice.describe()}\n" for choice in choices)


def _refuse_ties(load: Callable[[str, Any], None], first: Callable[[exp.Query], tuple | None], joins: list[Any],
                 result: Any, *, repeated: bool, name: str = "__fs_result") -> None:
    """Raise if a feature value came from one of several rows with the same keys and time (no `created`).

    Checking only the rows a frame took costs at most a semi-join instead of grouping all of a
    view's rows; `validate --data` and the cache fill report every tie. `load` makes an Arrow
    table readable by the engine, `first` runs a query there and returns its first row.
    """
    checks = [(item, query) for number, item in enumerate(joins)
              if (query := ties(item, number, name, repeated=repeated))]
    if checks:
        load(name, result.select([c for c in result.column_names if c.startswith("__fs_taken")]))
    for item, query in checks:
        tie = first(query)
        if tie:
            raise duplicate_error(item.view, tie)
    if repeated:  # a repeat that no tie explains would be our bug: never return a misaligned frame
        raise FeatureStoreError(f"internal error: the frame has {result.num_rows} rows for a spine of a different "
                                "length; please report it with the frame's SQL")


def data_problems(project: Project) -> list[Problem]:
    """Problems only the data shows: snapshot views with duplicate (keys, time) rows and no tie-break."""
    settings = project.settings
    views = [v for v in project.views.values() if not v.windows and not v.created]
    if not views:
        return []
    problems: list[Problem] = []
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection:
        loaded: set[str] = set()
        for view in views:
            with duck.errors_as_feature_store_errors():
                register_sources(connection, project, [view], every_source=False, loaded=loaded)
                rows = prepared_rows(project, view, [])
                duplicate = duck.first_row(connection, duplicates(view, rows).sql(dialect="duckdb"))
            if duplicate:
                problems.append(Problem(view.path, view.line("timestamp"), duplicate_message(view, duplicate),
                                        duplicate_fix(view), code="duplicate-rows"))
    return problems


def _cache_views(project: Project, features: Iterable[str] | str, full_names: bool) -> set[str]:
    """The selected snapshot views whose rows the frame joins from the cache, filling it first where
    the project's `[offline] cache` setting says so: at a view's first read ("on_first_read"), or at
    the second read of the same version over the same sources ("on_second_read"; a view read once,
    say while exploring, never pays for a fill). The fill runs here, inside the call: nothing is left
    running, or writing, after the frame returns."""
    settings = project.settings
    if settings.offline_cache == "off":
        return set()
    views = [project.views[name] for name in by_view(select_features(project.views, features, full_names=full_names))
             if not project.views[name].windows]
    if not views:
        return set()
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection, \
            duck.errors_as_feature_store_errors():
        states = {view.name: cache_state(connection, project, view) for view in views}
    fresh = {name for name, (current, _) in states.items() if current}
    stale = [view for view in views if view.name not in fresh]
    if settings.offline_cache == "on_second_read":
        stale = [view for view in stale if read_before(project, view, states[view.name][1])]
    for view in stale:
        try:
            _fill_one(project, view)
            fresh.add(view.name)
        except FeatureStoreError as exc:  # e.g. ties the frame may not touch: it computes the view inline
            import warnings

            warnings.warn(f"featurestore: could not update the cache: {exc}", RuntimeWarning, stacklevel=4)
    return fresh


def _fill_one(project: Project, view: Any) -> None:
    settings = project.settings
    with duck.offline(settings.offline_database, settings.temp_directory) as connection, \
            duck.errors_as_feature_store_errors():
        loaded: set[str] = set()
        fill(connection, project, view,
             lambda: register_sources(connection, project, [view], every_source=False, loaded=loaded))


def _row_numbers(count: int) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.arange(count, dtype=np.int64))


def _spine_arrow(spine: Any, connection: Any, project: Project) -> Any:
    import pyarrow as pa

    if isinstance(spine, pa.Table):
        return spine
    module = type(spine).__module__.split(".")[0]
    if module == "polars":
        return spine.to_arrow()
    if module == "pandas":
        return pa.Table.from_pandas(spine, preserve_index=False)
    if isinstance(spine, Path) or (isinstance(spine, str) and spine.strip().lower().endswith(".parquet")):
        import pyarrow.parquet as pq

        path = Path(spine)
        if not path.is_absolute() and not path.exists():
            path = project.settings.root / path
        try:  # a file through ParquetFile: read_table would import pandas (a second on a first frame)
            return pq.ParquetFile(path).read() if path.is_file() else pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise FeatureStoreError(f"cannot read the spine {spine}: {exc}") from None
    if isinstance(spine, str):
        return duck.arrow(connection, spine)
    raise FeatureStoreError(f"a spine is a polars or pandas DataFrame, an Arrow table, a Parquet path or a SQL "
                            f"string; got {type(spine).__name__}")


def _describe_spine(connection: Any, table: Any) -> tuple[Column, ...]:
    duck.load_arrow(connection, "__fs_spine_probe", table.slice(0, 0))
    columns = duck.describe_relation(connection, "__fs_spine_probe")
    connection.unregister("__fs_spine_probe")
    for column in columns:
        if column.name.startswith("__fs_"):
            raise FeatureStoreError(f"spine column '{column.name}': names starting with __fs_ are reserved; rename it")
    return columns


def _check_spine(columns: tuple[Column, ...], timestamp: str, views: list[Any]) -> None:
    types = {c.name: c.type for c in columns}
    names = list(types)
    if timestamp not in types:
        hint = did_you_mean(timestamp, names) or "pass timestamp=\"<column>\""
        raise FeatureStoreError(f"the spine has no timestamp column '{timestamp}' (its columns: {', '.join(names)}); "
                                f"{hint}")
    if not duck.is_time_type(types[timestamp]) and types[timestamp] != '"NULL"':
        raise FeatureStoreError(f"the spine's timestamp column '{timestamp}' has type {types[timestamp]}; "
                                "convert it to a timestamp or date")
    for view in views:
        view_types = {c.name: c.type for c in view.columns}
        for key in view.entity:
            if key not in types:
                raise FeatureStoreError(f"the spine lacks the column '{key}', the entity key of view '{view.name}' "
                                        f"(spine columns: {', '.join(names)})")
            if not _compatible(types[key], view_types[key]):
                raise FeatureStoreError(f"the spine's '{key}' is {types[key]} but view '{view.name}' keys it as "
                                        f"{view_types[key]}; cast the spine column to {view_types[key]}")


def _compatible(spine_type: str, view_type: str) -> bool:
    if spine_type == view_type or spine_type == '"NULL"':
        return True
    return ({spine_type, view_type} <= INTEGER_TYPES) or ({spine_type, view_type} <= _STRINGS)


def _utc(column: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        return column.cast(pa.timestamp(column.type.unit, tz="UTC"))
    return column


def _content_hash(table: Any) -> str:
    """SHA-256 of the table's names, types and values: the same data hashes the same however it is laid out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digest = hashlib.sha256()
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        kind = column.type
        digest.update(f"{name}\x00{kind}\x00{len(column)}\x00".encode())
        digest.update(column.is_null().to_numpy(zero_copy_only=False).tobytes())
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_duration(kind):
            column = column.cast(pa.int64())
            kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            filled = pc.fill_null(column, False if pa.types.is_boolean(kind) else 0)
            digest.update(filled.to_numpy(zero_copy_only=False).tobytes())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            for value in pc.fill_null(column, "").to_pylist():
                digest.update(value.encode())
                digest.update(b"\x00")
        else:
            digest.update(repr(column.to_pylist()).encode())
    return digest.hexdigest()
