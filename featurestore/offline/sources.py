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
from featurestore.project import Project

__all__ = ["register_sources"]


def register_sources(connection: Any, project: Project, views: list[Any], *, every_source: bool,
                      loaded: set[str]) -> None:
    """PostgreSQL sources the views read become DuckDB tables; with `every_source`, file sources become views."""
    settings = project.settings
    needed = {name for view in views for name in sources_of(project, view)
              if isinstance(settings.sources[name], PostgresSource)}
    if every_source:
        needed |= {n for n, s in settings.sources.items() if isinstance(s, PostgresSource)}
        for name, source in settings.sources.items():
            if isinstance(source, FileSource):
                duck.add_file_view(connection, name, str(settings.root / source.path), source.format)
    _load_postgres(connection, project, sorted(needed - loaded))
    loaded |= needed


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
