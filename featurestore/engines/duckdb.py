"""DuckDB: reads source schemas, and binds views to learn their output columns.

Binding runs each definition's own text through DuckDB's binder against empty
tables shaped like the sources, so type errors and unknown columns are found
without touching data, and DuckDB's `LINE n` is the file's line.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from featurestore.errors import FeatureStoreError, first_line
from featurestore.spec import Column

if TYPE_CHECKING:
    import duckdb

__all__ = ["BindError", "Binder", "arrow", "arrow_types", "connect_offline", "describe_duckdb_table", "describe_files", "is_time_type",
           "load_arrow", "add_table", "add_file_view", "describe_relation",
           "errors_as_feature_store_errors", "first_row", "abandon", "table_checksum"]

_TIME_TYPES = re.compile(r"^(DATE|TIMESTAMP(_S|_MS|_NS)?|TIMESTAMP WITH TIME ZONE|TIMESTAMPTZ(_NS)?)$")


class BindError(Exception):
    """DuckDB refused a query; `line` is the line it names (1-based), if any."""

    def __init__(self, message: str, hint: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.hint, self.line = message, hint, line


def is_time_type(duckdb_type: str) -> bool:
    return bool(_TIME_TYPES.match(duckdb_type.upper()))


def describe_files(pattern: str, fmt: str) -> list[Column]:
    """The columns of Parquet or CSV files matching `pattern` (an absolute path or glob)."""
    import duckdb

    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    with duckdb.connect() as connection:
        _utc(connection)
        try:
            rows = connection.execute(f"DESCRIBE SELECT * FROM {reader}($1)", [pattern]).fetchall()
        except duckdb.Error as exc:
            raise BindError(_first_line(exc), "", None) from None
    return [Column(name=name, type=kind) for name, kind, *_ in rows]


def describe_duckdb_table(database: Path, table: str) -> list[Column]:
    """The columns of `table` in the DuckDB file `database`, opened read-only."""
    import duckdb

    if not database.is_file():
        raise BindError(f"the offline database {database} does not exist", "create the table there first", None)
    try:
        with duckdb.connect(str(database), read_only=True) as connection:
            rows = connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = $1 ORDER BY ordinal_position", [table]).fetchall()
    except duckdb.Error as exc:
        raise BindError(_first_line(exc), "is another process writing the offline database?", None) from None
    if not rows:
        raise BindError(f"no table '{table}' in {database}", "create it, or fix the table name", None)
    return [Column(name=name, type=kind) for name, kind in rows]


class Binder:
    """A scratch in-memory database where sources are empty tables and views are views."""

    def __init__(self) -> None:
        import duckdb

        self._duckdb = duckdb
        self._connection: duckdb.DuckDBPyConnection = duckdb.connect()
        _utc(self._connection)

    def __enter__(self) -> Binder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._connection.close()

    def add_table(self, name: str, columns: list[Column]) -> None:
        add_table(self._connection, name, columns)

    def describe(self, sql: str) -> list[Column]:
        """Output columns of a query; `sql` is passed as written, so DuckDB's lines are its lines."""
        try:
            rows = self._connection.execute("DESCRIBE " + sql.rstrip().rstrip(";")).fetchall()
        except self._duckdb.Error as exc:
            raise _bind_error(exc) from None
        return [Column(name=name, type=kind) for name, kind, *_ in rows]

    def add_view(self, name: str, sql: str) -> None:
        from sqlglot import exp

        view = exp.to_identifier(name, quoted=True).sql(dialect="duckdb")
        try:
            self._connection.execute(f"CREATE VIEW {view} AS " + sql.rstrip().rstrip(";"))
        except self._duckdb.Error as exc:
            raise _bind_error(exc) from None


def _bind_error(exc: Exception) -> BindError:
    text = str(exc)
    line_match = re.search(r"^LINE (\d+):", text, re.MULTILINE)
    candidates = re.search(r"^Candidate bindings: (.*)$", text, re.MULTILINE)
    hint = f"did you mean {candidates.group(1).split(',')[0].strip()}?" if candidates else ""
    return BindError(_first_line(exc), hint, int(line_match.group(1)) if line_match else None)


def _first_line(exc: Exception) -> str:
    """The first line of DuckDB's message, without its error class."""
    return re.sub(r"^(Binder|Parser|Catalog|Conversion|IO|Invalid Input|Not implemented) Error: ", "", first_line(exc))


def _utc(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("SET TimeZone = 'UTC'")


def connect_offline(database: Path | None, temp_directory: Path, *, read_only: bool = False,
                    lock_timeout: float = 30.0) -> duckdb.DuckDBPyConnection:
    """The offline database (in memory when `database` is None), in UTC, spilling to `temp_directory`."""
    import duckdb

    if database is None:
        connection = duckdb.connect()
        _utc(connection)
        temp_directory.mkdir(parents=True, exist_ok=True)
        _temp(connection, temp_directory)
        return connection
    database.parent.mkdir(parents=True, exist_ok=True)
    temp_directory.mkdir(parents=True, exist_ok=True)
    # DuckDB lets one process write a database file; another frame may hold it for a moment.
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            connection = duckdb.connect(str(database), read_only=read_only and database.exists())
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise FeatureStoreError(
                    f"cannot open the offline database {database}: {_first_line(exc)}; another process holds it "
                    "(a notebook or a running frame?): close it, or retry when it is done") from None
            time.sleep(0.2)
    _utc(connection)
    _temp(connection, temp_directory)
    return connection


def _temp(connection: duckdb.DuckDBPyConnection, temp_directory: Path) -> None:
    from sqlglot import exp

    connection.execute(f"SET temp_directory = {exp.Literal.string(str(temp_directory)).sql(dialect='duckdb')}")


def load_arrow(connection: duckdb.DuckDBPyConnection, name: str, table: Any) -> None:
    """Make an Arrow table readable as `name` (no copy)."""
    connection.register(name, table)


def arrow(connection: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """Run one statement and return its result as an Arrow table."""
    with errors_as_feature_store_errors():
        return connection.sql(sql).to_arrow_table()


def arrow_types(connection: duckdb.DuckDBPyConnection, types: list[str]) -> list[Any]:
    """The Arrow type DuckDB gives a column of each DuckDB type (as `arrow` would return it)."""
    from sqlglot import exp

    if not types:
        return []
    columns = [exp.alias_(exp.cast(exp.Null(), exp.DataType.build(kind, dialect="duckdb", udt=True)), f"c{number}")
               for number, kind in enumerate(types)]
    return list(arrow(connection, exp.select(*columns).limit(0).sql(dialect="duckdb")).schema.types)


def add_table(connection: duckdb.DuckDBPyConnection, name: str, columns: list[Column], rows: Any = None) -> None:
    """Create table `name` with `columns` (DuckDB types), filled from an Arrow table if given."""
    from sqlglot import exp

    create = exp.Create(
        this=exp.Schema(
            this=exp.to_identifier(name, quoted=True),
            expressions=[exp.ColumnDef(this=exp.to_identifier(c.name, quoted=True),
                                       kind=exp.DataType.build(c.type, dialect="duckdb", udt=True))
                         for c in columns]),
        kind="TABLE", properties=exp.Properties(expressions=[exp.TemporaryProperty()]))
    connection.execute(create.sql(dialect="duckdb"))
    if rows is not None:
        connection.register("__fs_rows", rows)
        insert = exp.insert(exp.select("*").from_("__fs_rows"), exp.to_table(name, quoted=True))
        connection.execute(insert.sql(dialect="duckdb"))
        connection.unregister("__fs_rows")


@contextlib.contextmanager
def errors_as_feature_store_errors() -> Iterator[None]:
    """DuckDB's errors inside the block surface as FeatureStoreError with DuckDB's first line."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        raise FeatureStoreError(_first_line(exc)) from None


def describe_relation(connection: duckdb.DuckDBPyConnection, name: str) -> tuple[Column, ...]:
    from sqlglot import exp

    rows = connection.execute("DESCRIBE " + exp.to_table(name, quoted=True).sql(dialect="duckdb")).fetchall()
    return tuple(Column(name=row[0], type=row[1]) for row in rows)


def add_file_view(connection: duckdb.DuckDBPyConnection, name: str, pattern: str, fmt: str) -> None:
    """A temporary view `name` over Parquet or CSV files, for SQL that names sources."""
    from sqlglot import exp

    reader = exp.Anonymous(this="read_parquet" if fmt == "parquet" else "read_csv",
                           expressions=[exp.Literal.string(pattern)])
    create = exp.Create(this=exp.to_table(name, quoted=True), kind="VIEW",
                        expression=exp.select("*").from_(exp.Table(this=reader)),
                        properties=exp.Properties(expressions=[exp.TemporaryProperty()]))
    connection.execute(create.sql(dialect="duckdb"))


def table_checksum(connection: duckdb.DuckDBPyConnection, table: str) -> list[Any]:
    """Row count and an order-independent sum of row hashes: changes when any row does."""
    from sqlglot import exp

    name = exp.to_table(table, quoted=True).sql(dialect="duckdb")
    count, total = connection.execute(f"SELECT count(*), sum(hash(t)::HUGEINT)::VARCHAR FROM {name} AS t").fetchall()[0]
    return [count, total]


def first_row(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list[Any] | None = None) -> tuple | None:
    """The first row of a query, or None. The result is read to its end: DuckDB refuses new work
    on a connection whose last result is unfinished."""
    rows = connection.execute(sql, parameters or []).fetchall()
    return rows[0] if rows else None


def abandon(connection: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction if DuckDB can; closing the connection discards it anyway."""
    import duckdb

    try:
        connection.execute("ROLLBACK")
    except duckdb.Error:
        pass
