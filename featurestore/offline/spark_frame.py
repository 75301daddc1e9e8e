"""Training frames computed by Apache Spark from the same definitions, with the same answer and types.

Spark has no ASOF join: snapshot views take the portable "last" join or "ranked", window views the
"frames" or "join" join (`offline.joins`). The spine is read by DuckDB as for any frame; only its
keys and time go to Spark.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from featurestore.compiler.point_in_time import ROW, Spine, ViewRows, point_in_time, taken_columns, taken_sources
from featurestore.compiler.render import write
from featurestore.compiler.windows import WindowRows
from featurestore.definitions.selection import Selected
from featurestore.definitions.spec import Column
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError
from featurestore.offline.changes import sources_of
from featurestore.offline.joins import Choice, forced, join_header, refuse_arrival_joins, snapshot_choice, window_choice
from featurestore.offline.rows import prepared_rows, refuse_ties, row_numbers, window_events
from featurestore.offline.sources import register_sources
from featurestore.project import Project

__all__ = ["SPARK_JOINS", "as_duckdb_types", "feature_schema", "spark_frame"]


_SPARK_SNAPSHOT_JOINS = {"auto": "last", "last": "last", "ranked": "ranked"}  # where DuckDB cannot measure


_SPARK_WINDOW_JOINS = {"auto": "frames", "frames": "frames", "join": "join"}


SPARK_JOINS = tuple(dict.fromkeys([*_SPARK_SNAPSHOT_JOINS, *_SPARK_WINDOW_JOINS]))


def spark_frame(connection: Any, project: Project, spine_table: Any, spine_columns: tuple[Column, ...],
                 timestamp: str, grouped: dict[str, list[Selected]], join: str, spark: Any,
                 loaded: set[str]) -> tuple[Any, str, list[Any], list[Choice]]:
    """The features of every spine row, computed by Spark from the same trees, in Spark SQL.

    Spark has no ASOF join: snapshot views take the "last" join or "ranked", window views the
    "frames" or "join" join. With join "auto", the choice is DuckDB's, from the same cheap pass
    over the data, when DuckDB can read all of a view's sources (Parquet files); else the joins
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
    if join == "auto":
        duck.load_arrow(connection, "__fs_spine", spine_table.append_column(ROW, row_numbers(spine_table.num_rows)))
    with sparks.session(spark) as session:
        pushed = _with_pushed_rows(connection, project, views, session, loaded)
        _check_spark_sources(project, views, session)
        joins: list[Any] = []
        choices: list[Choice] = []
        for view in views:
            items = tuple(grouped[view.name])
            measured = join == "auto" and _parquet_only(project, view)
            if measured:
                register_sources(connection, project, [view], every_source=False, loaded=loaded)
            if view.windows:
                refuse_arrival_joins(view, join)  # as DuckDB does, whether the join is measured or forced
                events = window_events(project, view, dialect="spark")
                write(events, "spark", view)  # what Spark cannot run is an error naming the view
                choice = window_choice(connection, view, window_events(project, view), items, join, buckets=False) \
                    if measured else forced(view, "windows", {
                        w.label: "join" if view.known_at else _SPARK_WINDOW_JOINS.get(join, "frames")
                        for w in view.windows})
                joins.append(WindowRows(view, events, items, choice.methods))
                choices.append(choice)
                continue
            columns_read = list(dict.fromkeys(f.column for f in view.features))
            rows = prepared_rows(project, view, columns_read, dialect="spark")
            write(rows, "spark", view)
            choice = (snapshot_choice(connection, view, prepared_rows(project, view, columns_read), join, buckets=False)
                      if measured else forced(view, _SPARK_SNAPSHOT_JOINS.get(join, "last")))
            if choice.join != "ranked" or view.ttl is None:  # Spark has no ASOF join: the portable one
                choice = replace(choice, join="last")
            joins.append(ViewRows(view, rows, items, prepared=True, join=choice.join))
            choices.append(choice)
        query = point_in_time(Spine(spine_name, spine_of_keys, timestamp), joins, passthrough=False, dialect="spark")
        sql = join_header(choices) + write(query, "spark")
        sparks.load_arrow(session, spine_name, sent)
        try:
            result = sparks.arrow(session, sql)
            refuse_ties(lambda name, table: sparks.load_arrow(session, name, table),
                         lambda query: _first(sparks.arrow(session, write(query, "spark"))), joins, result,
                         repeated=result.num_rows != spine_table.num_rows, name=f"{spine_name}_result")
        finally:
            with contextlib.suppress(Exception):  # a session that died keeps nothing, and the error above matters
                for name in (spine_name, f"{spine_name}_result", *pushed):
                    session.catalog.dropTempView(name)
    return result, sql, joins, choices


def as_duckdb_types(result: Any, schema: Any) -> Any:
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


def _with_pushed_rows(connection: Any, project: Project, views: list[Any], session: Any,
                      loaded: set[str]) -> list[str]:
    """Each source the views read that accepts pushes, as a temporary view of its name in the session:
    its Parquet files and its pushed rows (read here by DuckDB, `offline.pushed`). Returns the
    temporary views made."""
    from sqlglot import exp

    from featurestore.config import FileSource
    from featurestore.engines import spark as sparks
    from featurestore.offline.pushed import pushable, pushed_relation

    names = sorted({name for view in views for name in sources_of(project, view) if pushable(project, name)})
    register_sources(connection, project, [v for v in views if sources_of(project, v) & set(names)],
                     every_source=False, loaded=loaded)
    made = []
    for name in names:
        source = project.settings.sources[name]
        assert isinstance(source, FileSource)
        if source.format != "parquet":
            continue  # the session must hold a table of its name (`_check_spark_sources`)
        relation = pushed_relation(name)
        sparks.load_arrow(session, relation, duck.arrow(connection, f'SELECT * FROM "{relation}"'))
        columns = ", ".join(exp.to_identifier(c.name, quoted=True).sql(dialect="spark") for c in project.sources[name])
        path = exp.to_identifier(str(project.settings.root / source.path), quoted=True).sql(dialect="spark")
        sparks.execute(session, f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS SELECT {columns} FROM parquet.{path} "
                       f"UNION ALL SELECT {columns} FROM `{relation}`")
        made += [name, relation]
    return made


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
    return pa.table([*(spine.column(k) for k in keys), time, row_numbers(spine.num_rows)],
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


def feature_schema(connection: Any, names: list[str], joins: list[Any]) -> Any:
    """The Arrow types DuckDB gives each result column: a feature has its view column's type."""
    import pyarrow as pa

    types: dict[str, str] = {}
    for number, item in enumerate(joins):
        view_types = {c.name: c.type for c in item.view.columns}
        for selected in item.selected:
            types[selected.output] = view_types[selected.feature.column]
        for column, name in zip(taken_sources(item.view), taken_columns(item, number)):
            types[name] = view_types.get(column, "TIMESTAMPTZ")
    arrow_types = duck.arrow_types(connection, [types[name] for name in names])
    return pa.schema([pa.field(name, kind) for name, kind in zip(names, arrow_types)])
