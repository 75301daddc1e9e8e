"""DuckDB: reads source schemas, and binds views to learn their output columns.

Binding runs each definition's own text through DuckDB's binder against empty
tables shaped like the sources, so type errors and unknown columns are found
without touching data, and DuckDB's `LINE n` is the file's line.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.definitions.spec import Column
from featurestore.errors import FeatureStoreError, first_line

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "BindError",
    "Binder",
    "abandon",
    "add_file_view",
    "add_table",
    "arrow",
    "arrow_types",
    "describe_duckdb_table",
    "describe_files",
    "describe_relation",
    "errors_as_feature_store_errors",
    "first_row",
    "hold",
    "is_time_type",
    "load_arrow",
    "offline",
    "scratch",
    "table_checksum",
]

_TIME_TYPES = re.compile(r"^(DATE|TIMESTAMP(_S|_MS|_NS)?|TIMESTAMP WITH TIME ZONE|TIMESTAMPTZ(_NS)?)$")


class BindError(Exception):
    """DuckDB refused a query; `line` is the line it names (1-based), if any."""

    def __init__(self, message: str, hint: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.hint, self.line = message, hint, line


def is_time_type(duckdb_type: str) -> bool:
    return bool(_TIME_TYPES.match(duckdb_type.upper()))


def describe_files(connection: duckdb.DuckDBPyConnection, pattern: str, fmt: str) -> list[Column]:
    """The columns of Parquet or CSV files matching `pattern` (an absolute path or glob)."""
    import duckdb

    reader = "read_parquet" if fmt == "parquet" else "read_csv"
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
    """A scratch connection (`scratch`) where sources are empty temporary tables and views temporary views."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        import duckdb

        self._duckdb = duckdb
        self._connection = connection

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
            self._connection.execute(f"CREATE TEMP VIEW {view} AS " + sql.rstrip().rstrip(";"))
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


def _in_utc(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("SET TimeZone = 'UTC'")


class _Instance:
    """One in-memory DuckDB of a project, shared by its open FeatureStores in this process.

    Creating a DuckDB database costs ~20 ms (its catalog of functions); a cursor of a live one ~0.3 ms,
    and attaching the offline database file to it ~1 ms. A frame opens several connections (binding
    the definitions, reading source schemas, checking the cache, the frame itself), so an open store
    keeps one instance and hands out cursors. The offline file is attached only while some cursor
    reads it (read-only, shared) or one writes it (alone), so other processes can write it between calls.
    """

    def __init__(self, temp_directory: Path) -> None:
        self.temp_directory = temp_directory
        self.holders = 0
        self.base: duckdb.DuckDBPyConnection | None = None
        self.changed = threading.Condition()
        self.readers = 0
        self.writing = False
        self.attached: Path | None = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self.changed:
            cursor = self._base().cursor()
        _in_utc(cursor)
        return cursor

    def _base(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        if self.base is None:
            self.base = duckdb.connect()
            self.temp_directory.mkdir(parents=True, exist_ok=True)
            _temp(self.base, self.temp_directory)
        return self.base

    @contextlib.contextmanager
    def offline(self, database: Path, *, read_only: bool, lock_timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.changed:
            self.changed.wait_for(lambda: not self.writing and (read_only or self.readers == 0))
            if self.readers == 0:
                self._attach(database, read_only, lock_timeout)
            if read_only:
                self.readers += 1
            else:
                self.writing = True
        cursor = None
        try:
            cursor = self.cursor()
            cursor.execute(f"USE {_ALIAS}")
            yield cursor
        finally:
            if cursor is not None:
                cursor.close()
            with self.changed:
                if read_only:
                    self.readers -= 1
                else:
                    self.writing = False
                if self.readers == 0:
                    self._detach()
                self.changed.notify_all()

    def _attach(self, database: Path, read_only: bool, lock_timeout: float) -> None:
        import duckdb
        from sqlglot import exp

        base = self._base()
        path = exp.Literal.string(str(database)).sql(dialect="duckdb")
        _retry_locked(database, lock_timeout, lambda: base.execute(
            f"ATTACH {path} AS {_ALIAS}" + (" (READ_ONLY)" if read_only else "")), duckdb.Error)
        self.attached = database

    def _detach(self) -> None:
        if self.attached is not None and self.base is not None:
            self.base.execute(f"DETACH {_ALIAS}")  # checkpoints what a writer wrote
            self.attached = None

    def close(self) -> None:
        with self.changed:
            if self.base is not None:
                self.base.close()
                self.base = None


_ALIAS = "__fs_offline"
_INSTANCES: dict[Path, _Instance] = {}
# Re-entrant: a store the garbage collector frees releases its instance from a finalizer, which can
# run on a thread that already holds this lock (inside `hold` or `release`, at any allocation).
_INSTANCES_LOCK = threading.RLock()


def hold(temp_directory: Path) -> Callable[[], None]:
    """Keep one DuckDB instance for the project whose spill folder is `temp_directory` until the
    returned function is called (a FeatureStore holds it while open; it is created at first use)."""
    with _INSTANCES_LOCK:
        instance = _INSTANCES.get(temp_directory)
        if instance is None:
            instance = _INSTANCES[temp_directory] = _Instance(temp_directory)
        instance.holders += 1
    released = False

    def release() -> None:
        # A finalizer may run this in the middle of `hold` on the same thread (hence the re-entrant
        # lock); if it retires the instance `hold` just took, that store falls back to new connections.
        nonlocal released
        with _INSTANCES_LOCK:
            if released:
                return
            released = True
            instance.holders -= 1
            if instance.holders <= 0:
                if _INSTANCES.get(temp_directory) is instance:
                    del _INSTANCES[temp_directory]
                instance.close()
    return release


def _held(temp_directory: Path) -> _Instance | None:
    with _INSTANCES_LOCK:
        return _INSTANCES.get(temp_directory)


@contextlib.contextmanager
def scratch(temp_directory: Path, *, spill: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection in UTC, spilling to `temp_directory`: a cursor of the project's
    instance while a store holds it (`hold`), else a new database, closed after the block (which
    creates `temp_directory` only if it may `spill`: checking definitions writes nothing)."""
    instance = _held(temp_directory)
    if instance is not None:
        connection = instance.cursor()
    else:
        import duckdb

        connection = duckdb.connect()
        _in_utc(connection)
        if spill:
            temp_directory.mkdir(parents=True, exist_ok=True)
            _temp(connection, temp_directory)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def offline(database: Path, temp_directory: Path, *, read_only: bool = False,
            lock_timeout: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """The offline database file, in UTC, spilling to `temp_directory`; read-only, a missing file
    reads as an empty in-memory database. While a store holds the project's instance (`hold`), the
    file is attached to it (read-only by any number of callers, for writing by one at a time); else
    it is opened for the block. Another process holding the file for writing is waited for up to
    `lock_timeout` seconds."""
    if read_only and not database.exists():
        with scratch(temp_directory) as connection:
            yield connection
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    instance = _held(temp_directory)
    if instance is not None:
        with instance.offline(database, read_only=read_only, lock_timeout=lock_timeout) as connection:
            yield connection
        return
    import duckdb

    temp_directory.mkdir(parents=True, exist_ok=True)
    connection = _retry_locked(database, lock_timeout, lambda: duckdb.connect(str(database), read_only=read_only),
                               duckdb.IOException)
    try:
        _in_utc(connection)
        _temp(connection, temp_directory)
        yield connection
    finally:
        connection.close()


def _retry_locked(database: Path, lock_timeout: float, open_: Callable[[], Any], errors: type[Exception]) -> Any:
    """`open_()`, retried while another process holds the database file: DuckDB lets one process
    write a database file, and another frame may hold it for a moment."""
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return open_()
        except errors as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise FeatureStoreError(
                    f"cannot open the offline database {database}: {_first_line(exc)}; another process holds it "
                    "(a notebook or a running frame?): close it, or retry when it is done") from None
            time.sleep(0.2)


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


def add_file_view(connection: duckdb.DuckDBPyConnection, name: str, pattern: str, fmt: str,
                  also: str | None = None) -> None:
    """A temporary view `name` over Parquet or CSV files (and the relation `also`, by column name),
    for SQL that names sources."""
    from sqlglot import exp

    reader = exp.Anonymous(this="read_parquet" if fmt == "parquet" else "read_csv",
                           expressions=[exp.Literal.string(pattern)])
    query: exp.Query = exp.select("*").from_(exp.Table(this=reader))
    if also is not None:
        query = exp.Union(this=query, expression=exp.select("*").from_(exp.to_table(also, quoted=True)),
                          distinct=False, by_name=True)
    create = exp.Create(this=exp.to_table(name, quoted=True), kind="VIEW",
                        expression=query,
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

    with contextlib.suppress(duckdb.Error):
        connection.execute("ROLLBACK")
