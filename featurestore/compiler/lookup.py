"""One PostgreSQL statement that looks up many entities in several views' online tables.

    lookup([LookupView(user_daily_stats, ("featurestore_online", "user_daily_stats__ab12"), selected)],
           [("user_id", "bigint")])
    →  SELECT CASE WHEN %(at)s - v0.__fs_ts <= INTERVAL '…' THEN v0.txn_count END AS txn_count, …
       FROM unnest(%(k0)s::bigint[]) WITH ORDINALITY AS r(user_id, __fs_i)
       LEFT JOIN featurestore_online.user_daily_stats__ab12 AS v0 ON v0.user_id = r.user_id
       ORDER BY r.__fs_i

One row per requested entity, in request order; NULL features for unknown entities, beyond
the TTL, or before `available_since` (SEMANTICS.md, at the instant `%(at)s`). Keys and the
instant are parameters; table and column names come from the registry of views.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from featurestore.selection import Selected
from featurestore.spec import FeatureView

__all__ = ["LookupView", "lookup"]


@dataclass(frozen=True)
class LookupView:
    view: FeatureView
    table: tuple[str, str]
    selected: tuple[Selected, ...]


def lookup(views: list[LookupView], keys: list[tuple[str, str]]) -> exp.Select:
    """The lookup; parameters `k0`, `k1`, … are arrays of each key column in `keys`, `at` the instant."""
    arrays = ", ".join(f"CAST(%(k{i})s AS {kind}[])" for i, (_, kind) in enumerate(keys))
    names = ", ".join(_quoted(name) for name, _ in keys)
    query = sqlglot.parse_one(f'SELECT 1 FROM unnest({arrays}) WITH ORDINALITY AS "r"({names}, "__fs_i") '
                              'ORDER BY "r"."__fs_i"', read="postgres")
    assert isinstance(query, exp.Select)
    query.set("expressions", [])
    at = exp.cast(exp.Placeholder(this="at"), "TIMESTAMPTZ")
    for number, item in enumerate(views):
        alias = f"v{number}"
        table = exp.table_(item.table[1], db=item.table[0], quoted=True, alias=exp.to_identifier(alias, quoted=True))
        query = query.join(table, join_type="LEFT", on=exp.and_(*[
            exp.EQ(this=exp.column(k, alias, quoted=True), expression=exp.column(k, "r", quoted=True))
            for k in item.view.entity]))
        guard = _guard(item.view, alias, at)
        for selected in item.selected:
            value: exp.Expr = exp.column(selected.feature.column, alias, quoted=True)
            if guard is not None:
                value = exp.case().when(guard.copy(), value)
            query = query.select(exp.alias_(value, selected.output, quoted=True))
    return query


def _guard(view: FeatureView, alias: str, at: exp.Expr) -> exp.Expr | None:
    conditions: list[exp.Expr] = []
    if view.ttl is not None:
        micros = int(view.ttl.total_seconds()) * 1_000_000 + view.ttl.microseconds
        conditions.append(exp.LTE(this=exp.Sub(this=at.copy(), expression=exp.column("__fs_ts", alias, quoted=True)),
                                  expression=exp.Interval(this=exp.Literal.string(f"{micros} microseconds"))))
    if view.available_since is not None:
        conditions.append(exp.GTE(this=at.copy(), expression=exp.cast(
            exp.Literal.string(view.available_since.isoformat()), "TIMESTAMPTZ")))
    return exp.and_(*conditions) if conditions else None


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="postgres")
