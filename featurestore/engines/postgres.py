"""PostgreSQL: the configured server, or an embedded one under `.featurestore/`.

The embedded server (the `pgserver` package) is shared by every process of a
project: the SDK, the CLI and the HTTP server all reach the same data folder,
and it stops when the last of them exits.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import warnings
from pathlib import Path
from typing import Any

from featurestore.definitions.spec import Column
from featurestore.errors import FeatureStoreError, UnavailableError

__all__ = [
    "BINARY_COPY_TYPES",
    "async_pool",
    "before_release",
    "connect",
    "copy_binary",
    "copy_csv",
    "describe_tables",
    "duckdb_type",
    "encode_binary",
    "lock_key",
    "pool",
    "postgres_type",
    "redact",
    "release_embedded",
    "resolve_url",
    "running_url",
    "table_checksum",
]

_servers: dict[Path, Any] = {}
_before_release: list[Any] = []


def before_release(callback: Any) -> None:
    """Run `callback()` before this process lets go of its embedded servers (at exit too): last writes."""
    if callback not in _before_release:
        _before_release.append(callback)


def _last_writes() -> None:
    for callback in list(_before_release):
        with contextlib.suppress(Exception):
            callback()


def resolve_url(postgres_url: str | None, state_dir: Path) -> str:
    """`postgres_url` when configured; otherwise start (or join) the embedded server."""
    if postgres_url:
        return postgres_url
    pgdata = (state_dir / "pgdata").resolve()
    if pgdata not in _servers:
        pgdata.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
                import pgserver

                _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
            atexit.register(_last_writes)  # after pgserver's own exit hook, so it runs before it
        except Exception as exc:  # pgserver raises bare exceptions with the server log
            raise FeatureStoreError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n"
                f"set FEATURESTORE_POSTGRES_URL to use another server, or delete {pgdata} to start afresh"
            ) from None
    return _servers[pgdata].get_uri()


def running_url(postgres_url: str | None, state_dir: Path) -> str | None:
    """`postgres_url` when configured, the embedded server's when this process runs it, else None.

    For work that should use PostgreSQL if it is at hand but not start a server for itself.
    """
    if postgres_url:
        return postgres_url
    server = _servers.get((state_dir / "pgdata").resolve())
    return server.get_uri() if server is not None else None


def release_embedded() -> None:
    """Let go of the embedded servers this process started; the last process to let go stops one.

    Runs at exit anyway; a server killed by a signal (uvicorn re-raises SIGTERM) must call it itself.
    """
    _last_writes()
    for server in list(_servers.values()):
        server.cleanup()
    _servers.clear()


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
    "TIMESTAMPTZ_NS": "timestamptz", "UUID": "uuid", "INTERVAL": "interval",
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


def copy_csv(cursor: Any, schema: str, table: str, columns: list[str], path: Path) -> None:
    """Stream a headerless CSV file (NULL unquoted-empty, as DuckDB writes it) into `schema.table`."""
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    with cursor.copy(statement) as copy, open(path, "rb") as data:
        while chunk := data.read(1 << 20):
            copy.write(chunk)


# PostgreSQL types COPY can take in binary form from Arrow columns: the DuckDB type to cast to, and the
# NumPy type of the values (bytes of the field, big-endian on the wire; None: text, variable width).
BINARY_COPY_TYPES = {
    "boolean": ("BOOLEAN", "u1"), "smallint": ("SMALLINT", "i2"), "integer": ("INTEGER", "i4"),
    "bigint": ("BIGINT", "i8"), "real": ("FLOAT", "f4"), "double precision": ("DOUBLE", "f8"),
    "text": ("VARCHAR", None), "date": ("DATE", "i4"), "timestamp": ("TIMESTAMP", "i8"),
    "timestamptz": ("TIMESTAMPTZ", "i8"),
}
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def copy_binary(cursor: Any, schema: str, table: str, columns: list[tuple[str, str]], batches: Any) -> None:
    """Stream Arrow record batches into `schema.table` with COPY's binary format.

    `columns`: (name, PostgreSQL type) in the batches' order, each type one of BINARY_COPY_TYPES;
    times in microseconds (UTC for timestamptz). No text is parsed on the server: for a table of
    floats this loads about 3x faster than CSV.
    """
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns))
    kinds = [kind for _, kind in columns]
    with cursor.copy(statement) as copy:
        copy.write(_COPY_HEADER)
        for batch in batches:
            if batch.num_rows:
                copy.write(encode_binary(batch, kinds))
        copy.write(b"\xff\xff")


def encode_binary(batch: Any, kinds: list[str]) -> bytes:
    """The rows of an Arrow record batch as COPY binary tuples (no header or trailer), vectorized.

    Row order is not kept: rows with the same NULL columns share one layout and are written
    together as one NumPy structured array (text columns are scattered byte-wise instead).
    """
    import numpy as np

    rows = batch.num_rows
    valid = [_validity(column, rows) for column in batch.columns]
    if "text" in kinds:
        return _encode_scattered(batch, kinds, valid)
    values = [_fixed_values(column, kind, rows) for column, kind in zip(batch.columns, kinds)]
    pattern = np.zeros(rows, dtype=np.int64)
    nullable = [i for i, v in enumerate(valid) if v is not None]
    for bit, index in enumerate(nullable[:62]):
        pattern |= (~valid[index]).astype(np.int64) << bit
    if len(nullable) > 62:
        return _encode_scattered(batch, kinds, valid)
    parts = []
    for key in np.unique(pattern):
        chosen = np.flatnonzero(pattern == key)
        nulls = {index for bit, index in enumerate(nullable) if key >> bit & 1}
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for i, kind in enumerate(kinds):
            fields.append((f"l{i}", ">i4"))
            if i not in nulls:
                fields.append((f"v{i}", ">" + BINARY_COPY_TYPES[kind][1]))
        layout = np.empty(len(chosen), dtype=np.dtype(fields))
        layout["n"] = len(kinds)
        for i, _kind in enumerate(kinds):
            if i in nulls:
                layout[f"l{i}"] = -1
            else:
                layout[f"l{i}"] = layout.dtype[f"v{i}"].itemsize
                layout[f"v{i}"] = values[i][chosen]
        parts.append(layout.tobytes())
    return b"".join(parts)


def _validity(column: Any, rows: int) -> Any:
    """A boolean NumPy array of which rows hold a value, or None when all do."""
    import numpy as np

    if column.null_count == 0:
        return None
    bits = np.frombuffer(column.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[column.offset:column.offset + rows].astype(bool)


def _fixed_values(column: Any, kind: str, rows: int) -> Any:
    """A fixed-width column's values as NumPy, in PostgreSQL's units (NULL slots hold anything)."""
    import numpy as np

    buffer = column.buffers()[1]
    if kind == "boolean":
        bits = np.frombuffer(buffer, dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[column.offset:column.offset + rows]
    values = np.frombuffer(buffer, dtype="<" + BINARY_COPY_TYPES[kind][1])[column.offset:column.offset + rows]
    if kind == "date":
        return values - _PG_EPOCH_DAYS
    if kind in ("timestamp", "timestamptz"):
        return values - _PG_EPOCH_DAYS * 86_400_000_000
    return values


def _encode_scattered(batch: Any, kinds: list[str], valid: list[Any]) -> bytes:
    """`encode_binary` for batches with text: each field's bytes scattered to its place in the output."""
    import numpy as np
    import pyarrow as pa

    rows = batch.num_rows
    valid = [np.ones(rows, dtype=bool) if v is None else v for v in valid]
    fields: list[tuple[Any, Any]] = []  # per column: field sizes, and its encoder's data
    for column, kind, present in zip(batch.columns, kinds, valid):
        if kind == "text":
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                column = column.cast(pa.large_string())
            width = np.int64 if pa.types.is_large_string(column.type) else np.int32
            offsets = np.frombuffer(column.buffers()[1], dtype=width)[column.offset:column.offset + rows + 1]
            offsets = offsets.astype(np.int64)
            lengths = np.where(present, np.diff(offsets), 0)
            data = np.frombuffer(column.buffers()[2], dtype=np.uint8) if column.buffers()[2] is not None else \
                np.empty(0, dtype=np.uint8)
            fields.append((4 + lengths, (offsets[:-1], lengths, data)))
            continue
        encoded = np.ascontiguousarray(_fixed_values(column, kind, rows).astype(">" + BINARY_COPY_TYPES[kind][1]))
        encoded = encoded.view(np.uint8).reshape(rows, -1)
        fields.append((np.where(present, 4 + encoded.shape[1], 4), encoded))
    sizes = 2 + sum(size for size, _ in fields)
    starts = np.zeros(rows, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    out = np.empty(int(starts[-1] + sizes[-1]), dtype=np.uint8)
    count = np.array([len(kinds)], dtype=">i2").view(np.uint8)
    out[starts] = count[0]
    out[starts + 1] = count[1]
    position = starts + 2
    four = np.arange(4)
    for (size, data), kind, present in zip(fields, kinds, valid):
        lengths = np.where(present, size - 4, -1).astype(">i4").view(np.uint8).reshape(rows, 4)
        out[position[:, None] + four] = lengths
        if kind == "text":
            sources, counts, buffer = data
            total = int(counts.sum())
            if total:
                within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
                out[np.repeat(position + 4, counts) + within] = buffer[np.repeat(sources, counts) + within]
        else:
            out[(position[present] + 4)[:, None] + np.arange(data.shape[1])] = data[present]
        position = position + size
    return out.tobytes()


def pool(url: str, max_size: int = 4) -> Any:
    """A connection pool whose connections prepare every statement (lookups run the same few)."""
    from psycopg_pool import ConnectionPool

    # Opened without waiting: while the server is down, callers time out and report it, and the
    # pool keeps reconnecting in the background, so service resumes by itself when it is back.
    return ConnectionPool(url, min_size=1, max_size=max_size, open=True, timeout=10,
                          kwargs={"autocommit": True, "prepare_threshold": 0})


async def async_pool(url: str, max_size: int = 8) -> Any:
    """`pool` for asyncio: opened in the running event loop, without waiting for the server."""
    from psycopg_pool import AsyncConnectionPool

    result = AsyncConnectionPool(url, min_size=1, max_size=max_size, open=False, timeout=10,
                                 kwargs={"autocommit": True, "prepare_threshold": 0})
    await result.open(wait=False)
    return result
