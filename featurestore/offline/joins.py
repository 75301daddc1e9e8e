"""How each view of a training frame is joined: the way whose estimated work in DuckDB is least.

"Join" here is how a view meets the spine (asof, ranked, intervals, last; for a window view, per
window a range join, window frames or running totals: its "methods"). "Plan" is the pull request's
(governance.plan), and nothing here.

    shape = Shape.of(duck.first_row(connection, key_shape(...).sql(dialect="duckdb")), widths)
    choice = snapshot_join(view, shape)        # Choice("site_weather", "ranked", bucket=3h, costs={...})
    print(choice.describe())                   # what frame.sql's header and `frame --explain` show

The estimates count row operations, each weighed by what it costs in DuckDB (measured on this
project's benchmarks, see benchmarks/heavy_keys.py): a row sorted (an ASOF join sorts both sides,
window frames sort spine and events together), a row through a hash join, and a candidate pair a
hash join compares. The last is what the old rule missed: a hash join on the entity keys compares
every spine row of a key with every row of that key (`Shape.pairs`), so with few keys of many rows
(sites, operators, countries) it does billions of comparisons to find a few hundred thousand
matches. Matching a time bucket as well (`ViewRows.bucket`, `WindowRows.bucket`) bounds the
candidates to the rows near each spine row's time (`Shape.near`), at the price of putting each
spine row (or interval) in two or more buckets. Many light keys keep the plain hash joins, few heavy
keys get buckets, ASOF joins or window frames, whichever is cheaper.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlglot import exp

from featurestore.compiler.shape import key_shape
from featurestore.compiler.windows import aggregates, by_totals, output_column
from featurestore.definitions.selection import Selected
from featurestore.definitions.spec import format_duration
from featurestore.engines import duckdb as duck
from featurestore.errors import FeatureStoreError

__all__ = ["COMPARED", "FRAMED", "FRAMED_KEY_ROWS", "GROUPED", "HASHED", "RANKED", "SORTED", "UNNESTED", "Choice",
           "Shape", "cached_join", "cached_widths", "explain", "forced", "join_header", "refuse_arrival_joins",
           "snapshot_choice", "snapshot_join", "snapshot_widths", "window_choice", "window_joins", "window_widths"]

# What one row operation costs DuckDB, in nanoseconds on this project's 2-core benchmark machine
# (fitted to benchmarks/heavy_keys.py, training_frame.py and windows.py; only their ratios matter).
SORTED = 300.0  # a row an ASOF join sorts (both sides), or window frames sort (spine and events)
HASHED = 100.0  # a row through a hash join, built or probed
COMPARED = 15.0  # a candidate pair of equal keys (and bucket) whose time condition is checked
RANKED = 200.0  # a surviving pair ranked per spine row ("ranked": rank() over the spine row)
GROUPED = 30.0  # a surviving pair aggregated per spine row ("join"), per aggregate
FRAMED = 300.0  # a row of the union evaluated by one framed aggregate, with ~100 rows per key ...
FRAMED_KEY_ROWS = 110.0  # ... growing with log² of the rows per key: one key's frames run on one thread
UNNESTED = 100.0  # an interval put in one more bucket
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Shape:
    """What `compiler.shape.key_shape` measured: spine rows with keys, rows, keys, the sum of the
    keys' spans (µs), pairs of equal keys, and per width the pairs of equal keys about that close."""

    spine: float
    rows: float
    keys: float
    spans: float
    pairs: float
    near: dict[timedelta, float] = field(default_factory=dict)

    @classmethod
    def of(cls, row: tuple | None, widths: list[timedelta]) -> Shape:
        spine, rows, keys, spans, pairs, *near = row or (0,) * (5 + len(widths))
        return cls(float(spine or 0), float(rows or 0), float(keys or 0), float(spans or 0), float(pairs or 0),
                   {width: float(value or 0) for width, value in zip(widths, near)})

    def describe(self) -> str:
        return (f"shape: {_count(self.spine)} spine rows with keys, "
                f"{_count(self.rows)} rows over {_count(self.keys)} keys, "
                f"{_count(self.pairs)} pairs of equal keys")


@dataclass(frozen=True)
class Choice:
    """The join chosen for one view, and the estimated work of each join considered."""

    view: str
    join: str
    costs: dict[str, float]
    shape: Shape | None = None
    bucket: timedelta | None = None
    methods: dict[str, str] = field(default_factory=dict)  # a window view's join per window label
    reason: str = ""
    totals: tuple[str, ...] = ()  # a window view's features computed from running totals, whatever the window's join

    def describe(self) -> str:
        """One line: `view: join (why); estimated work: join n, …; shape`."""
        chosen = self.join + (f" in {format_duration(self.bucket)} time buckets" if self.bucket else "")
        if self.methods:
            chosen = ", ".join(f"{label} {join}" for label, join in self.methods.items()) + \
                (f" (joined in {format_duration(self.bucket)} time buckets)" if self.bucket else "")
        if self.totals:
            chosen += f"; running totals: {', '.join(self.totals)}"
        text = f"{self.view}: {chosen}"
        if self.reason:
            text += f" ({self.reason})"
        if self.costs:
            text += "; estimated: " + ", ".join(f"{name} {_seconds(cost)}" for name, cost in self.costs.items())
        if self.shape is not None:
            text += f"; {self.shape.describe()}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"view": self.view, "join": self.join, "methods": self.methods or None,
                "totals": list(self.totals) or None,
                "bucket": format_duration(self.bucket) if self.bucket else None, "reason": self.reason or None,
                "estimated_seconds": {name: round(cost / 1e9, 4) for name, cost in self.costs.items()},
                "shape": None if self.shape is None else {
                    "spine_rows": round(self.shape.spine), "rows": round(self.shape.rows),
                    "keys": round(self.shape.keys), "pairs_of_equal_keys": round(self.shape.pairs)}}


def explain(joins: list[dict[str, Any]]) -> str:
    """`Choice.as_dict()`s as text: per view its join, why, and what each way considered would cost."""
    lines = []
    for join in joins:
        methods = join["methods"]
        chosen = ", ".join(f"{label} {how}" for label, how in methods.items()) if methods else join["join"]
        if join["bucket"]:
            chosen += f", joined in {join['bucket']} time buckets"
        if join.get("totals"):
            chosen += f"; running totals: {', '.join(join['totals'])}"
        lines.append(f"{join['view']}: {chosen}" + (f" ({join['reason']})" if join["reason"] else ""))
        if join["shape"]:
            shape = join["shape"]
            lines.append(f"  shape: {shape['spine_rows']:,} spine rows with keys, {shape['rows']:,} rows over "
                         f"{shape['keys']:,} keys, {shape['pairs_of_equal_keys']:,} pairs of equal keys")
        for name, seconds in sorted(join["estimated_seconds"].items(), key=lambda item: item[1]):
            lines.append(f"  estimated {seconds:10.3f} s  {name}")
    return "\n".join(lines)


def snapshot_widths(view: Any) -> list[timedelta]:
    """The widths `snapshot_join` needs measured: the TTL and twice its bucket."""
    if view.ttl is None:
        return []
    return [view.ttl, 2 * _ranked_bucket(view)]


def snapshot_join(view: Any, shape: Shape, *, buckets: bool = True, only: str | None = None) -> Choice:
    """"asof" or "ranked" (with or without time buckets) for a snapshot view computed from its rows;
    with `only`, the cheaper form of that join (every join's estimate is still shown).

    Without a TTL only the ASOF join is exact and cheap. With one, "ranked" hashes the spine and
    compares rows within the TTL (and ranks them), which needs memory for the spine instead of all
    rows, and wins while few rows per key fall within one TTL.
    """
    s, r = shape.spine, shape.rows
    costs = {"asof": SORTED * (s + r)}
    if view.ttl is not None:
        bucket = _ranked_bucket(view)
        within = shape.near.get(view.ttl, shape.pairs)
        costs["ranked"] = HASHED * (s + r) + COMPARED * shape.pairs + RANKED * within
        if buckets:
            costs["ranked in buckets"] = HASHED * (2 * s + r) + COMPARED * shape.near.get(2 * bucket, shape.pairs) + \
                RANKED * within
    best = min((name for name in costs if only is None or name.split(" ")[0] == only), key=costs.__getitem__)
    return Choice(view.name, best.split(" ")[0], costs, shape,
                  _ranked_bucket(view) if best == "ranked in buckets" else None)


def cached_widths(view: Any) -> list[timedelta]:
    return []


def cached_join(view: Any, shape: Shape, *, buckets: bool = True) -> Choice:
    """"intervals" (a hash join on the keys, or on keys and time buckets) or "asof" for cached rows.

    Cached rows carry the instant the next row of their keys becomes known, so a spine row finds
    its row by equality and a range check; with time buckets about as long as a key's rows are
    apart, each spine row compares a couple of intervals, however many rows its key has.
    """
    s, r = shape.spine, shape.rows
    costs = {"asof": SORTED * (s + r), "intervals": HASHED * (s + r) + COMPARED * shape.pairs}
    bucket = max(_MICROSECOND, timedelta(microseconds=shape.spans / r)) if r else None
    if buckets and bucket is not None:
        replicas = 2 * r
        costs["intervals in buckets"] = HASHED * (s + replicas) + UNNESTED * replicas + COMPARED * 2 * s
    best = min(costs, key=costs.__getitem__)
    return Choice(view.name, best.split(" ")[0], costs, shape,
                  _round_bucket(bucket) if best == "intervals in buckets" and bucket else None)


def window_widths(view: Any) -> list[timedelta]:
    return sorted({w for window in view.windows for w in (window.length, 2 * window.length)})


def window_joins(view: Any, shape: Shape, aggregates: dict[str, int], *, totals: dict[str, list[str]] | None = None,
                 buckets: bool = True, only_join: bool = False, only_totals: bool = False) -> Choice:
    """Per window, "join" (a range join grouped by spine row) or "frames" (window functions over the
    union of spine and events), for the cheapest split: the shortest windows joined, the rest framed;
    and, if cheaper, the features running totals give exactly (`totals`: per window label, their
    output names) from running totals, the others by the cheapest split of their windows.

    `aggregates` counts the selected features of each window label. Window frames share one sort of
    the union whatever their number of windows; the join groups the pairs within its longest window;
    running totals are grouped and summed once, then read by one ASOF join per window and one at t.
    With `only_totals`, running totals compute every feature they can.
    """
    best = _window_split(view, shape, aggregates, buckets=buckets, only_join=only_join)
    if not totals or only_join:
        return best
    taken = {label: len(names) for label, names in totals.items() if names}
    rest = {label: count - taken.get(label, 0) for label, count in aggregates.items()}
    split = _window_split(view, shape, rest, buckets=buckets) if any(rest.values()) else None
    s, e = shape.spine, shape.rows
    running = (HASHED + SORTED) * e + (len(taken) + 1) * SORTED * (s + e)
    cost = running + (split.costs[_cheapest(split)] if split else 0.0)
    costs = {**best.costs, **{f"running totals + {name}": running + value
                              for name, value in (split.costs if split else {}).items()}}
    if not split:
        costs["running totals"] = running
    if not only_totals and best.costs[_cheapest(best)] <= cost:
        return replace(best, costs=costs)
    outputs = tuple(name for names in totals.values() for name in names)
    methods = {**{label: "totals" for label in taken}, **(split.methods if split else {})}
    return Choice(view.name, "windows", costs, shape, split.bucket if split else None, methods, totals=outputs)


def _cheapest(choice: Choice) -> str:
    return min(choice.costs, key=choice.costs.__getitem__)


def _window_split(view: Any, shape: Shape, aggregates: dict[str, int], *, buckets: bool,
                  only_join: bool = False) -> Choice:
    """The cheapest split of the windows with selected features (`aggregates`) between join and frames."""
    s, e = shape.spine, shape.rows
    windows = sorted((w for w in view.windows if aggregates.get(w.label)), key=lambda w: w.length)
    costs: dict[str, float] = {}
    options: dict[str, tuple[dict[str, str], timedelta | None]] = {}
    for split in ([len(windows)] if only_join else range(len(windows) + 1)):
        joined, framed = windows[:split], windows[split:]
        cost = 0.0
        if framed:
            cost += SORTED * (s + e) + _framed(s + e, shape.keys) * (s + e) * sum(aggregates[w.label] for w in framed)
        name = "frames" if not joined else ("join" if not framed else
                                             f"join ≤{joined[-1].label}, frames")
        if joined:
            longest = joined[-1].length
            grouped = GROUPED * sum(aggregates[w.label] for w in joined) * shape.near.get(longest, shape.pairs)
            costs[name] = cost + HASHED * (s + e) + COMPARED * shape.pairs + grouped
            options[name] = ({w.label: ("join" if w in joined else "frames") for w in windows}, None)
            if buckets:
                bucketed = cost + HASHED * (2 * s + e) + COMPARED * shape.near.get(2 * longest, shape.pairs) + grouped
                costs[f"{name} (buckets)"] = bucketed
                options[f"{name} (buckets)"] = (options[name][0], longest)
            continue
        costs[name] = cost
        options[name] = ({w.label: "frames" for w in windows}, None)
    best = min(costs, key=costs.__getitem__)
    methods, bucket = options[best]
    return Choice(view.name, "windows", costs, shape, bucket, methods)


def _framed(rows: float, keys: float) -> float:
    """What one framed aggregate costs per row when `rows` fall on `keys` partitions."""
    per_key = max(rows / max(keys, 1.0), 2.0)
    return FRAMED * max(1.0, math.log2(per_key) / math.log2(FRAMED_KEY_ROWS)) ** 2


def forced(view: Any, join: str, methods: dict[str, str] | None = None) -> Choice:
    """A join the caller asked for (tests, benchmarks): no estimates."""
    return Choice(view.name, join, {}, None, None, methods or {}, reason="asked for")


def _ranked_bucket(view: Any) -> timedelta:
    return _round_bucket(max(view.ttl or _MICROSECOND, _MICROSECOND))


def _round_bucket(width: timedelta) -> timedelta:
    """A width no shorter than `width`, in whole seconds above a second (readable in frame.sql)."""
    if width > timedelta(seconds=1):
        return timedelta(seconds=-(-width // timedelta(seconds=1)))
    return width


def _seconds(nanoseconds: float) -> str:
    return f"{nanoseconds / 1e9:.2g}s"


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def snapshot_choice(connection: Any, view: Any, rows: exp.Query, join: str, *, cached: bool = False,
                     buckets: bool = True) -> Choice:
    """How the view's rows are joined: the cheapest join for the shape of the rows and the spine (one
    cheap pass, `compiler.shape.key_shape`), or `join` if one was asked for ("ranked": the cheaper of
    its two forms; a window view's join means "auto" here). Cached rows are validity intervals: a hash
    join on them ("intervals") or an ASOF join."""
    join = "auto" if join in ("join", "frames", "totals") else join
    if join not in ("auto", "ranked") or (join == "ranked" and view.ttl is None):
        return forced(view, "asof" if join == "ranked" else join)
    widths = cached_widths(view) if cached else snapshot_widths(view)
    shape = Shape.of(duck.first_row(connection, key_shape(list(view.entity), rows, "__fs_ts", "__fs_spine", widths)
                                    .sql(dialect="duckdb")), widths)
    if cached:
        return cached_join(view, shape, buckets=buckets)
    choice = snapshot_join(view, shape, buckets=buckets, only=None if join == "auto" else join)
    return choice if join == "auto" else replace(choice, reason="asked for")


def window_choice(connection: Any, view: Any, events: exp.Query, items: list[Selected] | tuple[Selected, ...],
                   join: str, *, buckets: bool = True) -> Choice:
    """Per window of a window view, "join" or "frames", and running totals for the counts and integer
    sums where cheaper (DuckDB): the cheapest for the shape of the events and the spine (one cheap
    pass), or `join` if one was asked for ("join": in time buckets when they pay; "totals": running
    totals wherever exact; a snapshot view's join means "auto" here)."""
    join = join if join in ("join", "frames", "totals") else "auto"
    if view.known_at:
        refuse_arrival_joins(view, join)
        if not buckets:
            return replace(forced(view, "windows", {w.label: "join" for w in view.windows}), reason=ARRIVALS)
        choice = window_joins(view, _window_shape(connection, view, events), _per_window(items), buckets=buckets,
                              only_join=True)
        return replace(choice, reason=ARRIVALS)
    if join == "frames" or (join == "join" and not buckets):
        return forced(view, "windows", {w.label: join for w in view.windows})
    shape = _window_shape(connection, view, events)
    counts = _per_window(items)
    totals: dict[str, list[str]] = {}
    if buckets:  # DuckDB: ASOF joins
        by_column = {a.column: a for a in aggregates(view)}
        for selected in items:
            aggregate, window = by_column[selected.feature.column], selected.feature.window
            if window is not None and by_totals(view, aggregate):
                totals.setdefault(window.label, []).append(output_column(aggregate, window.label))
    choice = window_joins(view, shape, counts, totals=totals, buckets=buckets, only_join=join == "join",
                                  only_totals=join == "totals")
    return choice if join == "auto" else replace(choice, reason="asked for")


def refuse_arrival_joins(view: Any, join: str) -> None:
    """A window view with arrival times bounds its windows on two times, which only the range join
    does: asking for frames or running totals for it is an error (on every engine)."""
    if view.known_at and join in ("frames", "totals"):
        raise FeatureStoreError(f"view '{view.name}' declares arrival times (known_at): its windows are computed "
                                f"by the range join only; ask for join 'join' or 'auto'")


def _per_window(items: Any) -> dict[str, int]:
    return Counter(selected.feature.window.label for selected in items if selected.feature.window is not None)


ARRIVALS = "arrival times (known_at): windows by range join only"


def _window_shape(connection: Any, view: Any, events: exp.Query) -> Shape:
    widths = window_widths(view)
    return Shape.of(duck.first_row(connection, key_shape(list(view.entity), events, "__fs_known", "__fs_spine", widths)
                                   .sql(dialect="duckdb")), widths)


def join_header(choices: list[Choice]) -> str:
    """SQL comment lines naming each view's join and the estimates that chose it."""
    return "".join(f"-- join {choice.describe()}\n" for choice in choices)
