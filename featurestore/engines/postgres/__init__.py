"""PostgreSQL: the configured server, or an embedded one under `.featurestore/`.

    connections   one-off, pooled and asynchronous connections, the catalog, types as DuckDB's
    embedded      the embedded server (`pgserver`), shared by every process of a project
    copy          Arrow batches into tables with binary COPY (CSV where a type has no encoder)

Callers use `from featurestore.engines import postgres` and `postgres.<name>`: every public name
of the three modules is here.
"""

from __future__ import annotations

from featurestore.engines.postgres.connections import (
    async_pool,
    connect,
    describe_tables,
    duckdb_type,
    fetch_arrow,
    lock_key,
    pool,
    postgres_type,
    redact,
    table_checksum,
)
from featurestore.engines.postgres.copy import BINARY_COPY_TYPES, copy_binary, copy_csv, encode_binary
from featurestore.engines.postgres.embedded import before_release, release_embedded, resolve_url, running_url

__all__ = ["BINARY_COPY_TYPES", "async_pool", "before_release", "connect", "copy_binary", "copy_csv", "describe_tables",
           "duckdb_type", "encode_binary", "fetch_arrow", "lock_key", "pool", "postgres_type", "redact",
           "release_embedded", "resolve_url", "running_url", "table_checksum"]
