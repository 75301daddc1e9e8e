"""Timelines of a few heavy keys for the reference suites: per key, hundreds to thousands of instants
over a long span, as regular readings (jitter, missing readings, outages) or as bursts of events.

Hypothesis draws each key's shape; a seeded `random.Random` draws the instants themselves, since
thousands of them are far more than Hypothesis should draw one by one (a failure still replays: the
seed is part of the example).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hypothesis import strategies as st

US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Shape:
    """How one key's instants are spread.

    "readings": one every `every`, moved by `jitter`, a share `missing` of them left out, and a few
    outages (runs of tens of readings missing). "bursts": bursts `every` apart on average (exponential
    gaps), a few to tens of events each, seconds apart, a share `missing` of them exactly tied with the
    event before. `jitter` "none" keeps readings exactly on the period, and bursts' starts on whole minutes
(and their events on whole seconds).
    """

    kind: Literal["readings", "bursts"]
    count: int
    every: timedelta
    jitter: Literal["none", "seconds", "micros"]
    missing: float


READING_PERIODS = (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(days=1))
BURST_GAPS = (timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))


@st.composite
def shapes(draw: st.DrawFn, max_keys: int = 5, max_total: int = 10_000, max_per_key: int = 3000) -> list[Shape]:
    """One shape per key: 1 to `max_keys` keys, a hundred to `max_per_key` instants each."""
    keys = draw(st.integers(1, max_keys))
    per_key = min(max_per_key, max_total // keys)
    result = []
    for _ in range(keys):
        kind = draw(st.sampled_from(["readings", "bursts"]))
        # Hypothesis favours small integers: first a size class, then a size in it.
        low, high = draw(st.sampled_from([(100, 500), (500, 1500), (1500, 3000)]))
        result.append(Shape(kind=kind, count=draw(st.integers(min(low, per_key), min(high, per_key))),
                            every=draw(st.sampled_from(READING_PERIODS if kind == "readings" else BURST_GAPS)),
                            jitter=draw(st.sampled_from(["none", "seconds", "micros"])),
                            missing=draw(st.sampled_from([0.0, 0.05, 0.3]))))
    return result


def instants(shape: Shape, start: datetime, rng: random.Random) -> list[datetime]:
    """The instants of one key from about `start`, in time order (ties adjacent)."""
    return _readings(shape, start, rng) if shape.kind == "readings" else _bursts(shape, start, rng)


def _readings(shape: Shape, start: datetime, rng: random.Random) -> list[datetime]:
    out = set()
    for _ in range(rng.randint(0, 3)):  # outages: runs of readings that never came
        first = rng.randrange(shape.count)
        out.update(range(first, first + rng.randint(10, 100)))
    quarter = shape.every // US // 4
    times = []
    for i in range(shape.count):
        if i in out or rng.random() < shape.missing:
            continue
        if shape.jitter == "seconds":
            shift = timedelta(seconds=rng.randint(-90, 90))
        elif shape.jitter == "micros":
            shift = rng.randint(-quarter, quarter) * US
        else:
            shift = timedelta(0)
        times.append(start + i * shape.every + shift)
    return sorted(times)


def _bursts(shape: Shape, start: datetime, rng: random.Random) -> list[datetime]:
    times: list[datetime] = []
    at = start
    while len(times) < shape.count:
        at += _rounded(timedelta(seconds=rng.expovariate(1 / shape.every.total_seconds())), shape.jitter)
        for _ in range(1 + int(rng.expovariate(1 / 8))):
            if times and rng.random() < shape.missing:
                at = times[-1]  # exactly tied with the event before
            elif rng.random() < 0.1:
                at += US
            else:
                apart = timedelta(seconds=rng.uniform(0, 30))
                at += _rounded(apart, "micros" if shape.jitter == "micros" else "seconds")
            times.append(at)
    return times[:shape.count]


def _rounded(length: timedelta, jitter: str) -> timedelta:
    if jitter == "none":
        return timedelta(minutes=round(length.total_seconds() / 60))
    if jitter == "seconds":
        return timedelta(seconds=round(length.total_seconds()))
    return length // US * US


def anywhere(first: datetime, last: datetime, rng: random.Random) -> datetime:
    """A spine time from a day before `first` to a day after `last`, half of them on whole seconds."""
    t = first - timedelta(days=1) + (last - first + timedelta(days=2)) * rng.random()
    return t if rng.random() < 0.5 else t.replace(microsecond=0)


def unmatched(origin: str, t: datetime | None, k: int | None, c: str | None, composite: bool,
              rng: random.Random) -> tuple[datetime | None, int | None, str | None]:
    """A spine row's time and keys after the origins that match nothing: "no time", "no key" (a NULL
    key part) and "other key" (a key part no row has); other origins leave them as they are."""
    if origin == "no time":
        return None, k, c
    if origin == "no key":
        return (t, None, c) if not composite or rng.random() < 0.5 else (t, k, None)
    if origin == "other key":
        return (t, 9, c) if not composite or rng.random() < 0.5 else (t, k, "z")
    return t, k, c
