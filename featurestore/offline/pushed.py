"""Rows pushed into a source, as the offline engines read them: the source is its own files plus these.

    register_pushed(connection, project, ["card_events"])   # DuckDB view "__fs_pushed_card_events"
    pushed_state(project, "card_events")                    # [last batch, landed rows, compacted files]

A source that names its arrival column (`[sources.x] arrival = "…"`) accepts pushes
(`online.push`). Pushed rows live in the store's own space, never in the user's files: first in
a landing table in PostgreSQL (`featurestore_push."<source>"`, written in the same transaction
as the online rows), then, after `compact`, in Parquet files under `.featurestore/pushed/`
listed by a manifest table (`featurestore_push.files`). A reader takes the landing table and the
manifest in one snapshot, so a row is read once whether it is landed, compacted, or being moved.
The compiled SQL reads such a source as

    (SELECT * FROM read_parquet('<its files>') UNION ALL BY NAME SELECT * FROM "__fs_pushed_<source>")
"""

from __future__ import annotations

from typing import Any

from featurestore.config import FileSource
from featurestore.definitions.spec import Column
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.project import Project

__all__ = ["SCHEMA", "landed_rows", "landed_table", "pushable", "pushed_relation", "pushed_state", "register_pushed",
           "schema_exists"]

SCHEMA = "featurestore_push"


def pushable(project: Project, name: str) -> bool:
    """Whether the source accepts pushes: a file source that names its arrival column."""
    source = project.settings.sources.get(name)
    return isinstance(source, FileSource) and source.arrival is not None


def pushed_relation(name: str) -> str:
    """The DuckDB relation holding the source's pushed rows (`register_pushed`)."""
    return f"__fs_pushed_{name}"


def landed_table(name: str) -> tuple[str, str]:
    """The landing table of a source's pushed rows: (schema, table)."""
    return SCHEMA, name


def schema_exists(connection: Any) -> bool:
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.batches"]).fetchone()[0]


def register_pushed(connection: Any, project: Project, names: list[str], extra: dict[str, Any] | None = None) -> None:
    """Make each source's pushed rows readable in DuckDB as `pushed_relation(name)`, in the source's
    columns and types: the landed rows and the compacted files, read in one PostgreSQL snapshot,
    and the rows in `extra` (Arrow, by source: a push checking what it is about to write)."""
    if not names:
        return
    settings = project.settings
    url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
    with postgres.connect(url) as pg, pg.transaction():
        pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        pg.execute("SET TIME ZONE 'UTC'")
        ready = schema_exists(pg)
        for name in names:
            columns = list(project.sources[name])
            landed, files = _read(pg, project, name) if ready else (None, [])
            _register(connection, name, columns, landed, [str(settings.state_dir / path) for path in files])
            if extra and name in extra:
                connection.register("__fs_extra", extra[name])
                connection.execute(f'INSERT INTO "__fs_landed_{name}" BY NAME SELECT * FROM __fs_extra')
                connection.unregister("__fs_extra")


def _read(pg: Any, project: Project, name: str) -> tuple[Any, list[str]]:
    """The landed rows (Arrow, or None if the source was never pushed to) and the compacted files."""
    files = [row[0] for row in pg.execute(f"SELECT path FROM {SCHEMA}.files WHERE source = %s ORDER BY path",
                                          [name]).fetchall()]
    if not pg.execute("SELECT to_regclass(%s) IS NOT NULL", [f'{SCHEMA}."{name}"']).fetchone()[0]:
        return None, files
    return landed_rows(pg, project, name), files


def landed_rows(pg: Any, project: Project, name: str, batches: list[int] | None = None) -> Any:
    """The source's landed rows (of `batches`, or all) as an Arrow table in the source's types, read by
    COPY as CSV and parsed by Arrow: times and dates leave PostgreSQL as whole numbers (µs, days), exact."""
    import io

    import pyarrow as pa
    import pyarrow.csv as csv
    from psycopg import sql

    columns = list(project.sources[name])
    with duck.scratch(project.settings.temp_directory, spill=False) as connection:
        types = duck.arrow_types(connection, [c.type for c in columns])
    selected, read_as = [], {}
    for column, kind in zip(columns, types):
        field = sql.Identifier(column.name)
        if pa.types.is_timestamp(kind):
            zone = "" if kind.tz else " AT TIME ZONE 'UTC'"
            selected.append(sql.SQL("(extract(epoch FROM {}{}) * 1000000)::bigint").format(field, sql.SQL(zone)))
            read_as[column.name] = pa.int64()
        elif pa.types.is_date(kind):
            selected.append(sql.SQL("({} - DATE '1970-01-01')").format(field))
            read_as[column.name] = pa.int32()
        else:
            selected.append(field)
            read_as[column.name] = kind if not pa.types.is_boolean(kind) else pa.bool_()
    chosen = sql.SQL("") if batches is None else sql.SQL(" WHERE {} = ANY({})").format(
        sql.Identifier("__fs_batch"), sql.Literal(batches))
    query = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(selected), sql.Identifier(*landed_table(name)), chosen)
    data = io.BytesIO()
    with pg.cursor().copy(query) as copy:
        for chunk in copy:
            data.write(chunk)
    data.seek(0)
    names = [c.name for c in columns]
    table = csv.read_csv(data, read_options=csv.ReadOptions(column_names=names), convert_options=csv.ConvertOptions(
        column_types=read_as, null_values=[""], quoted_strings_can_be_null=False, true_values=["t"],
        false_values=["f"], strings_can_be_null=True)) if data.getbuffer().nbytes else \
        pa.table({n: pa.array([], read_as[n]) for n in names})
    arrays = []
    for column, kind in zip(columns, types):
        values = table.column(column.name)
        if pa.types.is_timestamp(kind):
            values = values.cast(pa.timestamp("us", tz=kind.tz)).cast(kind)
        elif pa.types.is_date(kind):
            values = values.cast(pa.date32()).cast(kind)
        arrays.append(values.cast(kind))
    return pa.table(arrays, names=names)


def _register(connection: Any, name: str, columns: list[Column], landed: Any, files: list[str]) -> None:
    from sqlglot import exp

    landed_name = f"__fs_landed_{name}"
    connection.execute(f'DROP TABLE IF EXISTS "{landed_name}"')
    duck.add_table(connection, landed_name, columns, landed if landed is not None and landed.num_rows else None)
    query: exp.Query = exp.select("*").from_(exp.to_table(landed_name, quoted=True))
    if files:
        reader = exp.Anonymous(this="read_parquet", expressions=[exp.Array(
            expressions=[exp.Literal.string(f) for f in files])])
        query = exp.Union(this=query, expression=exp.select("*").from_(exp.Table(this=reader)), distinct=False,
                          by_name=True)
    connection.execute(exp.Create(this=exp.to_table(pushed_relation(name), quoted=True), kind="VIEW", replace=True,
                                  expression=query, properties=exp.Properties(
                                      expressions=[exp.TemporaryProperty()])).sql(dialect="duckdb"))


def pushed_state(project: Project, name: str) -> list[Any]:
    """What was pushed to the source, for fingerprints: [last batch, rows landed, compacted files]."""
    settings = project.settings
    url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
    with postgres.connect(url) as pg:
        if not schema_exists(pg):
            return [0, 0, 0]
        row = pg.execute(f"SELECT coalesce(max(id), 0), coalesce(sum(rows) FILTER (WHERE compacted IS NULL), 0), "
                         f"(SELECT count(*) FROM {SCHEMA}.files WHERE source = %s) FROM {SCHEMA}.batches "
                         "WHERE source = %s", [name, name]).fetchone()
    return [int(row[0]), int(row[1]), int(row[2])]
