"""Training frames: every spine row with the selected features as of its time, in one statement.

    frame = training_frame(project, spine, ["user_spend_trend.*", "cards_added.cards_added_3h"])

Each view is joined the way `offline.joins` estimates cheapest for its shape (from its
cached rows when `offline.cache` holds them fresh), in DuckDB, or on Spark (`offline.spark_frame`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlglot import exp

from featurestore.compiler.point_in_time import (
    ROW,
    Spine,
    ViewRows,
    duplicate_fix,
    duplicate_message,
    duplicates,
    point_in_time,
    taken_columns,
)
from featurestore.compiler.render import nulls_first_by_default, write
from featurestore.compiler.windows import WindowRows, aggregates
from featurestore.definitions.selection import Selected, by_view, select_features
from featurestore.definitions.spec import INTEGER_TYPES, Column
from featurestore.engines import ENGINES
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError, Problem, did_you_mean
from featurestore.offline.cache import cache_state, cached_table, fill, read_before
from featurestore.offline.joins import Choice, join_header, snapshot_choice, window_choice
from featurestore.offline.rows import prepared_rows, refuse_ties, row_numbers, window_events
from featurestore.offline.snapshots import TrainingFrame
from featurestore.offline.sources import register_sources
from featurestore.offline.spark_frame import SPARK_JOINS, as_duckdb_types, feature_schema, spark_frame
from featurestore.project import Project

__all__ = ["data_problems", "frame_sql", "training_frame"]
_STRINGS = {"VARCHAR"}


def training_frame(project: Project, spine: Any, features: Iterable[str] | str, *, timestamp: str = "ts",
                   full_names: bool = False, cache: bool = True, join: str = "auto", engine: str = "duckdb",
                   spark: Any = None) -> TrainingFrame:
    """Every spine row with the selected features as of its `timestamp` (docs/semantics.md).

    With `cache`, views whose cached rows are fresh are joined from the cache; the others are
    computed inline, or first cached when the project's `[offline] cache` setting says so. `join`
    chooses how uncached views are joined (auto; asof, ranked or last for snapshot views; join,
    frames or totals, running totals for counts and integer sums, for window views); it exists for
    benchmarks and tests. `engine="spark"` runs the join on Apache Spark (`spark`, a SparkSession,
    or a local one) from the same definitions, with the same answer and types; the spine is read
    here as for DuckDB, and the cache is DuckDB's, so it is not used.
    """
    if engine not in ENGINES:
        raise FeatureStoreError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    known = SPARK_JOINS if engine == "spark" else _DUCKDB_JOINS
    if join not in known:
        only = " runs only on DuckDB" if join in _DUCKDB_JOINS else " is not a join"
        raise FeatureStoreError(f"join '{join}'{only}; with engine '{engine}' choose one of {', '.join(known)}")
    settings = project.settings
    cached = _cache_views(project, features, full_names) if cache and engine == "duckdb" else set()
    # Frames only read the offline database, so several processes can build frames at once.
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection, \
            duck.errors_as_feature_store_errors():
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
            result, sql, joins, choices = spark_frame(connection, project, spine_table, spine_columns, timestamp,
                                                      grouped, join, spark, loaded)
            result = as_duckdb_types(result, feature_schema(connection, result.column_names, joins))
        else:
            result, sql, joins, choices = _duckdb_frame(connection, project, spine_table, spine_columns,
                                                        timestamp, grouped, join, loaded, cached=cached)
    hidden = {name for number, item in enumerate(joins) for name in taken_columns(item, number)}
    table = spine_table
    for name in result.column_names:
        if name not in hidden:
            table = table.append_column(name, _zoned_as_utc(result.column(name)))
    info = {
        "features": [s.feature.qualified for s in selected],
        "view_versions": {v.name: v.version for v in views},
        "timestamp": timestamp,
        "engine": engine,
        "joins": [choice.as_dict() for choice in choices],
    }
    return TrainingFrame(table, sql, info, spine_table.num_columns)


def _duckdb_frame(connection: Any, project: Project, spine_table: Any, spine_columns: tuple[Column, ...],
                  timestamp: str, grouped: dict[str, list[Selected]], join: str, loaded: set[str], *,
                  cached: set[str]) -> tuple[Any, str, list[Any], list[Choice]]:
    """The features of every spine row, computed by DuckDB (one statement): the result, its SQL and
    the joins. Views named in `cached` are joined from their cached rows, the others computed from
    their sources; `loaded` names the sources already registered in `connection` (a SQL spine reads them)."""
    numbered = spine_table.append_column(ROW, row_numbers(spine_table.num_rows))
    duck.load_arrow(connection, "__fs_spine", numbered)
    joins: list[Any] = []
    choices: list[Choice] = []
    for name, items in grouped.items():
        view = project.views[name]
        if view.windows:
            register_sources(connection, project, [view], every_source=False, loaded=loaded)
            events = window_events(project, view)
            choice = window_choice(connection, view, events, items, join)
            joins.append(WindowRows(view, events, tuple(items), choice.methods, bucket=choice.bucket,
                                    totals=frozenset(choice.totals)))
        elif name in cached:
            rows = exp.select("*").from_(cached_table(view))
            choice = snapshot_choice(connection, view, rows, join if join == "auto" else "intervals",
                                      cached=True)
            joins.append(ViewRows(view, rows, tuple(items), prepared=True, join=choice.join, bucket=choice.bucket))
        else:
            register_sources(connection, project, [view], every_source=False, loaded=loaded)
            rows = prepared_rows(project, view, list(dict.fromkeys(f.column for f in view.features)))
            choice = snapshot_choice(connection, view, rows, join)
            joins.append(ViewRows(view, rows, tuple(items), prepared=True, join=choice.join, bucket=choice.bucket))
        choices.append(choice)
    query = point_in_time(Spine("__fs_spine", (*spine_columns, Column(name=ROW, type="BIGINT")), timestamp),
                          joins, passthrough=False)
    sql = join_header(choices) + query.sql(dialect="duckdb", pretty=True, comments=False)
    result = duck.arrow(connection, sql)
    refuse_ties(lambda name, table: duck.load_arrow(connection, name, table),
                 lambda query: duck.first_row(connection, query.sql(dialect="duckdb")), joins, result,
                 repeated=result.num_rows != spine_table.num_rows)
    return result, sql, joins, choices


_DUCKDB_JOINS = ("auto", "asof", "ranked", "last", "join", "frames", "totals")


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
            join = "frames" if dialect in ("duckdb", "spark") and not view.known_at else "join"
            joins.append(WindowRows(view, events, items, {w.label: join for w in view.windows}))
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


def _zoned_as_utc(column: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        return column.cast(pa.timestamp(column.type.unit, tz="UTC"))
    return column
