"""Random window-view cases for the window suites: views (aggregates, one to three windows, lags,
invalid periods, `available_since`, arrival times), events and spines on the edges windows have, and
how a case is run in DuckDB and checked against the brute-force reference.

    @given(cases())
    def test_something(case): check(case)

Shared by tests/test_windows.py and tests/test_spark.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import assume
from hypothesis import strategies as st

from featurestore.compiler.point_in_time import ROW, Spine, point_in_time
from featurestore.compiler.windows import WindowRows, aggregates, by_totals, event_rows, output_column
from featurestore.config import parse_duration
from featurestore.definitions.loader import parse_definition
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, build_view

from reference import Measure, Rules, WindowIndex, aggregate, window_aggregate
from timelines import anywhere, instants, shapes, unmatched

BASE = datetime(2026, 1, 1, tzinfo=UTC)


STEP = timedelta(minutes=30)


US = timedelta(microseconds=1)


EXAMPLES = max(10, int(os.environ.get("FEATURESTORE_EXAMPLES", "1000")) // 5)


# A heavy case holds up to ~10k events and a few hundred spine rows, run under two methods per window:
# about as costly as ten small ones, so a quarter of EXAMPLES (a twentieth of FEATURESTORE_EXAMPLES:
# 50 by default, about 20 s on two cores), at least 10.
HEAVY_EXAMPLES = max(10, EXAMPLES // 4)


UTC_US = pa.timestamp("us", tz="UTC")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# On the grid, just off it, and longer than every span of events.
WINDOW_LABELS = ("30m", "45m", "1h", "90m", "2h", "3h", "1799s", "1801s", "1d")


LAGS = (timedelta(0), timedelta(minutes=30), timedelta(minutes=45), timedelta(hours=1))


def value_of(event: dict) -> Any:
    return event["v"]


def _positive(event: dict) -> bool:
    return event["v"] is not None and event["v"] > 0


@dataclass(frozen=True)
class Aggregate:
    """One output column of the view: its SQL, and the reference's reading of it.

    `exact_time`: its value depends on the event time to the nanosecond (not drawn with nanosecond events).
    """

    name: str
    sql: str
    measure: Measure
    exact_time: bool = False


POOL = (
    Aggregate("n", "count(*)", Measure("count", lambda e: 1)),
    Aggregate("nv", "count(v)", Measure("count", value_of)),
    Aggregate("dv", "count(DISTINCT v)", Measure("count_distinct", value_of)),
    Aggregate("pos", "count(*) FILTER (WHERE v > 0)", Measure("count", lambda e: 1, where=_positive)),
    Aggregate("ds", "count(DISTINCT s) FILTER (WHERE v >= 0)",
              Measure("count_distinct", lambda e: e["s"], where=lambda e: e["v"] is not None and e["v"] >= 0)),
    Aggregate("sv", "sum(v)", Measure("sum", value_of)),
    Aggregate("s2", "sum(v * 2)", Measure("sum", lambda e: None if e["v"] is None else e["v"] * 2)),
    Aggregate("sw", "sum(w)", Measure("sum", lambda e: e["w"])),
    Aggregate("av", "avg(v)", Measure("avg", value_of)),
    Aggregate("aw", "avg(w)", Measure("avg", lambda e: e["w"])),
    Aggregate("lo", "min(v)", Measure("min", value_of)),
    Aggregate("hi", "max(s)", Measure("max", lambda e: e["s"])),
    Aggregate("top", "max(w) FILTER (WHERE s = 'a')", Measure("max", lambda e: e["w"], where=lambda e: e["s"] == "a")),
    Aggregate("latest_v", "arg_max(v, o)", Measure("latest", value_of, order=lambda e: e["o"])),
    Aggregate("latest_s", "arg_max(s, o) FILTER (WHERE v IS NOT NULL)",
              Measure("latest", lambda e: e["s"], order=lambda e: e["o"], where=lambda e: e["v"] is not None)),
    Aggregate("last_v", "last(v)", Measure("latest", value_of)),
    Aggregate("last_s", "last(s ORDER BY o)", Measure("latest", lambda e: e["s"], order=lambda e: e["o"])),
    Aggregate("last_pos", "last(v) FILTER (WHERE v > 0)", Measure("latest", value_of, where=_positive)),
    Aggregate("seen", "max(ts)", Measure("max", lambda e: e["ts"]), exact_time=True),
    Aggregate("latest_at", "arg_max(v, ts)", Measure("latest", value_of, order=lambda e: e["ts"]), exact_time=True),
)


BY_NAME = {a.name: a for a in POOL}


@dataclass(frozen=True)
class Where:
    """A WHERE clause of the view's SELECT, and the reference's reading of it (per event)."""

    sql: str
    keeps: Callable[[dict], bool]


WHERES = (
    Where("v IS NOT NULL OR s = 'a'", lambda e: e["v"] is not None or e["s"] == "a"),  # OR: precedence matters
    Where("s IS DISTINCT FROM 'c'", lambda e: e["s"] != "c"),
)


def pick(*names: str) -> tuple[Aggregate, ...]:
    return tuple(BY_NAME[name] for name in names)


@dataclass(frozen=True)
class View:
    """A window view under test: its header and the aggregates of its SELECT."""

    aggregates: tuple[Aggregate, ...]
    entity: tuple[str, ...] = ("k",)
    windows: tuple[str, ...] = ("3h",)
    lag: timedelta = timedelta(0)
    since: datetime | None = None
    invalid: tuple[tuple[datetime, datetime], ...] = ()
    where: Where | None = None
    known_at: str | None = None  # "arrived": the events' arrival column (`-- known_at:`)

    @property
    def rules(self) -> Rules:
        return Rules(entity=self.entity, timestamp="ts", lag=self.lag, since=self.since, invalid=self.invalid,
                     known_at=self.known_at)

    @property
    def select(self) -> str:
        columns = ", ".join(f"{a.sql} AS {a.name}" for a in self.aggregates)
        where = f"WHERE {self.where.sql}\n" if self.where else ""
        return f"SELECT {', '.join(self.entity)}, {columns}\nFROM events\n{where}GROUP BY {', '.join(self.entity)}\n"

    def definition(self) -> str:
        header = [f"-- entity: {', '.join(self.entity)}", "-- timestamp: ts", "-- owner: test@example.com",
                  f"-- windows: {', '.join(self.windows)}"]
        if self.lag:
            header.append(f"-- available_after: {int(self.lag.total_seconds())}s")
        if self.since is not None:
            header.append(f"-- available_since: {self.since.isoformat()}")
        if self.invalid:
            header.append("-- invalid: " + ", ".join(f"{a.isoformat()}..{b.isoformat()}" for a, b in self.invalid))
        if self.known_at:
            header.append(f"-- known_at: {self.known_at}")
        return "\n".join(header) + "\n" + self.select


@dataclass(frozen=True)
class Case:
    """A view, its events, a spine and the features asked for (by name, in order; none: `view.*`).

    Times are UTC microseconds, plus nanoseconds (`ns`, and `arrived_ns` for the arrival `arrived`)
    where the flavour has them: "utc", "naive" (no time zone, read as UTC), "nanos" (TIMESTAMPTZ_NS)
    or "naive_nanos" (TIMESTAMP_NS). Events always have the column `arrived`; it counts only where
    the view declares it (`View.known_at`). `buckets`: whether "join" runs in time buckets (None: for
    odd spines).
    """

    view: View
    events: list[dict]
    spine: list[dict]
    methods: dict[str, str] = field(default_factory=dict)
    event_flavour: str = "utc"
    spine_flavour: str = "utc"
    features: tuple[str, ...] = ()
    full_names: bool = False
    arrival_flavour: str = "utc"
    buckets: bool | None = None


def event(ts: datetime | None, **values: Any) -> dict:
    """An event of key k=1, c='x' with NULL values and arrival, unless given."""
    return {"k": 1, "c": "x", "ts": ts, "v": None, "o": None, "w": None, "s": None, "ns": 0, "arrived": None,
            "arrived_ns": 0, **values}


def row(t: datetime | None, k: int | None = 1, c: str | None = "x", label: int = 0, ns: int = 0) -> dict:
    """A spine row."""
    return {"k": k, "c": c, "t": t, "label": label, "ns": ns}


def time_array(values: list[datetime | None], nanos: list[int], flavour: str) -> tuple[pa.Array, str]:
    """Times as Arrow, and the DuckDB type the test expects the column to read as."""
    if flavour == "utc":
        return pa.array(values, UTC_US), "TIMESTAMP WITH TIME ZONE"
    if flavour == "naive":
        return pa.array([v.replace(tzinfo=None) if v else None for v in values], pa.timestamp("us")), "TIMESTAMP"
    ns = [None if v is None else (v - EPOCH) // US * 1000 + extra for v, extra in zip(values, nanos)]
    if flavour == "naive_nanos":
        return pa.array(ns, pa.timestamp("ns")), "TIMESTAMP_NS"
    return pa.array(ns, pa.timestamp("ns", tz="UTC")), "TIMESTAMPTZ_NS"


def plain(value: Any) -> Any:
    """A result value as the reference writes it: HUGEINT (Arrow decimal) as int, naive times as UTC."""
    if isinstance(value, Decimal):
        assert value == value.to_integral_value()
        return int(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@dataclass(frozen=True)
class Result:
    rows: list[dict]
    types: dict[str, str]  # every output column's DuckDB type
    column_types: dict[str, str]  # the view's columns, as DuckDB describes its SELECT
    outputs: list[tuple[str, str, str]]  # (output name, aggregate, window label) in output order


def run(case: Case) -> Result:
    """The training frame of `case.spine` with every feature of the view, computed by DuckDB."""
    spec = case.view
    loaded, problems = parse_definition(Path("view.sql"), spec.definition())
    assert not problems, problems
    view, problems = build_view(loaded)
    assert view is not None, problems
    events = events_table(case)
    t, t_type = time_array([r["t"] for r in case.spine], [r["ns"] for r in case.spine], case.spine_flavour)
    spine = pa.table({"k": pa.array([r["k"] for r in case.spine], pa.int64()),
                      "c": pa.array([r["c"] for r in case.spine], pa.string()), "t": t,
                      "label": pa.array([r["label"] for r in case.spine], pa.int64()),
                      ROW: pa.array(range(len(case.spine)), pa.int64())})
    spine_columns = (Column(name="k", type="BIGINT"), Column(name="c", type="VARCHAR"), Column(name="t", type=t_type),
                     Column(name="label", type="BIGINT"), Column(name=ROW, type="BIGINT"))
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("events", events)
        connection.register("spine", spine)
        assert connection.execute("DESCRIBE SELECT t FROM spine").fetchall()[0][1] == t_type
        # What the resolver fills in: the SELECT's output columns, and the type of the event time.
        columns = tuple(Column(name=name, type=kind) for name, kind, *_ in
                        connection.execute("DESCRIBE " + spec.select).fetchall())
        event_time_type = connection.execute("DESCRIBE SELECT ts FROM events").fetchall()[0][1]
        arrival_type = connection.execute("DESCRIBE SELECT arrived FROM events").fetchall()[0][1]
        assert arrival_type == time_array([], [], case.arrival_flavour)[1]
        view = view.model_copy(update={"columns": columns, "event_time_type": event_time_type,
                                       "arrival_type": arrival_type if spec.known_at else ""})
        references = [f"view.{name}" for name in case.features] or ["view.*"]
        selected = select_features({view.name: view}, references, full_names=case.full_names,
                                   taken=["k", "c", "t", "label"])
        # The "join" method in time buckets (what the join chooser picks for few heavy keys) for odd spines.
        # With arrival times every window is joined, whatever its drawn method: so are the buckets' widths.
        joined = [w.length for w in view.windows if case.methods.get(w.label) == "join" or spec.known_at]
        buckets = len(case.spine) % 2 == 1 if case.buckets is None else case.buckets
        bucket = max(joined) if joined and buckets else None
        # "totals": the window's counts and integer sums from running totals, its other features framed.
        totals = frozenset(output_column(a, label) for a in aggregates(view) for label, method in case.methods.items()
                           if method == "totals" and by_totals(view, a))
        windows = WindowRows(view, event_rows(view, view.query), tuple(selected), methods=dict(case.methods),
                             bucket=bucket, totals=totals)
        relation = connection.sql(point_in_time(Spine("spine", spine_columns, "t"), [windows]).sql(dialect="duckdb"))
        types = dict(zip(relation.columns, [str(kind) for kind in relation.types]))
        table = relation.to_arrow_table()
    outputs = []
    for item in selected:
        assert item.feature.window is not None
        outputs.append((item.output, item.feature.column, item.feature.window.label))
    rows = [{name: plain(value) for name, value in r.items() if name != "t"} for r in table.to_pylist()]
    return Result(rows, types, {c.name: c.type for c in columns}, outputs)


def events_table(case: Case) -> pa.Table:
    """The case's events as Arrow: times (and arrivals) in their flavours."""
    events = case.events
    ts, _ = time_array([e["ts"] for e in events], [e["ns"] for e in events], case.event_flavour)
    arrived, _ = time_array([e["arrived"] for e in events], [e["arrived_ns"] for e in events], case.arrival_flavour)
    return pa.table({"k": pa.array([e["k"] for e in events], pa.int64()),
                     "c": pa.array([e["c"] for e in events], pa.string()), "ts": ts,
                     "v": pa.array([e["v"] for e in events], pa.int64()),
                     "o": pa.array([e["o"] for e in events], pa.int64()),
                     "w": pa.array([e["w"] for e in events], pa.float64()),
                     "s": pa.array([e["s"] for e in events], pa.string()), "arrived": arrived})


def reference_events(case: Case) -> list[dict]:
    """The events as the reference sees them: times and arrivals in UTC microseconds, a finer one ceiled
    (as point_in_time reads every row time: never known before it happened)."""
    return [{**e, "ts": ceiled(e["ts"], e["ns"]), "arrived": ceiled(e["arrived"], e["arrived_ns"])}
            for e in case.events]


def ceiled(at: datetime | None, ns: int) -> datetime | None:
    """A time in microseconds plus `ns` nanoseconds, ceiled to the microsecond."""
    return at + US if at is not None and ns else at


def expected(case: Case, indexed: bool = False) -> list[dict]:
    """Every spine row with every feature, by the reference (spine times floored to microseconds):
    `window_aggregate`, or when `indexed` the same aggregates over the windows `WindowIndex` finds."""
    spec, events = case.view, reference_events(case)
    if spec.where is not None:
        events = [e for e in events if spec.where.keeps(e)]
    lengths = {label: parse_duration(label) for label in spec.windows}
    index = WindowIndex(events, spec.rules) if indexed else None
    frame = []
    for r in case.spine:
        key = tuple(r[k] for k in spec.entity)
        values = {"k": r["k"], "c": r["c"], "label": r["label"]}
        for label in spec.windows:
            inside = index.window_events(key, r["t"], lengths[label]) if index else None
            for item in spec.aggregates:
                values[f"{item.name}_{label}"] = (
                    None if inside is None else aggregate(inside, spec.rules, item.measure)) if index else \
                    window_aggregate(events, key, r["t"], spec.rules, item.measure, lengths[label])
        frame.append(values)
    return frame


def check(case: Case, frame: list[dict] | None = None) -> Result:
    """The frame equals the reference's (`frame`, else `expected(case)`), with the view's column types,
    features in the order asked."""
    result = run(case)
    spec = case.view
    names = list(case.features) or [f"{a.name}_{label}" for a in spec.aggregates for label in spec.windows]
    outputs = [f"view__{name}" if case.full_names else name for name in names]
    assert [name for name, _, _ in result.outputs] == outputs
    assert list(result.types) == ["k", "c", "t", "label", *outputs]
    assert {name: result.types[name] for name, _, _ in result.outputs} == \
        {name: result.column_types[column] for name, column, _ in result.outputs}
    want = [{"k": r["k"], "c": r["c"], "label": r["label"], **{output: r[name] for name, output in zip(names, outputs)}}
            for r in (expected(case) if frame is None else frame)]
    assert len(result.rows) == len(want)
    for number, (actual, reference) in enumerate(zip(result.rows, want)):
        assert actual == reference, f"spine row {number}: {case.spine[number]}"
    return result


def grid(max_index: int) -> st.SearchStrategy[datetime]:
    return st.builds(lambda i, nudge: BASE + i * STEP + timedelta(microseconds=nudge),
                     st.integers(0, max_index), st.sampled_from([0, 0, 0, 0, 1, -1]))


nanos = st.sampled_from([0, 0, 0, 1, 500, 999])


FLAVOURS = ("utc", "naive", "nanos", "naive_nanos")


def sizes(draw: st.DrawFn) -> int:
    """A list's least size: mostly a few, sometimes zero (no events, an empty spine)."""
    return draw(st.sampled_from([1, 3, 3, 6, 6, 0]))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    composite = draw(st.booleans())
    hot = draw(st.booleans())  # one key holds most events
    event_flavour = draw(st.sampled_from(FLAVOURS))
    arrival_flavour = draw(st.sampled_from(FLAVOURS))
    lag = draw(st.sampled_from(LAGS))
    keys = st.sampled_from([1, 1, 1, 1, 1, 1, 2, None]) if hot else st.sampled_from([1, 2, 3, None])
    events = draw(st.lists(st.fixed_dictionaries({
        "k": keys, "c": st.sampled_from(["x", "y", "x", None]),
        "ts": st.one_of(grid(10), grid(10), grid(10), st.none()),
        "v": st.one_of(st.none(), st.integers(-3, 3)), "o": st.one_of(st.none(), st.integers(0, 3)),
        "w": st.one_of(st.none(), st.sampled_from([-1.5, -0.5, 0.0, 0.5, 2.0, 3.5])),
        "s": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        "ns": nanos if "nanos" in event_flavour else st.just(0)}), min_size=sizes(draw), max_size=24))
    # Arrivals (counted where the view declares them): before, at or after ts + lag, or at an instant
    # several events share; copies below keep their original's.
    shared = draw(st.lists(grid(12), min_size=1, max_size=2))
    for e in events:
        e["arrived"] = draw(arrivals(e["ts"], lag, shared))
        e["arrived_ns"] = draw(nanos) if "nanos" in arrival_flavour and e["arrived"] is not None else 0
    if events:  # exact copies count twice; copies with other values tie on time and o
        for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=6)):
            other = draw(st.sampled_from([True, True, False]))
            events.append({**events[i], "v": draw(st.integers(-3, 3)), "s": draw(st.sampled_from(["a", "b", "c"]))}
                          if other else dict(events[i]))
    invalid = tuple(tuple(sorted([draw(grid(10)), draw(grid(10))])) for _ in range(draw(st.integers(0, 2))))
    pool = [a for a in POOL if not (a.exact_time and "nanos" in event_flavour)]
    aggregates = tuple(pool) if draw(st.booleans()) else tuple(draw(st.lists(
        st.sampled_from(pool), min_size=1, max_size=5, unique_by=lambda a: a.name)))
    windows = tuple(draw(st.lists(st.sampled_from(WINDOW_LABELS), min_size=1, max_size=3, unique=True)))
    view = View(aggregates=aggregates, entity=("k", "c") if composite else ("k",), windows=windows,
                lag=lag, since=draw(st.one_of(st.none(), grid(12))), invalid=invalid,
                where=draw(st.sampled_from([None, None, *WHERES])), known_at=draw(st.sampled_from([None, "arrived"])))
    spine_flavour = draw(st.sampled_from(FLAVOURS))
    spine = draw(st.lists(spine_rows(view, events, spine_flavour), min_size=sizes(draw), max_size=16))
    # Drawn with arrival times too: the compiler must join every window of such a view whatever is asked.
    methods = {label: draw(st.sampled_from(["join", "frames", "totals"])) for label in windows}
    names = [f"{a.name}_{label}" for a in aggregates for label in windows]
    features = () if draw(st.booleans()) else tuple(draw(st.permutations(names))[:draw(st.integers(1, len(names)))])
    return Case(view, events, spine, methods, event_flavour, spine_flavour, features, draw(st.booleans()),
                arrival_flavour)


@st.composite
def arrivals(draw: st.DrawFn, ts: datetime | None, lag: timedelta, shared: list[datetime]) -> datetime | None:
    """An event's arrival: NULL (on time), an instant others share, anywhere, or (mostly) some grid
    steps before, at or after its time plus the lag, or a microsecond either side of those."""
    origin = draw(st.sampled_from(["null", "shared", "free", "due", "due", "due"]))
    if origin == "null":
        return None
    if origin == "shared":
        return draw(st.sampled_from(shared))
    if origin == "free" or ts is None:
        return draw(grid(14))
    return ts + lag + draw(st.sampled_from([-1, 0, 0, 1, 1, 2, 5])) * STEP + draw(st.sampled_from([0, 0, 1, -1])) * US


@st.composite
def spine_rows(draw: st.DrawFn, view: View, events: list[dict], flavour: str) -> dict:
    """A spine row; most sit on an edge of one event, with its keys: exactly when it becomes known
    or when it leaves a window (known-at time plus the window), or a microsecond either side. With
    arrival times, also at its arrival and at its arrival plus a window (where it must not leave)."""
    ns = draw(nanos) if "nanos" in flavour else 0
    timed = [e for e in events if e["ts"] is not None]
    origin = draw(st.sampled_from(["free", "edge", "edge", "edge", "since"]))
    if origin == "edge" and timed:
        e = draw(st.sampled_from(timed))
        known = ceiled(e["ts"], e["ns"]) + view.lag
        if view.known_at and e["arrived"] is not None and draw(st.booleans()):
            known = ceiled(e["arrived"], e["arrived_ns"])
        shift = draw(st.sampled_from([timedelta(0), *(parse_duration(label) for label in view.windows)]))
        t = known + shift + draw(st.sampled_from([0, 0, 1, -1])) * US
        return row(t, e["k"], e["c"], draw(st.integers(0, 1)), ns)
    if origin == "since" and view.since is not None:
        t = view.since + draw(st.sampled_from([0, 1, -1])) * US
    else:
        t = draw(st.one_of(st.none(), grid(14)))
    return row(t, draw(st.one_of(st.none(), st.integers(1, 4))), draw(st.sampled_from(["x", "x", "y", None])),
               draw(st.integers(0, 1)), ns)


# Window lengths for heavy cases: from shorter than most gaps between events (a second, a minute) to
# covering hundreds of them (a week of hourly readings), some a second off a round length.
HEAVY_WINDOWS = ("1s", "59s", "10m", "1h", "3601s", "6h", "1d", "86399s", "3d", "7d")


@st.composite
def heavy_cases(draw: st.DrawFn) -> Case:
    """One to five keys, hundreds to thousands of events each (readings or bursts, `timelines`), with
    exact copies, events tied on time with other values, NULLs, and a few hundred spine rows, most of
    them exactly on an edge that an event defines (or a microsecond either side).

    Half of the views declare arrival times: events arrive late by a drawn delay, in batches (many
    at one instant, some exactly when due), early (known at time plus lag all the same) or NULL."""
    composite = draw(st.booleans())
    event_flavour = draw(st.sampled_from(FLAVOURS))
    arrival_flavour = draw(st.sampled_from(FLAVOURS))
    known_at = draw(st.sampled_from([None, "arrived"]))
    lag = draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(seconds=1), timedelta(minutes=15),
                                timedelta(hours=1), timedelta(days=1)]))
    per_key = draw(shapes())
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    # Composite keys share their parts ((1, 'x') and (1, 'y')), so a join on one part alone mixes them up.
    keys = rng.sample([(k, c) for k in (1, 2, 3) for c in ("x", "y")], len(per_key)) if composite else \
        [(k, None) for k in rng.sample(range(1, 8), len(per_key))]
    nulls = draw(st.sampled_from([0.0, 0.05, 0.5]))  # the share of NULL values

    def value(values: list) -> Any:
        return None if rng.random() < nulls else rng.choice(values)

    # Arrivals: a share NULL, the others late by a delay (some early, some exactly due), or in batches
    # every `batch` (the first batch at or after ts + lag: many events arrive together).
    on_time = draw(st.sampled_from([0.0, 0.1, 0.5]))
    batch = draw(st.sampled_from([None, timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1),
                                  timedelta(days=1)]))
    delays = [-timedelta(hours=1), -US, timedelta(0), timedelta(0), US, timedelta(seconds=1), timedelta(minutes=10),
              timedelta(hours=2), timedelta(days=1), timedelta(days=3)]

    def arrival(ts: datetime) -> datetime | None:
        if rng.random() < on_time:
            return None
        if batch is not None and rng.random() < 0.8:
            return BASE + -(-(ts + lag - BASE) // batch) * batch
        return ts + lag + rng.choice(delays)

    event_nanos = [0] if "nanos" not in event_flavour else [0, 0, 0, 1, 500, 999]
    arrival_nanos = [0] if "nanos" not in arrival_flavour else [0, 0, 0, 1, 500, 999]
    events = []
    for (k, c), shape in zip(keys, per_key):
        for ts in instants(shape, BASE + rng.randrange(86_400) * timedelta(seconds=1), rng):
            arrived = arrival(ts)
            events.append(event(ts, k=k, c=c or rng.choice("xy"), v=value(list(range(-20, 21))), o=value([0, 1, 2, 3]),
                                w=value([-1.5, -0.5, 0.0, 0.5, 2.0, 3.5]), s=value(["a", "b", "c"]),
                                ns=rng.choice(event_nanos), arrived=arrived,
                                arrived_ns=0 if arrived is None else rng.choice(arrival_nanos)))
    timed = list(events)
    assume(timed)  # a timeline whose outages took every event: nothing to check (rare)
    for _ in range(rng.randint(0, 5)):  # events without a time or a key
        events.append({**rng.choice(timed), "ts": None})
        events.append({**rng.choice(timed), "k": None})
    copies = draw(st.sampled_from([0.0, 0.01, 0.05]))  # exact copies count twice; others tie on time (and o)
    for e in timed:
        if rng.random() < copies:
            events.append(dict(e) if rng.random() < 0.3 else {**e, "v": rng.randint(-3, 3), "s": rng.choice("abc")})
    if draw(st.booleans()):
        rng.shuffle(events)

    def near(at: datetime) -> datetime:
        return at + rng.choice([-1, 0, 0, 1]) * US

    def due(e: dict) -> datetime:
        return ceiled(e["ts"], e["ns"]) + lag

    invalid = []
    for _ in range(draw(st.integers(0, 3))):
        start = near(rng.choice(timed)["ts"])
        invalid.append((start, start + draw(st.sampled_from([timedelta(0), US, timedelta(seconds=1), timedelta(hours=1),
                                                             timedelta(days=1), timedelta(days=7)]))))
    first, last = min(e["ts"] for e in timed), max(e["ts"] for e in timed)
    since = draw(st.sampled_from([None, None, "event", "free"]))
    pool = [a for a in POOL if not (a.exact_time and "nanos" in event_flavour)]
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique_by=lambda a: a.name))
    view = View(aggregates=tuple(chosen),
                entity=("k", "c") if composite else ("k",),
                windows=tuple(draw(st.lists(st.sampled_from(HEAVY_WINDOWS), min_size=1, max_size=3, unique=True))),
                lag=lag, since=None if since is None else near(rng.choice(timed)["ts"]) if since == "event" else
                first + (last - first) * rng.random(), invalid=tuple(invalid),
                where=draw(st.sampled_from([None, None, *WHERES])), known_at=known_at)
    lengths = [parse_duration(label) for label in view.windows]
    spine_flavour = draw(st.sampled_from(FLAVOURS))
    spine = []
    # With arrival times, also at an arrival (the event is known 1 µs later, if not due later still),
    # and at an arrival plus a window, where an event arrived late stays in the window.
    weights = [25, 25, 5, 5, 20, 5, 5, 5, *([20, 10] if known_at else [0, 0])]
    for _ in range(draw(st.integers(100, 300))):
        e = rng.choice(timed)
        k, c = e["k"], e["c"]
        origin = rng.choices(["known", "leaves", "since", "invalid", "free", "no time", "no key", "other key",
                              "arrives", "arrived + W"], weights)[0]
        arrived = ceiled(e["arrived"], e["arrived_ns"]) or due(e)
        if origin == "known":  # the event becomes known: not yet in its windows, and in them 1 µs later
            t = near(due(e))
        elif origin == "leaves":  # the event is in a window W at t = ts + lag + W, and not 1 µs later
            t = near(due(e) + rng.choice(lengths))
        elif origin == "arrives":
            t = near(arrived)
        elif origin == "arrived + W":
            t = near(arrived + rng.choice(lengths))
        elif origin == "since" and view.since is not None:
            t = near(view.since)
        elif origin == "invalid" and invalid:
            t = near(rng.choice(rng.choice(invalid)) + lag + rng.choice([timedelta(0), *lengths]))
        else:
            t = anywhere(first, last, rng)
        t, k, c = unmatched(origin, t, k, c, composite, rng)
        ns = rng.choice([0, 0, 1, 500, 999]) if "nanos" in spine_flavour else 0
        spine.append(row(t, k, c, rng.randint(0, 1), ns))
    methods = {label: draw(st.sampled_from(["join", "frames", "totals"])) for label in view.windows}
    names = [f"{a.name}_{label}" for a in view.aggregates for label in view.windows]
    features = () if draw(st.booleans()) else tuple(draw(st.permutations(names))[:draw(st.integers(1, len(names)))])
    return Case(view, events, spine, methods, event_flavour, spine_flavour, features, draw(st.booleans()),
                arrival_flavour)
