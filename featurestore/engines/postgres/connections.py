"""Connections to PostgreSQL (one-off, pooled, asynchronous), its catalog, and its types as DuckDB's.

    with connect(url) as connection: ...
    describe_tables(url, [("public", "accounts")])   # {(schema, table): [Column, ...]}
"""

from __future__ import annotations

import re
from typing import Any

from featurestore.definitions.spec import Column
from featurestore.errors import UnavailableError

__all__ = ["async_pool", "connect", "describe_tables", "duckdb_type", "fetch_arrow", "lock_key", "pool",
           "postgres_type", "redact", "table_checksum"]


def connect(url: str, *, retries: tuple[float, ...] = (0.25, 1.0), **kwargs: Any) -> Any:
    """A psycopg connection, with a clear error when the server cannot be reached.

    A failed attempt is retried after each delay in `retries` (a server restarting, a full
    connection slot), then reported naming the URL without its password.
    """
    import time

    import psycopg

    for delay in (*retries, None):
        try:
            return psycopg.connect(url, **kwargs)
        except psycopg.OperationalError as exc:
            if delay is not None:
                time.sleep(delay)
                continue
            raise UnavailableError(
                f"cannot connect to PostgreSQL at {redact(url)}: {str(exc).strip()}\n"
                "check FEATURESTORE_POSTGRES_URL or [online] postgres_url in featurestore.toml"
            ) from None
    raise AssertionError("unreachable")


def describe_tables(url: str, tables: list[tuple[str, str]]) -> dict[tuple[str, str], list[Column]]:
    """Columns (as DuckDB types) of each (schema, table) that exists; missing ones are absent."""
    found: dict[tuple[str, str], list[Column]] = {}
    if not tables:
        return found
    with connect(url) as connection:
        rows = connection.execute(
            """
            SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
            ORDER BY n.nspname, c.relname, a.attnum
            """,
            ([s for s, _ in tables], [t for _, t in tables]),
        ).fetchall()
    for schema, table, column, pg_type in rows:
        found.setdefault((schema, table), []).append(Column(name=column, type=duckdb_type(pg_type)))
    return found


_SIMPLE = {
    "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "real": "FLOAT",
    "double precision": "DOUBLE", "boolean": "BOOLEAN", "text": "VARCHAR", "date": "DATE",
    "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "time without time zone": "TIME", "bytea": "BLOB", "uuid": "UUID", "interval": "INTERVAL",
    "json": "VARCHAR", "jsonb": "VARCHAR", "numeric": "DOUBLE",
}


def duckdb_type(pg_type: str) -> str:
    """The DuckDB type that holds a PostgreSQL type's values without loss (or as text)."""
    if pg_type.endswith("[]"):
        return duckdb_type(pg_type[:-2]) + "[]"
    base = re.sub(r"\(.*\)", "", pg_type).strip()
    if base == "numeric":
        match = re.match(r"numeric\((\d+),(\d+)\)", pg_type)
        if match and int(match.group(1)) <= 38:
            return f"DECIMAL({match.group(1)},{match.group(2)})"
        return "DOUBLE"
    if base.startswith("timestamp") and "with time zone" in pg_type:
        return "TIMESTAMP WITH TIME ZONE"
    if base.startswith("timestamp"):
        return "TIMESTAMP"
    return _SIMPLE.get(base, "VARCHAR")


def redact(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def fetch_arrow(url: str, schema: str, table: str) -> Any:
    """All rows of `schema.table` as an Arrow table (names validated by the config, quoted here)."""
    import pyarrow as pa
    from psycopg import sql

    with connect(url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        cursor = connection.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table)))
        names = [d.name for d in cursor.description]
        rows = cursor.fetchall()
    return pa.table({name: pa.array([row[i] for row in rows]) for i, name in enumerate(names)})


def table_checksum(url: str, schema: str, table: str) -> list[Any]:
    """Row count and an order-independent sum of row hashes, computed inside PostgreSQL."""
    from psycopg import sql

    query = sql.SQL("SELECT count(*), sum(hashtextextended(t::text, 0))::text FROM {} AS t").format(
        sql.Identifier(schema, table))
    with connect(url) as connection:
        row = connection.execute(query).fetchone()
    return list(row) if row else []


_POSTGRES = {
    "BOOLEAN": "boolean", "TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer",
    "BIGINT": "bigint", "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)", "HUGEINT": "numeric(39,0)", "FLOAT": "real", "DOUBLE": "double precision",
    "VARCHAR": "text", "DATE": "date", "TIME": "time", "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp", "TIMESTAMP_NS": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIMESTAMPTZ_NS": "timestamptz", "UUID": "uuid",
}


def postgres_type(duckdb_type: str) -> str:
    """The PostgreSQL type that holds a DuckDB type's values; ValueError for types with no online form."""
    kind = duckdb_type.upper()
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", kind)
    if match:
        return f"numeric({match.group(1)},{match.group(2)})"
    if kind not in _POSTGRES:
        raise ValueError(f"type {duckdb_type} has no online form; cast it in the view (e.g. to VARCHAR or DOUBLE)")
    return _POSTGRES[kind]


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"featurestore:{name}".encode()).digest()[:8], "big", signed=True)


def pool(url: str, max_size: int = 4) -> Any:
    """A pool of lookup connections: each prepares every statement (lookups run the same few) and
    loads values as training frames hold them (`_frame_values`)."""
    from psycopg_pool import ConnectionPool

    # Opened without waiting: while the server is down, callers time out and report it, and the
    # pool keeps reconnecting in the background, so service resumes by itself when it is back.
    return ConnectionPool(url, min_size=1, max_size=max_size, open=True, timeout=10, configure=_frame_values,
                          kwargs={"autocommit": True, "prepare_threshold": 0})


async def async_pool(url: str, max_size: int = 8) -> Any:
    """`pool` for asyncio: opened in the running event loop, without waiting for the server.

    It opens connections only when asked (min_size 0): a background connection attempt that
    `asyncio.run` cancels at the end of its loop would otherwise be retried and hang the exit.
    """
    from psycopg_pool import AsyncConnectionPool

    async def configure(connection: Any) -> None:
        _frame_values(connection)

    result = AsyncConnectionPool(url, min_size=0, max_size=max_size, open=False, timeout=10, configure=configure,
                                 kwargs={"autocommit": True, "prepare_threshold": 0})
    await result.open(wait=False)
    return result


def _frame_values(connection: Any) -> None:
    """Make `connection` load values as a training frame holds them: a uuid as its text (DuckDB hands
    frames UUIDs as strings), where psycopg would make a `uuid.UUID`."""
    from psycopg.types.uuid import UUIDBinaryLoader, UUIDLoader

    class UUIDTextLoader(UUIDLoader):
        def load(self, data: Any) -> str:
            return str(super().load(data))

    class UUIDBinaryTextLoader(UUIDBinaryLoader):
        def load(self, data: Any) -> str:
            return str(super().load(data))

    connection.adapters.register_loader("uuid", UUIDTextLoader)
    connection.adapters.register_loader("uuid", UUIDBinaryTextLoader)
