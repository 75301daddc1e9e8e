"""The online store's read path: features of entities as of an instant, from PostgreSQL.

    OnlineStore(project).lookup({"user_id": [1, 2]}, ["user_daily_stats.*"], at=T)   # → polars

A snapshot view's value is the latest materialized row of each entity; a window view's is
aggregated at lookup from its recent events (`compiler.lookup`), exactly as a frame would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurestore.compiler.lookup import LookupView, lookup, lookup_by_key
from featurestore.definitions.selection import by_view, select_features
from featurestore.definitions.spec import INTEGER_TYPES, FeatureView
from featurestore.engines import postgres
from featurestore.errors import BadRequestError, UnavailableError
from featurestore.instants import as_utc
from featurestore.online.materialize import SCHEMA
from featurestore.project import Project

__all__ = ["OnlineStore", "rows_frame"]


_WAIT_FOR_CONNECTION = 3.0  # seconds a lookup waits for a pooled connection before reporting it unavailable
# Lookups fetch results in binary (`execute(..., binary=True)`): no text to format on the server
# and parse here, a third less time for 100 entities x 10 doubles, the same for one.


class OnlineStore:
    """Lookups of materialized views, over a small pool of prepared connections."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._pool: Any = None
        # One pooled connection kept out of the pool for whichever lookup finds it free: taking one
        # from the pool and giving it back costs more than a lookup's statement on a warm server.
        self._kept: Any = None
        self._kept_lock = threading.Lock()
        self._async: _LoopPool | None = None  # the asynchronous pool of the last event loop that looked up
        self._plans: dict[Any, tuple[str, list[tuple[str, str]], Any, list[FeatureView], bool]] = {}

    def close(self) -> None:
        with self._kept_lock:
            if self._kept is not None:
                self._pool.putconn(self._kept)
                self._kept = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        self.close()
        if self._async is not None and self._async.loop is asyncio.get_running_loop():
            await self._async.close()
        self._async = None

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
                 full_names: bool) -> _Request:
        requested = _entity_lists(entities)
        plan_key = (tuple([features] if isinstance(features, str) else features), full_names, tuple(requested))
        if plan_key not in self._plans:
            self._plans[plan_key] = self._plan(features, full_names, list(requested))
        statement, keys, schema, views, by_key = self._plans[plan_key]
        count = _check_entities(requested, keys, views)
        parameters: dict[str, Any] = {f"k{i}": _array_text(requested[name], kind)
                                      for i, (name, kind) in enumerate(keys)}
        parameters["at"] = as_utc(at) if at is not None else datetime.now(UTC)
        return _Request(statement, parameters, schema, views, requested[keys[0][0]] if by_key else None, count)

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
                    keys.append((key, types[key].upper()))  # upper case once, for the checks of every lookup
        items = [LookupView(v, (SCHEMA, f"{v.name}__{v.version}"), tuple(grouped[v.name]), tuple(
            (c.name, postgres.postgres_type(c.type)) for c in v.columns if v.windows and c.name not in v.entity))
            for v in views]
        pg_keys = [(name, postgres.postgres_type(kind)) for name, kind in keys]
        # One view with one integer or text key (the usual serving lookup) has a cheaper statement.
        by_key = len(items) == 1 and len(keys) == 1 and not views[0].windows and (
            keys[0][1] in INTEGER_TYPES or keys[0][1] == "VARCHAR")
        query = lookup_by_key(items[0], pg_keys[0][1]) if by_key else lookup(items, pg_keys)
        columns = keys + [(s.output, s.feature.type) for item in items for s in item.selected]
        return query.sql(dialect="postgres"), keys, _polars_schema(columns), views, by_key

    def connection(self) -> Any:
        """A pooled connection for a write (a push), as a context manager that gives it back."""
        if self._pool is None:
            self._pool = postgres.pool(self._url())
        return self._pool.connection(timeout=_WAIT_FOR_CONNECTION)

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
        try:
            if self._kept_lock.acquire(blocking=False):
                try:
                    return self._fetch_kept(statement, parameters)
                finally:
                    self._kept_lock.release()
            with self._pool.connection(timeout=_WAIT_FOR_CONNECTION) as connection:
                return connection.execute(statement, parameters, binary=True).fetchall()
        except Exception as exc:
            raise _store_error(exc, views) from None

    def _fetch_kept(self, statement: str, parameters: dict[str, Any]) -> list[tuple]:
        """Run on the kept connection (the caller holds its lock).

        After an error it goes back to the pool, which replaces it if it is broken, and the next
        lookup takes another. A lookup only reads, so one that found its connection closed under it
        (a restarted server, a dropped connection) runs again once, on a connection from the pool,
        whose idle connections are checked first.
        """
        for attempt in (1, 2):
            if self._kept is None:
                self._kept = self._pool.getconn(timeout=_WAIT_FOR_CONNECTION)
            try:
                return self._kept.execute(statement, parameters, binary=True).fetchall()
            except BaseException:
                kept, self._kept = self._kept, None
                dropped = kept.broken  # before the pool closes it
                self._pool.putconn(kept)
                if attempt == 2 or not dropped:
                    raise
                self._pool.check()  # the pooled ones were likely dropped with it: replace those too
        raise AssertionError("unreachable")

    async def _fetch_async(self, statement: str, parameters: dict[str, Any], views: list[FeatureView]) -> list[tuple]:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async.loop is not loop:  # a pool works in the event loop it was opened in
            self._async = await _LoopPool.open(self._url(), loop)
        try:
            return await self._async.fetch(statement, parameters)
        except Exception as exc:
            raise _store_error(exc, views) from None


class _LoopPool:
    """The asynchronous pool of one event loop, and the connection kept out of it (as `OnlineStore`
    keeps one for threads). Closed by `OnlineStore.aclose()`, or else when its loop shuts down:
    `asyncio.run` finalizes the loop's async generators, and one of them closes the pool."""

    def __init__(self, pool: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.pool, self.loop = pool, loop
        self.kept: Any = None
        self.busy = False  # an event loop runs one coroutine at a time: a flag is the kept connection's lock
        self._closer: Any = None

    @classmethod
    async def open(cls, url: str, loop: asyncio.AbstractEventLoop) -> _LoopPool:
        opened = cls(await postgres.async_pool(url), loop)

        async def close_with_the_loop() -> AsyncIterator[None]:
            try:
                yield
            finally:
                # asyncio.run has cancelled the pool's own tasks by now, so closing the pool ends
                # in CancelledError: the kept connection (the only one, unless lookups ran
                # concurrently) is closed first, directly.
                with contextlib.suppress(asyncio.CancelledError):
                    await opened.close()

        opened._closer = close_with_the_loop()
        await opened._closer.__anext__()
        return opened

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is None:
            return
        kept, self.kept = self.kept, None
        if kept is not None:
            await kept.close()
        await pool.close()

    async def fetch(self, statement: str, parameters: dict[str, Any]) -> list[tuple]:
        if not self.busy:
            self.busy = True
            try:
                return await self._fetch_kept(statement, parameters)
            finally:
                self.busy = False
        async with self.pool.connection(timeout=_WAIT_FOR_CONNECTION) as connection:
            cursor = await connection.execute(statement, parameters, binary=True)
            return await cursor.fetchall()

    async def _fetch_kept(self, statement: str, parameters: dict[str, Any]) -> list[tuple]:
        """`OnlineStore._fetch_kept` for the asynchronous pool."""
        for attempt in (1, 2):
            if self.kept is None:
                self.kept = await self.pool.getconn(timeout=_WAIT_FOR_CONNECTION)
            try:
                cursor = await self.kept.execute(statement, parameters, binary=True)
                return await cursor.fetchall()
            except BaseException:
                kept, self.kept = self.kept, None
                dropped = kept.broken  # before the pool closes it
                await self.pool.putconn(kept)
                if attempt == 2 or not dropped:
                    raise
                await self.pool.check()
        raise AssertionError("unreachable")


@dataclass(slots=True)
class _Request:
    """A lookup ready to run: its statement and parameters, and how to shape the rows it returns."""

    statement: str
    parameters: dict[str, Any]
    schema: Any
    views: list[FeatureView]
    by_key: list[Any] | None  # the keys asked for, when rows come back by key
    count: int

    def result(self, rows: list[tuple], columns: bool) -> Any:
        if self.by_key is not None:  # rows came back by key, in no order: put them in request order, NULLs for the rest
            found = {row[0]: row for row in rows}
            missing = (None,) * (len(self.schema) - 1)
            rows = [found.get(value) or (value, *missing) for value in self.by_key]
        if columns:
            names = list(self.schema)
            values = list(zip(*rows)) if rows else [()] * len(names)
            return {name: list(column) for name, column in zip(names, values)}
        return rows_frame(rows, self.schema)


def _store_error(exc: Exception, views: list[FeatureView]) -> Exception:
    """psycopg's errors as the store's: what a caller can fix, or that the online store is unavailable;
    any other error as it is."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, psycopg.errors.UndefinedTable):
        missing = ", ".join(f"'{v.name}'" for v in views)
        return UnavailableError(f"a view of {missing} is not materialized in its current version; run "
                                "`featurestore materialize`")
    if isinstance(exc, psycopg.DataError):  # e.g. a key beyond its column's range
        return BadRequestError(f"an entity key does not fit its column: {str(exc).strip()}")
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):  # the pool reconnects once the server is back
        return UnavailableError(f"PostgreSQL is unreachable: {str(exc).strip()}")
    return exc


def _entity_lists(entities: Any) -> dict[str, list[Any]]:
    """A mapping of key column to values, from a mapping of lists or a DataFrame/Arrow table."""
    if type(entities) is dict and all(type(values) is list for values in entities.values()):  # the usual case
        return entities
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
        wanted = "integers" if kind in INTEGER_TYPES else "strings" if kind == "VARCHAR" else None
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


def _array_text(values: list[Any], kind: str) -> Any:
    """Integer or text keys (checked by `_check_entities`) as PostgreSQL's array text, `{1,NULL,3}`
    or `{"a","b \\"c\\""}`, for the statement's cast to an array of the key's type: psycopg's dumping
    of a list costs more (12 µs of a one-entity lookup, 45 µs of a 100-entity one). Other keys as
    they are. Either way a parameter, never SQL text."""
    if kind in INTEGER_TYPES:
        return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"
    if kind == "VARCHAR":
        return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for v in values) + "}"
    return values


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

