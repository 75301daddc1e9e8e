"""A view's `expect` conditions, checked on what a materialization run would write.

    failures = check_expectations(project, offline, view, until)   # [(condition, row as JSON), ...]

Rows that fail are refused (the run stops) or quarantined, as `[online] on_failed_expectation` says.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlglot import exp

from featurestore.compiler.names import TS
from featurestore.compiler.point_in_time import instant
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import FeatureView
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError
from featurestore.offline.rows import window_events
from featurestore.project import Project

__all__ = ["check_expectations", "json_for_postgres"]


def check_expectations(project: Project, offline: Any, view: FeatureView, until: datetime) -> list[tuple[str, str]]:
    """Check the view's `expect` conditions on what the run would write, in `__fs_batch`.

    A snapshot view's conditions hold for each row written; a window view's for the features, as
    of `until`, of each entity with events in the batch. A condition that is NULL passes. On a
    failure, with [online] on_failed_expectation = "fail" (the default) the run stops before
    writing anything; with "quarantine" the failing rows (a window view: the entity's new events)
    are left out and returned as (condition, row as JSON) to be recorded.
    """
    checked = "__fs_batch"
    keys = ", ".join(exp.column(k, quoted=True).sql(dialect="duckdb") for k in view.entity)
    if view.windows:  # the features the online store would serve at `until`, per entity in the batch
        from featurestore.compiler.point_in_time import ROW, Spine, point_in_time
        from featurestore.compiler.windows import WindowRows
        from featurestore.definitions.spec import Column

        at = instant(until).sql(dialect="duckdb")
        spine = duck.arrow(offline, f"SELECT {keys}, {at} AS __fs_until, CAST(row_number() OVER () AS BIGINT) AS {ROW} "
                                    f"FROM (SELECT DISTINCT {keys} FROM __fs_batch)")
        duck.load_arrow(offline, "__fs_expect_spine", spine)
        types = {c.name: c.type for c in view.columns}
        columns = (*[Column(name=k, type=types[k]) for k in view.entity], Column(name="__fs_until", type="TIMESTAMPTZ"),
                   Column(name=ROW, type="BIGINT"))
        selected = select_features(project.views, [f"{view.name}.*"])
        query = point_in_time(Spine("__fs_expect_spine", columns, "__fs_until"),
                              [WindowRows(view, window_events(project, view), tuple(selected))])
        offline.execute(f"CREATE TEMP TABLE __fs_expected AS {query.sql(dialect='duckdb')}")
        checked = "__fs_expected"
    failing = [(condition, duck.first_row(offline, f"SELECT count(*) FROM {checked} WHERE ({condition}) IS FALSE")[0])
               for condition in view.expect]
    failing = [(condition, count) for condition, count in failing if count]
    if not failing:
        return []
    condition, count = failing[0]
    shown = f"(SELECT {_shown(offline, checked)} FROM {checked}) AS c"
    example = duck.first_row(offline,
                             f"SELECT to_json(c)::VARCHAR FROM {shown} WHERE ({condition}) IS FALSE LIMIT 1")[0]
    what = ("row" if count == 1 else "rows") if not view.windows else \
        ("entity's features" if count == 1 else "entities' features")
    if project.settings.on_failed_expectation == "fail":
        others = "".join(f"; {n:,} fail `{c}`" for c, n in failing[1:])
        raise FeatureStoreError(
            f"{view.path}:{view.line('expect')}: view '{view.name}': {count:,} {what} "
            f"{'fails' if count == 1 else 'fail'} `expect: {condition}` "
            f"(e.g. {example}){others}; nothing was written. Fix the data or the expectation, or set [online] "
            "on_failed_expectation = \"quarantine\" to set failing rows aside")
    any_fails = " OR ".join(f"({c}) IS FALSE" for c, _ in failing)
    first = "CASE " + " ".join(f"WHEN ({c}) IS FALSE THEN {exp.Literal.string(c).sql(dialect='duckdb')}"
                               for c, _ in failing) + " END"
    set_aside = offline.execute(f"SELECT {first}, to_json(c)::VARCHAR FROM {shown} WHERE {any_fails}").fetchall()
    if view.windows:  # the failing entities' events; keys compared NULL-safely
        same = " AND ".join(f"b.{k} IS NOT DISTINCT FROM x.{k}" for k in
                            (exp.to_identifier(k, quoted=True).sql(dialect="duckdb") for k in view.entity))
        offline.execute(f"DELETE FROM __fs_batch AS b WHERE EXISTS (SELECT 1 FROM __fs_expected AS x WHERE {same} "
                        f"AND ({any_fails}))")
    else:
        offline.execute(f"DELETE FROM __fs_batch WHERE {any_fails}")
    return [(condition, row) for condition, row in set_aside]


def json_for_postgres(row: str) -> str:
    """DuckDB's JSON of a row as jsonb takes it: NaN and ±infinity (not JSON) become null, NUL is dropped."""
    def finite(value: Any) -> Any:
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value.replace("\x00", "") if isinstance(value, str) else value

    return json.dumps(finite(json.loads(row)))


def _shown(offline: Any, table: str) -> str:
    """The columns of `table` a person reads (keys, time as text, features), as a projection."""
    columns = []
    for name, *_ in offline.execute(f"DESCRIBE {table}").fetchall():
        if name == TS:
            columns.append(f"CAST({TS} AS VARCHAR) AS {exp.to_identifier('ts', quoted=True).sql(dialect='duckdb')}")
        elif not name.startswith("__fs_"):
            columns.append(exp.to_identifier(name, quoted=True).sql(dialect="duckdb"))
    return ", ".join(columns)
