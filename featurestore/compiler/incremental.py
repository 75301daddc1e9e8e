"""The latest row per entity known by an instant: what materialization writes online.

    latest_rows(view, [(prepared, W)], known_until=T)
    →  SELECT <keys>, __fs_ts, <tie-break>, <features> [, __fs_known with arrival times] FROM (<prepared rows>)
       WHERE __fs_known <= T AND __fs_known > W
       QUALIFY rank() OVER (PARTITION BY <keys> ORDER BY __fs_ts DESC) = 1

Exactly the row a training frame takes for a spine row (k, T) (docs/semantics.md), before
TTL and `available_since`, which a lookup applies at its own instant. Each part of the
input reads some of the rows, with its own lower bound on when they became known (None:
all of them): an incremental run reads its old files past the watermark and its new files
whole. rank() keeps rows tied on time, so a caller sees a tie as a repeated key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlglot import exp

from featurestore.compiler.point_in_time import tie_winner
from featurestore.compiler.times import instant
from featurestore.definitions.spec import FeatureView

__all__ = ["latest_rows"]


def latest_rows(view: FeatureView, parts: Sequence[tuple[exp.Query, datetime | None]],
                known_until: datetime) -> exp.Select:
    """Per entity, its row with the greatest time among the parts' rows known by `known_until`.

    A part (prepared rows, known_after) contributes its rows known after `known_after`.
    """
    selected = [_known_between(prepared, known_after, known_until) for prepared, known_after in parts]
    rows: exp.Query = selected[0]
    for part in selected[1:]:
        rows = exp.union(rows, part, distinct=False)
    keys = [exp.column(k, quoted=True) for k in view.entity]
    # Each part kept its own tie winner (with arrival times, the winner so far at each arrival): keep
    # the winner among the rows known by `known_until`.
    if view.created and (len(selected) > 1 or view.known_at):
        rows = exp.select("*").from_(_aliased(rows, "u")).qualify(
            tie_winner(view, keys, exp.column("__fs_ts", quoted=True), exp.column(view.created, quoted=True)))
    latest = exp.Window(this=exp.Rank(), partition_by=keys, order=exp.Order(
        expressions=[exp.Ordered(this=exp.column("__fs_ts", quoted=True), desc=True)]))
    # With arrival times a lookup needs when the row became known; otherwise that is its time plus the lag.
    kept = exp.Star() if view.known_at else exp.Star(except_=[exp.column("__fs_known", quoted=True)])
    return exp.select(kept).from_(_aliased(rows, "p")).qualify(exp.EQ(this=latest, expression=exp.Literal.number(1)))


def _known_between(prepared: exp.Query, known_after: datetime | None, known_until: datetime) -> exp.Select:
    known = exp.column("__fs_known", quoted=True)
    condition: exp.Expr = exp.LTE(this=known, expression=instant(known_until))
    if known_after is not None:
        condition = exp.and_(condition, exp.GT(this=known.copy(), expression=instant(known_after)))
    return exp.select("*").from_(_aliased(prepared, "k")).where(condition)


def _aliased(query: exp.Query, alias: str) -> exp.Subquery:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
