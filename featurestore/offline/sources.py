"""Sources made readable by name in a DuckDB connection, for the SQL that reads them.

File sources are read where they lie (views over read_parquet/read_csv); PostgreSQL
sources are copied in as tables, since DuckDB cannot reach PostgreSQL here.
"""

from __future__ import annotations

from typing import Any

from featurestore.config import FileSource, PostgresSource
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.offline.changes import sources_of
from featurestore.offline.pushed import pushable, pushed_relation, register_pushed
from featurestore.project import Project

__all__ = ["register_sources"]


def register_sources(connection: Any, project: Project, views: list[Any], *, every_source: bool,
                      loaded: set[str]) -> None:
    """PostgreSQL sources the views read become DuckDB tables, and rows pushed to their sources become
    readable (`offline.pushed`); with `every_source`, all of them, and file sources become views."""
    settings = project.settings
    read = {name for view in views for name in sources_of(project, view)}
    if every_source:
        read |= set(settings.sources)
    needed = {name for name in read if isinstance(settings.sources[name], PostgresSource)}
    pushed = {name for name in read if pushable(project, name)}
    _load_postgres(connection, project, sorted(needed - loaded))
    register_pushed(connection, project, sorted(pushed - loaded))
    if every_source:
        for name, source in settings.sources.items():
            if isinstance(source, FileSource):
                duck.add_file_view(connection, name, str(settings.root / source.path), source.format,
                                   also=pushed_relation(name) if name in pushed else None)
    loaded |= needed | pushed


def _load_postgres(connection: Any, project: Project, names: list[str]) -> None:
    if not names:
        return
    settings = project.settings
    url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
    for name in names:
        source = settings.sources[name]
        assert isinstance(source, PostgresSource)
        rows = postgres.fetch_arrow(url, source.schema_name, source.table)
        duck.add_table(connection, name, list(project.sources[name]), rows)
