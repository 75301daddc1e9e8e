"""An independent, brute-force reading of SEMANTICS.md for snapshot views: one spine row at a time.

Deliberately naive: plain Python over lists of rows, no SQL, no sorting tricks.
"""

from __future__ import annotations

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
