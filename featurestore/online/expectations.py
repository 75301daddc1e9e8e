"""A view's `expect` conditions, checked on what a materialization run would write.

    failures = check_expectations(project, offline, view, until)   # [(condition, row as JSON), ...]

Rows that fail are refused (the run stops) or quarantined, as `[online] on_failed_expectation` says.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlglot
from sqlglot import exp

from featurestore.compiler.names import AT, PREFIX, ROW, TS
from featurestore.compiler.point_in_time import Spine, point_in_time
from featurestore.compiler.times import instant
from featurestore.compiler.windows import WindowRows
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, FeatureView
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
    conditions = {text: sqlglot.parse_one(text, dialect="duckdb") for text in view.expect}
    checked = "__fs_batch"
    if view.windows:  # the features the online store would serve at `until`, per entity in the batch
        spine = duck.arrow(offline, _entities_at(view, until).sql(dialect="duckdb"))
        duck.load_arrow(offline, "__fs_expect_spine", spine)
        types = {c.name: c.type for c in view.columns}
        columns = (*[Column(name=k, type=types[k]) for k in view.entity], Column(name=AT, type="TIMESTAMPTZ"),
                   Column(name=ROW, type="BIGINT"))
        selected = select_features(project.views, [f"{view.name}.*"])
        query = point_in_time(Spine("__fs_expect_spine", columns, AT),
                              [WindowRows(view, window_events(project, view), tuple(selected))])
        _run(offline, exp.Create(this=_table("__fs_expected"), kind="TABLE", expression=query,
                                 properties=exp.Properties(expressions=[exp.TemporaryProperty()])))
        checked = "__fs_expected"
    failing = [(text, duck.first_row(offline, exp.select(exp.Count(this=exp.Star())).from_(_table(checked))
                                     .where(_fails(condition)).sql(dialect="duckdb"))[0])
               for text, condition in conditions.items()]
    failing = [(text, count) for text, count in failing if count]
    if not failing:
        return []
    condition, count = failing[0]
    shown = _shown(offline, checked)
    as_json = exp.cast(exp.func("to_json", exp.column("c", quoted=True)), "VARCHAR")
    example = duck.first_row(offline, exp.select(as_json).from_(shown).where(_fails(conditions[condition])).limit(1)
                             .sql(dialect="duckdb"))[0]
    what = ("row" if count == 1 else "rows") if not view.windows else \
        ("entity's features" if count == 1 else "entities' features")
    if project.settings.on_failed_expectation == "fail":
        others = "".join(f"; {n:,} fail `{c}`" for c, n in failing[1:])
        raise FeatureStoreError(
            f"{view.path}:{view.line('expect')}: view '{view.name}': {count:,} {what} "
            f"{'fails' if count == 1 else 'fail'} `expect: {condition}` "
            f"(e.g. {example}){others}; nothing was written. Fix the data or the expectation, or set [online] "
            "on_failed_expectation = \"quarantine\" to set failing rows aside")
    any_fails = exp.or_(*[_fails(conditions[text]) for text, _ in failing])
    first = exp.Case(ifs=[exp.If(this=_fails(conditions[text]), true=exp.Literal.string(text)) for text, _ in failing])
    set_aside = offline.execute(exp.select(first, as_json.copy()).from_(shown.copy()).where(any_fails)
                                .sql(dialect="duckdb")).fetchall()
    if view.windows:  # the failing entities' events; keys compared NULL-safely
        same = exp.and_(*[exp.NullSafeEQ(this=exp.column(k, "b", quoted=True),
                                         expression=exp.column(k, "x", quoted=True)) for k in view.entity])
        failed = exp.select(exp.Literal.number(1)).from_(_table("__fs_expected").as_("x", quoted=True)) \
            .where(exp.and_(same, any_fails.copy()))
        _run(offline, exp.Delete(this=_table("__fs_batch").as_("b", quoted=True),
                                 where=exp.Where(this=exp.Exists(this=failed))))
    else:
        _run(offline, exp.Delete(this=_table("__fs_batch"), where=exp.Where(this=any_fails.copy())))
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


def _shown(offline: Any, table: str) -> exp.Subquery:
    """`table`'s columns a person reads (keys, time as text, features), as the subquery `c`."""
    columns: list[exp.Expr] = []
    for name, *_ in offline.execute(f"DESCRIBE {_table(table).sql(dialect='duckdb')}").fetchall():
        if name == TS:
            columns.append(exp.alias_(exp.cast(exp.column(TS, quoted=True), "VARCHAR"), "ts", quoted=True))
        elif not name.startswith(PREFIX):
            columns.append(exp.column(name, quoted=True))
    return exp.Subquery(this=exp.select(*columns).from_(_table(table)),
                        alias=exp.TableAlias(this=exp.to_identifier("c", quoted=True)))


def _entities_at(view: FeatureView, until: datetime) -> exp.Select:
    """Each entity of the batch once, at `until`, numbered: a spine for the features the lookup would serve.
        SELECT keys, <until> AS __fs_at, CAST(row_number() OVER () AS BIGINT) AS __fs_row
        FROM (SELECT DISTINCT keys FROM __fs_batch)"""
    keys = [exp.column(k, quoted=True) for k in view.entity]
    entities = exp.select(*keys).distinct().from_(_table("__fs_batch"))
    number = exp.cast(exp.Window(this=exp.RowNumber()), "BIGINT")
    return exp.select(*[k.copy() for k in keys], exp.alias_(instant(until), AT, quoted=True),
                      exp.alias_(number, ROW, quoted=True)).from_(
        exp.Subquery(this=entities, alias=exp.TableAlias(this=exp.to_identifier("e", quoted=True))))


def _fails(condition: exp.Expr) -> exp.Expr:
    """The condition is false (NULL passes)."""
    return exp.Is(this=exp.Paren(this=condition.copy()), expression=exp.false())


def _run(connection: Any, statement: exp.Expr) -> None:
    connection.execute(statement.sql(dialect="duckdb"))


def _table(name: str) -> exp.Table:
    return exp.to_table(name, quoted=True)
