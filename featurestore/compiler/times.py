"""Time in the compiled SQL: literals, UTC microseconds, and the two rules of docs/semantics.md
every pass shares (when a row is known; when its values may be used).

    instant(datetime(2026, 1, 1, tzinfo=UTC))     CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)
    interval(timedelta(hours=3))                  INTERVAL '10800000000' MICROSECOND
    known_at(view, ts)                            ts + INTERVAL '<available_after>' MICROSECOND
    known_at(view, ts, arrival)                   greatest(ts + <lag>, coalesce(arrival, ts + <lag>))
    value_used(view, ts, t)                       t - <ttl> <= ts AND t >= <available_since>
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlglot import exp

from featurestore.definitions.spec import FeatureView

__all__ = ["instant", "interval", "known_at", "utc_micros", "value_used"]


def value_used(view: FeatureView, ts: exp.Expr, t: exp.Expr) -> exp.Expr | None:
    """Whether a row stamped `ts` gives its values at `t`: within the TTL, from `available_since`.

    None when the view has neither. (That the row is known by `t` is the join's own condition.)
    """
    conditions: list[exp.Expr] = []
    if view.ttl is not None:
        conditions.append(exp.LTE(this=exp.Sub(this=t.copy(), expression=interval(view.ttl)), expression=ts.copy()))
    if view.available_since is not None:
        conditions.append(exp.GTE(this=t.copy(), expression=instant(view.available_since)))
    return exp.and_(*conditions) if conditions else None


def known_at(view: FeatureView, ts: exp.Expr, arrival: exp.Expr | None = None) -> exp.Expr:
    """When a row stamped `ts` becomes known: `ts` plus the view's `available_after`, or its `arrival`
    if that is later (a view with `known_at`; a NULL arrival counts as on time)."""
    due = ts.copy() if not view.available_after else exp.Add(this=ts.copy(), expression=interval(view.available_after))
    if arrival is None:
        return due
    # coalesce, not greatest's own NULL handling, which engines disagree on.
    return exp.Greatest(this=due, expressions=[exp.Coalesce(this=arrival.copy(), expressions=[due.copy()])],
                        ignore_nulls=True)


def utc_micros(value: exp.Expr, duckdb_type: str, rounding: str) -> exp.Expr:
    """`value` as TIMESTAMPTZ (UTC, microseconds). Nanoseconds are floored or ceiled, never rounded."""
    kind = duckdb_type.upper()
    if kind in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS", "TIMESTAMP WITH TIME ZONE_NS"):
        nanos = exp.func("epoch_ns", value)
        shift = exp.Literal.number(0 if rounding == "floor" else 999)
        # Floor division that is right for instants before 1970 too.
        micros = exp.IntDiv(this=exp.Paren(this=exp.Sub(this=exp.Add(this=nanos, expression=shift), expression=exp.Mod(
            this=exp.Paren(this=exp.Add(this=exp.Mod(this=exp.Paren(this=exp.Add(this=nanos.copy(),
                                                                                 expression=shift.copy())),
                                                     expression=exp.Literal.number(1000)),
                                        expression=exp.Literal.number(1000))),
            expression=exp.Literal.number(1000)))), expression=exp.Literal.number(1000))
        return exp.cast(exp.func("make_timestamp", micros), "TIMESTAMPTZ")
    return exp.cast(value, "TIMESTAMPTZ")


def interval(length: timedelta) -> exp.Interval:
    """`length` as an interval of microseconds (exact; DuckDB and PostgreSQL both read it)."""
    return exp.Interval(this=exp.Literal.string(str(_micros(length))), unit=exp.var("MICROSECOND"))


def _micros(length: timedelta) -> int:
    return (length.days * 86_400 + length.seconds) * 1_000_000 + length.microseconds


def instant(value: datetime) -> exp.Expr:
    """An instant as a TIMESTAMPTZ literal."""
    return exp.cast(exp.Literal.string(value.isoformat()), "TIMESTAMPTZ")
