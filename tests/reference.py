"""An independent, brute-force reading of docs/semantics.md for snapshot and window views: one spine row at a time.

Deliberately naive: plain Python over lists of rows, no SQL, no sorting tricks. For cases with
thousands of rows per key, `SnapshotIndex` and `WindowIndex` give the same answers faster: per key,
the rows that count sorted by time, found by `bisect`. The suites check them against the brute-force
functions on their small random cases (`test_*_index_matches_the_brute_force_reference`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


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
    known_at: str | None = None  # the arrival column, if the view declares one


def known(row: dict[str, Any], rules: Rules) -> datetime:
    """When a row is known: max(ts + lag, its arrival), or ts + lag without one (docs/semantics.md)."""
    due = row[rules.timestamp] + rules.lag
    arrival = row[rules.known_at] if rules.known_at is not None else None
    return due if arrival is None else max(due, arrival)


def as_of(rows: list[dict[str, Any]], key: tuple[Any, ...], t: datetime | None, rules: Rules) -> dict[str, Any]:
    """The feature values of the view for one spine row (keys `key`, time `t`)."""
    empty = {f: None for f in rules.features}
    if t is None or any(k is None for k in key):
        return empty
    found = []
    for row in rows:
        ts = row[rules.timestamp]
        if ts is None or tuple(row[k] for k in rules.entity) != key:
            continue
        if any(start <= ts <= end for start, end in rules.invalid):
            continue
        if known(row, rules) <= t:
            found.append(row)
    if not found:
        return empty
    latest = max(row[rules.timestamp] for row in found)
    if rules.ttl is not None and t - latest > rules.ttl:
        return empty
    if rules.since is not None and t < rules.since:
        return empty
    tied = [row for row in found if row[rules.timestamp] == latest]
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
    """The aggregate over one window for one spine row (keys `key`, time `t`)."""
    inside = window_events(events, key, t, rules, window)
    return None if inside is None else aggregate(inside, rules, measure)


def window_events(events: list[dict[str, Any]], key: tuple[Any, ...], t: datetime | None, rules: Rules,
                  window: timedelta) -> list[dict[str, Any]] | None:
    """The events in one window of one spine row, in their given order; None where every aggregate is NULL.

    The events counted: same keys, a time outside every invalid period, and t - W <= ts + lag and
    known(e) < t (without arrivals: t - W <= ts + lag < t).
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
        if t - window <= ts + rules.lag and known(event, rules) < t:
            inside.append(event)
    return inside


def aggregate(inside: list[dict[str, Any]], rules: Rules, measure: Measure) -> Any:
    """The aggregate of `measure` over the events of one window."""
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


def _by_key(rows: list[dict[str, Any]], rules: Rules) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The rows that can count, per key (none of it NULL), sorted by time; ties stay in their given order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        ts = row[rules.timestamp]
        key = tuple(row[k] for k in rules.entity)
        if ts is None or any(k is None for k in key) or any(start <= ts <= end for start, end in rules.invalid):
            continue
        groups.setdefault(key, []).append(row)
    for group in groups.values():
        group.sort(key=lambda row: row[rules.timestamp])
    return groups


class SnapshotIndex:
    """`as_of` for many spine rows over many rows.

    A spine row bisects its key's rows to the last one known by `t` (ts <= t - lag), and `as_of` reads
    only that row's group of rows tied on time, plus the row after it (which it must find not yet known):
    TTL, `available_since` and the tie-break stay `as_of`'s own.
    """

    def __init__(self, rows: list[dict[str, Any]], rules: Rules) -> None:
        self.rules = rules
        self.rows = _by_key(rows, rules)
        self.times = {key: [row[rules.timestamp] for row in group] for key, group in self.rows.items()}

    def as_of(self, key: tuple[Any, ...], t: datetime | None) -> dict[str, Any]:
        group, times = self.rows.get(key, []), self.times.get(key, [])
        if t is None or not group:
            return as_of([], key, t, self.rules)
        if self.rules.known_at is not None:  # known times are not in time order: the key's rows, brute force
            return as_of(group, key, t, self.rules)
        due = bisect_right(times, t - self.rules.lag)  # group[:due] are known by t
        first = bisect_left(times, times[due - 1]) if due else 0
        return as_of(group[first:due + 1], key, t, self.rules)


class WindowIndex:
    """`window_events` for many spine rows over many events: a window is a slice of its key's events,
    t - W - lag <= ts < t - lag, found by `bisect` (events tied on time keep their given order); with
    arrival times, the events of that slice known before t."""

    def __init__(self, events: list[dict[str, Any]], rules: Rules) -> None:
        self.rules = rules
        self.events = _by_key(events, rules)
        self.times = {key: [event[rules.timestamp] for event in group] for key, group in self.events.items()}

    def window_events(self, key: tuple[Any, ...], t: datetime | None, window: timedelta) -> list[dict[str, Any]] | None:
        rules = self.rules
        if t is None or any(k is None for k in key) or (rules.since is not None and t < rules.since):
            return None
        times = self.times.get(key, [])
        start = bisect_left(times, t - window - rules.lag)
        end = bisect_left(times, t - rules.lag)  # known(e) >= ts + lag: none later can be known before t
        if rules.known_at is not None:  # the lower bound is on time, the upper on arrival
            return [e for e in self.events.get(key, [])[start:end] if known(e, rules) < t]
        return self.events.get(key, [])[start:end]
