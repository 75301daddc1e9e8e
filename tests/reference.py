"""An independent, brute-force reading of SEMANTICS.md for snapshot and window views: one spine row at a time.

Deliberately naive: plain Python over lists of rows, no SQL, no sorting tricks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable


@dataclass(frozen=True)
class Rules:
    entity: tuple[str, ...]
    timestamp: str
    lag: timedelta = timedelta(0)
    ttl: timedelta | None = None
    since: datetime | None = None
    invalid: tuple[tuple[datetime, datetime], ...] = ()
    created: str | None = None
    features: tuple[str, ...] = field(default=())


def as_of(rows: list[dict[str, Any]], key: tuple[Any, ...], t: datetime | None, rules: Rules) -> dict[str, Any]:
    """The feature values of the view for one spine row (keys `key`, time `t`)."""
    empty = {f: None for f in rules.features}
    if t is None or any(k is None for k in key):
        return empty
    known = []
    for row in rows:
        ts = row[rules.timestamp]
        if ts is None or tuple(row[k] for k in rules.entity) != key:
            continue
        if any(start <= ts <= end for start, end in rules.invalid):
            continue
        if ts + rules.lag <= t:
            known.append(row)
    if not known:
        return empty
    latest = max(row[rules.timestamp] for row in known)
    if rules.ttl is not None and t - latest > rules.ttl:
        return empty
    if rules.since is not None and t < rules.since:
        return empty
    tied = [row for row in known if row[rules.timestamp] == latest]
    if len(tied) > 1:
        if rules.created is None:  # the value would come from one of several rows: ambiguous
            raise Ambiguous("duplicate rows without a tie-break")
        with_created = [row for row in tied if row[rules.created] is not None]
        tied = [max(with_created, key=lambda row: row[rules.created])] if with_created else tied[:1]
    return {f: tied[0][f] for f in rules.features}


class Ambiguous(ValueError):
    """A spine row's value would come from one of several rows with the same keys and time."""


@dataclass(frozen=True)
class Measure:
    """One aggregate of a window view as the reference computes it, per event: `value`, and for the
    latest value `order` (None: the event time), over the events for which `where` is True.

    `kind` is one of count, count_distinct, sum, avg, min, max, latest; count(*) counts the value 1.
    """

    kind: str
    value: Callable[[dict[str, Any]], Any]
    order: Callable[[dict[str, Any]], Any] | None = None
    where: Callable[[dict[str, Any]], bool | None] | None = None


def window_aggregate(events: list[dict[str, Any]], key: tuple[Any, ...], t: datetime | None, rules: Rules,
                     measure: Measure, window: timedelta) -> Any:
    """The aggregate over one window for one spine row (keys `key`, time `t`).

    The events counted: same keys, a time outside every invalid period, and t - W <= ts + lag < t.
    """
    if t is None or any(k is None for k in key):
        return None
    if rules.since is not None and t < rules.since:
        return None
    inside = []
    for event in events:
        ts = event[rules.timestamp]
        if ts is None or tuple(event[k] for k in rules.entity) != key:
            continue
        if any(start <= ts <= end for start, end in rules.invalid):
            continue
        if t - window <= ts + rules.lag and ts + rules.lag < t:
            inside.append(event)
    if measure.where is not None:
        inside = [event for event in inside if measure.where(event) is True]
    values = [measure.value(event) for event in inside]
    present = [value for value in values if value is not None]
    if measure.kind == "count":
        return len(present)
    if measure.kind == "count_distinct":
        distinct: list[Any] = []
        for value in present:
            if value not in distinct:
                distinct.append(value)
        return len(distinct)
    if measure.kind == "latest":
        pairs = []
        for event, value in zip(inside, values):
            order = event[rules.timestamp] if measure.order is None else measure.order(event)
            if order is not None and value is not None:
                pairs.append((order, value))
        if not pairs:
            return None
        greatest = max(order for order, _ in pairs)
        return max(value for order, value in pairs if order == greatest)
    if not present:
        return None
    if measure.kind == "sum":
        return sum(present)
    if measure.kind == "avg":
        return sum(present) / len(present)
    if measure.kind == "min":
        return min(present)
    if measure.kind == "max":
        return max(present)
    raise ValueError(f"unknown aggregate kind {measure.kind!r}")
