"""Push: rows into a source, served within milliseconds, and read by frames from then on.

    push(project, "card_events", rows, idempotency_key="batch-17")
    →  PushResult(source="card_events", rows=2, arrived=2026-…, views_updated=("cards_added",),
                  views_pending=("user_risk",))

A push is all or nothing. The rows are checked against the source's columns first (unknown or
missing columns, values of the wrong type, NULL where a view reads a key or a time); a bad batch
is refused naming its row and column, and nothing is written. The store stamps the arrival column
with the instant it accepted the batch (one per batch, UTC µs), unless a row carries one (a
backfill). Then, in one PostgreSQL transaction: the batch is recorded (with its idempotency key:
a batch sent again with the same key is applied once and gets the first answer), its rows land in
the source's landing table (`offline.pushed`), and the online table of each view that is row-wise
over the source and already materialized takes them, exactly as a materialization up to the
arrival instant would: a snapshot view's latest row per key (never replacing a newer one), a
window view's events; `expect:` conditions apply. Rows not yet known at the arrival instant
(a lag, a later arrival) are written by the next `materialize`, as are views that join or
aggregate the source (`views_pending`). Each view is updated under the lock its materialization
takes, so the two never interleave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import sql
from sqlglot import exp

from featurestore.compiler.incremental import latest_rows
from featurestore.compiler.names import KNOWN, TS
from featurestore.compiler.point_in_time import duplicates, prepare_rows
from featurestore.compiler.render import render_query
from featurestore.compiler.times import instant
from featurestore.compiler.windows import event_rows
from featurestore.config import DuckDBSource
from featurestore.definitions.spec import FeatureView
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError, PushRejected, UnavailableError, UnknownNameError, did_you_mean
from featurestore.offline.changes import row_wise, sources_of
from featurestore.offline.pushed import SCHEMA, landed_table, pushable, register_pushed
from featurestore.offline.rows import duplicate_error
from featurestore.online.expectations import check_expectations
from featurestore.online.materialize import SCHEMA as ONLINE
from featurestore.online.materialize import (  # the write path push shares with materialization
    _append_events,
    _batch_loader,
    _columns,
    _ensure_schema,
    _event_columns,
    _set_aside,
    _upsert,
)
from featurestore.project import Project

__all__ = ["PushRejected", "PushResult", "push"]


@dataclass(frozen=True)
class PushResult:
    """What a push did: rows accepted, the arrival instant stamped, views whose online values
    include them now, and views that take them at the next `materialize`."""

    source: str
    rows: int
    arrived: datetime
    views_updated: tuple[str, ...]
    views_pending: tuple[str, ...]
    batch: int = 0  # the batch's number in the store
    replayed: bool = False  # the idempotency key was seen before: this is the first push's answer

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arrived": self.arrived.isoformat(), "views_updated": list(self.views_updated),
                "views_pending": list(self.views_pending)}


def push(project: Project, source: str, rows: Any, *, idempotency_key: str | None = None,
         now: datetime | None = None, connection: Callable[[], Any] | None = None) -> PushResult:
    """Check `rows` (pandas or polars DataFrame, Arrow table, or list of dicts) against the source,
    stamp arrivals, and write them, all or nothing (see the module doc). `connection` gives a
    PostgreSQL connection as a context manager (a pooled one; default: a new one)."""
    import psycopg
    from psycopg_pool import PoolTimeout

    _pushable(project, source)
    if idempotency_key is not None and not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 200):
        raise PushRejected("the idempotency key must be a string of 1 to 200 characters")
    arrived = (now or datetime.now(UTC)).astimezone(UTC)
    url = postgres.resolve_url(project.settings.postgres_url, project.settings.state_dir)
    connect = connection or (lambda: postgres.connect(url))
    with duck.scratch(project.settings.temp_directory, spill=False) as duck_connection:
        batch = _checked(project, source, rows, duck_connection, arrived)
        for attempt in (1, 2):
            _ensure(url, project, source)
            try:
                with connect() as pg, pg.transaction():
                    return _write(pg.cursor(), duck_connection, project, source, batch, arrived, idempotency_key)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                if attempt == 2:
                    raise
                _ENSURED.clear()  # the store's tables were dropped since this process made them: again
            except (psycopg.OperationalError, PoolTimeout) as exc:  # nothing was written: the caller may retry
                raise UnavailableError(f"PostgreSQL could not take the push: {str(exc).strip()}; send the batch "
                                       "again with its idempotency key, which applies it once") from None


def _write(cursor: Any, connection: Any, project: Project, source: str, batch: Any, arrived: datetime,
           idempotency_key: str | None) -> PushResult:
    """The push's one transaction: the batch recorded (or found, by its key), landed, and served."""
    cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    cursor.execute(f"INSERT INTO {SCHEMA}.batches (source, idempotency_key, arrived, rows) "
                   "VALUES (%s, %s, %s, %s) ON CONFLICT (source, idempotency_key) DO NOTHING RETURNING id",
                   [source, idempotency_key, arrived, batch.num_rows])
    inserted = cursor.fetchone()
    if inserted is None:  # sent before: applied once, answered as then
        stored = cursor.execute(f"SELECT result FROM {SCHEMA}.batches WHERE source = %s AND "
                                "idempotency_key = %s", [source, idempotency_key]).fetchone()[0]
        return _result(stored, replayed=True)
    number = int(inserted[0])
    _land(cursor, project, source, batch, number)
    updated, pending = [], []
    for view in _readers(project, source):
        if _apply(cursor, connection, project, view, source, batch, arrived):
            updated.append(view.name)
        else:
            pending.append(view.name)
    result = PushResult(source, batch.num_rows, arrived, tuple(updated), tuple(pending), number)
    cursor.execute(f"UPDATE {SCHEMA}.batches SET result = %s::jsonb WHERE id = %s",
                   [json.dumps(result.as_dict()), number])
    return result


# (PostgreSQL URL, source) whose schema, tables and landing table this process made sure of: once, not
# per push (DDL takes locks and costs a round trip each); forgotten when a push finds them gone.
_ENSURED: set[tuple[str, str, tuple[str, ...]]] = set()


def _ensure(url: str, project: Project, source: str) -> None:
    key = (url, source, tuple(c.name for c in project.sources[source]))
    if key in _ENSURED:
        return
    _ensure_schema(url)
    _ensure_landing(url, project, source)
    _ENSURED.add(key)


def _result(stored: dict[str, Any], *, replayed: bool) -> PushResult:
    return PushResult(stored["source"], stored["rows"], datetime.fromisoformat(stored["arrived"]),
                      tuple(stored["views_updated"]), tuple(stored["views_pending"]), stored["batch"], replayed)


def _pushable(project: Project, source: str) -> None:
    sources = project.settings.sources
    if source not in sources:
        raise UnknownNameError(f"unknown source '{source}'; {did_you_mean(source, sources)}")
    if not pushable(project, source):
        raise FeatureStoreError(
            f"source '{source}' does not accept pushes; name the column that records when each row arrives: "
            f'[sources.{source}] with path = "…" and arrival = "ingested_at" in featurestore.toml')


def _readers(project: Project, source: str) -> list[FeatureView]:
    """The views that read the source, directly or through other views, by name."""
    return sorted((v for v in project.views.values() if source in sources_of(project, v)), key=lambda v: v.name)


# --- checking a batch -------------------------------------------------------------------------

def _checked(project: Project, source: str, rows: Any, connection: Any, arrived: datetime) -> Any:
    """The rows as an Arrow table in the source's columns and types, arrivals stamped; or PushRejected."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = list(project.sources[source])
    arrival = project.settings.sources[source].arrival  # type: ignore[union-attr]
    types = dict(zip([c.name for c in columns], _arrow_types(connection, tuple(c.type for c in columns))))
    given = _as_columns(rows)
    unknown = [name for name in given if name not in types]
    if unknown:
        raise PushRejected(f"the source has no column '{unknown[0]}' (its columns: {', '.join(types)}); "
                           f"{did_you_mean(unknown[0], types)}", column=unknown[0])
    count = max((len(values) for values in given.values()), default=0)
    arrays = {}
    for name, kind in types.items():
        if name not in given:
            if name != arrival:
                raise PushRejected(f"missing column '{name}': every row needs the source's columns "
                                   f"({', '.join(c for c in types if c != arrival)}); the arrival column "
                                   f"'{arrival}' may be left out", column=name)
            arrays[name] = pa.nulls(count, kind)
            continue
        arrays[name] = _typed(given[name], kind, name)
    table = pa.table(arrays)
    for name in _required(project, source, types):
        nulls = pc.is_null(table.column(name))
        if pc.any(nulls).as_py():
            row = pc.index(nulls, True).as_py()
            raise PushRejected(f"NULL, but {_why_required(project, source, name)}; give every row a value",
                               row=row, column=name)
    stamp = pa.scalar(arrived, types[arrival])
    return table.set_column(table.column_names.index(arrival), arrival,
                            pc.fill_null(table.column(arrival), stamp))


_ARROW_TYPES: dict[tuple[str, ...], list[Any]] = {}


def _arrow_types(connection: Any, types: tuple[str, ...]) -> list[Any]:
    """The Arrow types of DuckDB types (asked of DuckDB once per source shape)."""
    if types not in _ARROW_TYPES:
        _ARROW_TYPES[types] = duck.arrow_types(connection, list(types))
    return _ARROW_TYPES[types]


def _as_columns(rows: Any) -> dict[str, Any]:
    """Column name → values (an Arrow array, or a Python list for a list of dicts)."""
    import pyarrow as pa

    if isinstance(rows, list):
        names: dict[str, None] = {}
        for number, row in enumerate(rows):
            if not isinstance(row, dict):
                raise PushRejected(f"each row must be an object of column → value, got {type(row).__name__}",
                                   row=number)
            names.update(dict.fromkeys(row))
        for name in names:
            if not isinstance(name, str):
                raise PushRejected(f"column names must be strings, got {name!r}")
        return {name: [row.get(name) for row in rows] for name in names}
    if isinstance(rows, pa.Table):
        table = rows
    elif hasattr(rows, "to_arrow"):  # polars
        table = rows.to_arrow()
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        table = pa.Table.from_pandas(rows, preserve_index=False)
    else:
        raise PushRejected(f"rows must be a list of dicts, a pandas or polars DataFrame, or an Arrow table, "
                           f"not {type(rows).__name__}")
    return {name: table.column(name).combine_chunks() for name in table.column_names}


def _typed(values: Any, kind: Any, name: str) -> Any:
    """`values` as an Arrow array of `kind`; a value that is not of that type is refused with its row."""
    import pyarrow as pa

    textual = False  # a column of text from a file: "3" may be a number there, as Arrow reads it
    if not isinstance(values, list):
        try:
            return values.cast(kind, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            textual = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            values = values.to_pylist()
    converted = []
    for number, value in enumerate(values):
        try:
            converted.append(_value(value, kind))
        except (TypeError, ValueError, OverflowError) as exc:
            if textual:
                try:
                    converted.append(pa.array([value]).cast(kind, safe=True)[0].as_py())
                    continue
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    pass
            raise PushRejected(f"{value!r} is not a {_type_name(kind)} ({exc})", row=number, column=name) from None
    try:
        return pa.array(converted, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        for number, value in enumerate(converted):
            try:
                pa.array([value], type=kind)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise PushRejected(f"{value!r} does not fit {_type_name(kind)} ({exc})", row=number,
                                   column=name) from None
        raise


def _value(value: Any, kind: Any) -> Any:
    """One value as Python for an Arrow type: ISO 8601 text for times (naive: UTC), no bool for numbers."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_timestamp(kind):
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            raise TypeError("give an ISO 8601 instant, e.g. 2026-01-01T10:00:00Z")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if pa.types.is_date(kind):
        if isinstance(value, str):
            return date.fromisoformat(value)
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError("give a date, e.g. 2026-01-01")
        return value
    if pa.types.is_integer(kind):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("give a whole number")
        return value
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("give a number")
        return value
    if pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise TypeError("give true or false")
        return value
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if not isinstance(value, str):
            raise TypeError("give text")
        return value
    return value


def _type_name(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        return "timestamp"
    if pa.types.is_integer(kind):
        return "whole number"
    if pa.types.is_floating(kind):
        return "number"
    names = {"string": "text", "large_string": "text", "bool": "boolean", "date32[day]": "date"}
    return names.get(str(kind), str(kind))


def _required(project: Project, source: str, columns: Iterable[str]) -> list[str]:
    """The source's columns that views reading it directly use as a key or a time: never NULL."""
    names = set(columns)
    needed = {column for view in project.views.values() if source in view.reads
              for column in (*view.entity, view.timestamp)}
    return [name for name in names if name in needed]


def _why_required(project: Project, source: str, column: str) -> str:
    views = sorted(v.name for v in project.views.values() if source in v.reads and column in v.entity)
    if views:
        return f"views read it as an entity key ({', '.join(views)})"
    views = sorted(v.name for v in project.views.values() if source in v.reads and column == v.timestamp)
    return f"views read it as their time ({', '.join(views)})"


# --- writing a batch --------------------------------------------------------------------------

def _ensure_landing(url: str, project: Project, source: str) -> None:
    """The push schema, the batches and files tables, and the source's landing table (once)."""
    columns = list(project.sources[source])
    with postgres.connect(url) as pg, pg.transaction():
        pg.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(SCHEMA)])
        pg.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        pg.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.batches (id bigserial PRIMARY KEY, source text NOT NULL, "
                   "idempotency_key text, arrived timestamptz NOT NULL, rows integer NOT NULL, result jsonb, "
                   "compacted timestamptz, UNIQUE (source, idempotency_key))")
        pg.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.files (source text NOT NULL, path text PRIMARY KEY, "
                   "rows bigint NOT NULL, first_batch bigint NOT NULL, last_batch bigint NOT NULL, "
                   "created_at timestamptz NOT NULL DEFAULT now())")
        try:
            kinds = [(c.name, postgres.postgres_type(c.type)) for c in columns]
        except ValueError as exc:
            raise FeatureStoreError(f"source '{source}' cannot take pushes: {exc}") from None
        pg.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, __fs_batch bigint NOT NULL)").format(
            sql.Identifier(*landed_table(source)),
            sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in kinds)))
        found = [row[0] for row in pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "AND column_name <> '__fs_batch' ORDER BY ordinal_position", list(landed_table(source))).fetchall()]
        if found != [c.name for c in columns]:
            raise FeatureStoreError(
                f"source '{source}' has columns ({', '.join(c.name for c in columns)}) but its pushed rows have "
                f"({', '.join(found)}); compact them (featurestore compact {source}) before changing the source")


def _land(cursor: Any, project: Project, source: str, batch: Any, number: int) -> None:
    """The batch's rows into the source's landing table, numbered: binary COPY of the Arrow columns
    where every type has a binary form, else row by row as text."""
    import pyarrow as pa

    columns = list(project.sources[source])
    kinds = [postgres.postgres_type(c.type) for c in columns]
    if all(kind in postgres.BINARY_COPY_TYPES and _same_type(postgres.BINARY_COPY_TYPES[kind][0], c.type)
           for kind, c in zip(kinds, columns)):
        numbered = batch.append_column("__fs_batch", pa.array([number] * batch.num_rows, pa.int64()))
        postgres.copy_binary(cursor, *landed_table(source), [*zip(batch.column_names, kinds), ("__fs_batch", "bigint")],
                             numbered.to_batches())
        return
    names = batch.column_names
    target = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*landed_table(source)),
        sql.SQL(", ").join(sql.Identifier(n) for n in [*names, "__fs_batch"]))
    with cursor.copy(target) as copy:
        for row in batch.to_pylist():
            copy.write_row([*(row[n] for n in names), number])


def _same_type(binary: str, duckdb_type: str) -> bool:
    aliases = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
    return binary == aliases.get(duckdb_type.upper(), duckdb_type.upper())


# The SQL that turns a batch (`__fs_push_rows`) into a view's online rows, per view version and source:
# built once (sqlglot costs milliseconds), with the arrival instant written in at each push.
_SENTINEL = datetime(1111, 11, 11, 11, 11, 11, 111111, tzinfo=UTC)  # an instant no view's SQL holds
_SENTINEL_SQL = instant(_SENTINEL).sql(dialect="duckdb")
_STATEMENTS: dict[tuple[str, str, str], tuple[str, str | None]] = {}


def _statements(project: Project, view: FeatureView, source: str) -> tuple[str, str | None]:
    """(the view's rows of the batch known by the arrival instant, the query finding a tie among them)."""
    key = (view.name, view.version, source)
    if key not in _STATEMENTS:
        settings = project.settings
        rendered = render_query(view, project.views, {**settings.sources, source: DuckDBSource(
            table="__fs_push_rows")}, settings.root, "duckdb")
        if view.windows:
            events = exp.select("*").from_(exp.Subquery(this=event_rows(view, rendered), alias=exp.TableAlias(
                this=exp.to_identifier("e", quoted=True)))).where(
                exp.LTE(this=exp.column(KNOWN, quoted=True), expression=instant(_SENTINEL)))
            _STATEMENTS[key] = (events.sql(dialect="duckdb"), None)
        else:
            values = [n for n, _ in _columns(view) if n not in (*view.entity, TS, KNOWN)]
            latest = latest_rows(view, [(prepare_rows(view, rendered, values), None)], _SENTINEL)
            _STATEMENTS[key] = (latest.sql(dialect="duckdb"),
                                duplicates(view, exp.select("*").from_("__fs_batch")).sql(dialect="duckdb"))
    return _STATEMENTS[key]


_ROW_WISE: dict[tuple[str, str], bool] = {}


def _row_wise(view: FeatureView) -> bool:
    key = (view.name, view.version)
    if key not in _ROW_WISE:
        _ROW_WISE[key] = row_wise(view)
    return _ROW_WISE[key]


def _apply(cursor: Any, connection: Any, project: Project, view: FeatureView, source: str, batch: Any,
           arrived: datetime) -> bool:
    """Write the batch into the view's online table, if the view is row-wise over the source alone and
    materialized; returns whether it did."""
    if tuple(view.reads) != (source,) or not _row_wise(view):
        return False
    # The materialization's lock first, then its watermark (one round trip).
    done = cursor.execute(f"SELECT w.watermark FROM (SELECT pg_advisory_xact_lock(%s)) AS l LEFT JOIN "
                          f"{ONLINE}.watermarks AS w ON w.view = %s AND w.version = %s",
                          [postgres.lock_key(f"materialize:{view.name}"), view.name, view.version]).fetchone()
    if done is None or done[0] is None:
        return False  # no online table yet: the next materialize backfills it, pushed rows included
    settings = project.settings
    duck.load_arrow(connection, "__fs_push_rows", batch)
    rows_sql, duplicates_sql = _statements(project, view, source)
    rows_sql = rows_sql.replace(_SENTINEL_SQL, instant(arrived).sql(dialect="duckdb"))
    table = f"{view.name}__{view.version}"
    batch_file = settings.temp_directory / f"{table}.{os.getpid()}.push.csv"
    connection.execute("DROP TABLE IF EXISTS __fs_batch")
    try:
        with duck.errors_as_feature_store_errors():
            connection.execute(f"CREATE TEMP TABLE __fs_batch AS {rows_sql}")
            if view.windows:
                columns = _event_columns(view, connection)
            else:
                columns = _columns(view)
                tie = duck.first_row(connection, duplicates_sql) if duplicates_sql else None
                if tie:
                    raise duplicate_error(view, tie)
            quarantine = []
            if view.expect:
                if view.windows:  # the features as of the arrival, over the stored events and these
                    register_pushed(connection, project, [source], extra={source: batch})
                # A window counts events known strictly before t: what is served from just after the arrival.
                quarantine = check_expectations(project, connection, view,
                                                arrived + timedelta(microseconds=1) if view.windows else arrived)
            load = _batch_loader(connection, columns, batch_file)
        if view.windows:
            _append_events(cursor, view, table, load, known_by_watermark=0, watermark=done[0], replaced_after=None,
                           until=arrived, prune=False)
        else:
            _upsert(cursor, view, sql.Identifier(ONLINE, table), columns, load, arrived)
        _set_aside(cursor, view, quarantine, arrived)
    finally:
        batch_file.unlink(missing_ok=True)
        connection.unregister("__fs_push_rows")
    return True
