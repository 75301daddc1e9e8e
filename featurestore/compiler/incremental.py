"""The latest row per entity known by an instant: what materialization writes online.

    latest_rows(view, prepared, known_after=W, known_until=T)
    →  SELECT <keys>, __fs_ts, <tie-break>, <features> FROM (<prepared rows>)
       WHERE __fs_known <= T AND __fs_known > W
       QUALIFY rank() OVER (PARTITION BY <keys> ORDER BY __fs_ts DESC) = 1

Exactly the row a training frame takes for a spine row (k, T) (SEMANTICS.md), before
TTL and `available_since`, which a lookup applies at its own instant. With `known_after`,
only rows that became known after it: an incremental run. rank() keeps rows tied on time,
so a caller sees a tie as a repeated key.
"""

from __future__ import annotations

from datetime import datetime

from sqlglot import exp

from featurestore.compiler.point_in_time import instant
from featurestore.spec import FeatureView

__all__ = ["latest_rows"]


def latest_rows(view: FeatureView, prepared: exp.Query, known_until: datetime,
                known_after: datetime | None = None) -> exp.Select:
    """Per entity, its row with the greatest time among those known in (`known_after`, `known_until`]."""
    known = exp.column("__fs_known", quoted=True)
    condition: exp.Expr = exp.LTE(this=known, expression=instant(known_until))
    if known_after is not None:
        condition = exp.and_(condition, exp.GT(this=known.copy(), expression=instant(known_after)))
    keys = [exp.column(k, quoted=True) for k in view.entity]
    latest = exp.Window(this=exp.Rank(), partition_by=keys, order=exp.Order(
        expressions=[exp.Ordered(this=exp.column("__fs_ts", quoted=True), desc=True)]))
    return exp.select(exp.Star(except_=[exp.column("__fs_known", quoted=True)])).from_(
        exp.Subquery(this=prepared, alias=exp.TableAlias(this=exp.to_identifier("p", quoted=True)))) \
        .where(condition).qualify(exp.EQ(this=latest, expression=exp.Literal.number(1)))
