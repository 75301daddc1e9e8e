"""A view's rows and a window view's events, read from its sources as the compiler renders them.

    prepared_rows(project, view, ["amount"])   # SELECT keys, __fs_ts, __fs_known, amount
                                               # FROM (<the view over its sources>)
    window_events(project, view)               # SELECT keys, __fs_ts, __fs_known, <aggregate inputs> FROM ...

Frames, the cache, materialization and statistics all read views through these, so every path
sees the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from featurestore.compiler.point_in_time import duplicate_fix, duplicate_message, duplicates, prepare_rows, ties
from featurestore.compiler.render import render_query
from featurestore.compiler.windows import event_rows
from featurestore.definitions.spec import FeatureView
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError
from featurestore.project import Project

__all__ = ["duplicate_error", "prepared_rows", "refuse_duplicates", "refuse_ties", "row_numbers", "window_events"]


def refuse_duplicates(connection: Any, view: FeatureView, rows: exp.Query) -> None:
    """Raise `duplicate_error` if two of `rows` (prepared: keys, __fs_ts) share keys and time."""
    duplicate = duck.first_row(connection, duplicates(view, rows).sql(dialect="duckdb"))
    if duplicate:
        raise duplicate_error(view, duplicate)


def prepared_rows(project: Project, view: FeatureView, columns: list[str],
                  files: dict[str, list[str]] | None = None, dialect: str = "duckdb") -> exp.Select:
    """The view's rows read from its sources (for `dialect`), prepared to join (`prepare_rows`).

    `files` reads only these files of the named file sources.
    """
    settings = project.settings
    return prepare_rows(view, render_query(view, project.views, settings.sources, settings.root, dialect,
                                           files=files), columns)


def window_events(project: Project, view: FeatureView, files: dict[str, list[str]] | None = None,
                  dialect: str = "duckdb") -> exp.Select:
    """A window view's events read from its sources (for `dialect`): `event_rows`."""
    settings = project.settings
    return event_rows(view, render_query(view, project.views, settings.sources, settings.root, dialect, files=files))


def duplicate_error(view: FeatureView, row: tuple) -> FeatureStoreError:
    return FeatureStoreError(f"{duplicate_message(view, row)}; {duplicate_fix(view)}")


def refuse_ties(load: Callable[[str, Any], None], first: Callable[[exp.Query], tuple | None], joins: list[Any],
                 result: Any, *, repeated: bool, name: str = "__fs_result") -> None:
    """Raise if a feature value came from one of several rows with the same keys and time (no `created`).

    Checking only the rows a frame took costs at most a semi-join instead of grouping all of a
    view's rows; `validate --data` and the cache fill report every tie. `load` makes an Arrow
    table readable by the engine, `first` runs a query there and returns its first row.
    """
    checks = [(item, query) for number, item in enumerate(joins)
              if (query := ties(item, number, name, repeated=repeated))]
    if checks:
        load(name, result.select([c for c in result.column_names if c.startswith("__fs_taken")]))
    for item, query in checks:
        tie = first(query)
        if tie:
            raise duplicate_error(item.view, tie)
    if repeated:  # a repeat that no tie explains would be our bug: never return a misaligned frame
        raise FeatureStoreError(f"internal error: the frame has {result.num_rows} rows for a spine of a different "
                                "length; please report it with the frame's SQL")


def row_numbers(count: int) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.arange(count, dtype=np.int64))
