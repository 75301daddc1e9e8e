"""Time buckets: hash joins that match a bucket of time beside the keys, so that a spine row meets
only the rows near its time (few heavy keys; see offline/joins.py).

    bucket_of(t, 1h)                 epoch_us(t) // 3600000000
    one_bucket("events", "ts", 1h)   every row in the bucket of its time
    two_buckets("spine", "t", 1h)    every row in the bucket of its time and the one before
"""

from __future__ import annotations

from datetime import timedelta

from sqlglot import exp

from featurestore.compiler.names import BUCKET
from featurestore.compiler.times import _micros

__all__ = ["bucket_of", "one_bucket", "two_buckets"]


def bucket_of(value: exp.Expr, width: timedelta) -> exp.Expr:
    """The time bucket of an instant (DuckDB): whole `width`s since the epoch.

        epoch_us(t) // 3600000000      -- width 1h
    Any monotonic numbering whose buckets are at least `width` long does: near the epoch `//`
    truncates, so bucket 0 is twice as long, which costs a few more candidates and nothing else.
    """
    return exp.IntDiv(this=exp.func("epoch_us", value.copy()), expression=exp.Literal.number(_micros(width)))


def one_bucket(relation: str, time: str, width: timedelta) -> exp.Select:
    """Each row of `relation` in the bucket of its `time`: SELECT *, epoch_us(time) // W AS __fs_bucket."""
    return exp.select(exp.Star(), exp.alias_(bucket_of(exp.column(time, quoted=True), width), BUCKET, quoted=True)) \
        .from_(exp.to_table(relation, quoted=True))


def two_buckets(relation: str, time: str, width: timedelta) -> exp.Select:
    """Each row of `relation` twice, in the bucket of its `time` and in the bucket before: a row
    stamped up to `width` before `time` is in one of the two.

        SELECT r.*, epoch_us(r.time) // W - d.shift AS __fs_bucket FROM relation AS r
        CROSS JOIN (VALUES (0), (1)) AS d(shift)
    """
    shifts = exp.Values(expressions=[exp.Tuple(expressions=[exp.Literal.number(n)]) for n in (0, 1)],
                        alias=exp.TableAlias(this=exp.to_identifier("d"), columns=[exp.to_identifier("shift")]))
    bucket = exp.Sub(this=bucket_of(exp.column(time, "r", quoted=True), width), expression=exp.column("shift", "d"))
    return exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("r")),
                      exp.alias_(bucket, BUCKET, quoted=True)) \
        .from_(exp.to_table(relation, quoted=True).as_("r")).join(shifts, join_type="CROSS")
