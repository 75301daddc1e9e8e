"""Window aggregate benchmark: training frames and online lookups of a window view against hand-written floors.

    python benchmarks/windows.py                                 # 10M events x 1M spine rows (+ hot key, online)
    python benchmarks/windows.py --quick                         # 300k x 30k, a look in well under a minute
    python benchmarks/windows.py --events 2_000_000 --spine 200_000 --repeat 2
    python benchmarks/windows.py --format json > result.json

One window view, `activity` (`windows: 1h, 1d, 7d`; `count(*)`, `sum(amount)`, `avg(amount)`,
`max(amount)` per user: 12 feature columns), over one generated Parquet file of card
transactions (users with log-normally skewed activity, 90 days), and one generated Parquet
spine (random users at random times, plus rows exactly at an event and exactly one window
after one, where the bounds `t - W <= ts < t` decide).

Offline, ours is `store.training_frame(spine.parquet, ["activity.*"])`, the public API
(window views are never cached, so every call computes them). The floor is the faster of the
two queries a careful engineer would write by hand in DuckDB for exactly this frame, each in
a fresh connection reading the same Parquet files and returning the same columns for every
spine row, in spine order:

- "range join": spine JOIN events ON user AND t - 7d <= ts < t, grouped by spine row, the
  shorter windows as FILTER clauses (cheap while few events fall in one window of one user);
- "window frames": window functions with RANGE frames over the union of spine rows (at
  t - 1 µs) and events, per user in time order (O(n log n) however skewed the users).

All must agree (counts and maxima exactly, sums and averages to 1e-9 relative) before any
time is reported. A second, smaller shape puts ~40% of the events and spine rows on one key
with a 7-day window, where a range join pairs billions of rows: its floor is skipped above
`--join-floor-cap` estimated pairs, and said so.

Online, after `store.materialize(until=T)` on a copy of the events shifted to end now, the
p50/p99 latency of `store.online({"user_id": [k]}, [n_1h, n_1d, n_7d], at=T)` is compared with
a lookup of the same width in a snapshot view (`latest`: the last transaction's amount, merchant
and hour), in process and over HTTP (`featurestore serve`, POST /v1/features, one request in
flight). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    changed_during_run,
    command,
    duck,
    emit,
    fastest,
    header,
    interleaved,
    machine,
    mark,
    median,
    medians,
    page_in,
    percentiles,
    positive_int,
    progress,
    results_differ,
    rotated,
    spread,
    sql_literal,
    table,
    timed,
    verdict,
    versions,
)
from services import HEADERS, free_port, launch, release_handles, stop, wait_ready

GENERATOR_VERSION = 2   # bump when the generated data change, so cached files are rebuilt
SEED = 20240901         # salts every hash the generator draws from: same bytes on every machine
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
SPAN_DAYS = 90
EVENTS_PER_USER = 100   # default users = events / 100 (10M events: 100k users)
MERCHANTS = 5_000
ROW_GROUP = 131_072
WINDOWS = {"1h": HOUR_US, "1d": DAY_US, "7d": 7 * DAY_US}
HOT_WINDOWS = ("7d",)
AGGREGATES = {"n": "count(*)", "total": "sum(amount)", "mean": "avg(amount)", "top": "max(amount)"}
EXACT = ("n", "top")    # compared exactly; the others to RELATIVE
RELATIVE = 1e-9
ONLINE_FEATURES = {"window": ["activity.n_1h", "activity.n_1d", "activity.n_7d"],
                   "snapshot": ["latest.last_amount", "latest.last_merchant", "latest.last_hour"]}
OFFLINE_TARGET = 1.3    # ours <= 1.3x the floor's time
ONLINE_TARGET = 2.0     # window p99 <= 2x the snapshot p99 (in process, and over HTTP)
WARMUP_LOOKUPS = 200
CHECKED_HTTP = 25
QUICK = {"events": 300_000, "spine": 30_000, "repeat": 2, "lookups": 600, "http_requests": 400}


# --------------------------------------------------------------------------- shapes and data


@dataclass(frozen=True)
class Shape:
    """One data shape (regular, or with a hot key), and where its files live."""

    name: str
    events: int
    spine: int
    users: int
    hot_share: float
    windows: tuple[str, ...]
    folder: Path

    @property
    def project(self) -> Path:
        return self.folder / "project"

    @property
    def events_path(self) -> Path:
        return self.project / "data" / "events.parquet"

    @property
    def spine_path(self) -> Path:
        return self.folder / "spine.parquet"

    @property
    def columns(self) -> list[str]:
        """The frame's feature columns, as ours names them: aggregate by aggregate, window by window."""
        return [f"{name}_{window}" for name in AGGREGATES for window in self.windows]

    def describe(self) -> str:
        hot = f", {self.hot_share:.0%} of events and spine rows on user 1" if self.hot_share else ""
        return (f"{self.events:,} events x {self.spine:,} spine rows, {self.users:,} users{hot}; "
                f"windows {', '.join(self.windows)} x {len(AGGREGATES)} aggregates")


def make_shape(workdir: Path, name: str, events: int, spine: int, users: int, hot_share: float,
               windows: tuple[str, ...]) -> Shape:
    folder = workdir / f"{name}_events{events}_spine{spine}_users{users}_hot{round(hot_share * 100)}"
    return Shape(name, events, spine, users, hot_share, windows, folder)


def ensure_data(shape: Shape, log: Callable[[str], None]) -> float:
    """Generate the shape's files unless an identical generation is on disk; returns the seconds spent."""
    meta = {"generator": GENERATOR_VERSION, "seed": SEED, "events": shape.events, "spine": shape.spine,
            "users": shape.users, "hot_share": shape.hot_share}
    stamp = shape.folder / "generated.json"
    write_project(shape.project, shape.windows, "data/events.parquet")
    if stamp.is_file() and json.loads(stamp.read_text()) == meta and shape.events_path.is_file() \
            and shape.spine_path.is_file():
        return 0.0
    log(f"generating {shape.name}: {shape.describe()} in {shape.folder}")
    started = time.perf_counter()
    stamp.unlink(missing_ok=True)
    shape.events_path.parent.mkdir(parents=True, exist_ok=True)
    with duck() as connection:
        for statement in generator_sql(shape):
            connection.execute(statement)
    stamp.write_text(json.dumps(meta) + "\n")
    return time.perf_counter() - started


def generator_sql(shape: Shape) -> list[str]:
    """DuckDB statements writing the events and the spine. Every random draw is a hash of the row number
    and SEED (not random(), which depends on threads), so every run and machine writes the same rows.

    Events: one every SPAN/N µs plus a jitter below that step (so times are unique and in order),
    user drawn by the log-normal activity weights (or user 1 with probability `hot_share`),
    amount log-normal in cents, merchant uniform. Spine: 10% at an event's own time (that event
    must not count), 3%/3%/2% exactly 1h/1d/7d after one (it must count), 3% unknown users, the
    rest random users (same weights) at random times over the span plus a day; in random order.
    """
    span = SPAN_DAYS * DAY_US
    step = span // shape.events
    users, hot = shape.users, shape.hot_share
    # hash() of one integer mixes well; hash(a, b, c) of several does not (it combines the values' hashes,
    # so draws differing only in c would be almost equal). Stream k of row i is hash(i * 64 + k + SEED).
    draw = f"CREATE OR REPLACE MACRO h(i, k) AS hash(i * 64 + k + {SEED})"
    u01 = "CREATE OR REPLACE MACRO u01(x) AS x::DOUBLE / 18446744073709551616.0"
    normal = "CREATE OR REPLACE MACRO normal(a, b) AS sqrt(-2 * ln(1 - u01(a))) * cos(2 * pi() * u01(b))"
    weights = f"""
CREATE OR REPLACE TEMP TABLE users AS
SELECT user_id, coalesce(sum(w) OVER (ORDER BY user_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                / sum(w) OVER () AS lo
FROM (SELECT u AS user_id, exp(0.8 * normal(h(u, 1), h(u, 2))) AS w
      FROM range(1, {users} + 1) AS r(u))"""
    events = f"""
CREATE OR REPLACE TEMP TABLE events AS
WITH raw AS (
    SELECT i, {START_US} + i * {step} + (h(i, 3) % {step})::BIGINT AS us,
           u01(h(i, 4)) AS pick, u01(h(i, 5)) AS hot,
           h(i, 6) AS h6, h(i, 7) AS h7, h(i, 8) AS h8
    FROM range({shape.events}) AS r(i))
SELECT raw.i, CASE WHEN raw.hot < {hot} THEN 1 ELSE u.user_id END AS user_id, raw.us,
       round(exp(3.0 + normal(h6, h7)), 2) AS amount, (h8 % {MERCHANTS})::INTEGER AS merchant_id
FROM raw ASOF JOIN users AS u ON raw.pick >= u.lo"""
    write_events = f"""
COPY (SELECT user_id, make_timestamp(us)::TIMESTAMPTZ AS ts, amount, merchant_id FROM events ORDER BY i)
TO {sql_literal(shape.events_path)} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})"""
    spine = f"""
COPY (
    WITH raw AS (
        SELECT j, u01(h(j, 20)) AS kind, (h(j, 21) % {shape.events})::BIGINT AS e,
               u01(h(j, 22)) AS pick, u01(h(j, 23)) AS hot,
               h(j, 24) AS h24, h(j, 25) AS h25, h(j, 26) AS h26
        FROM range({shape.spine}) AS r(j)),
    drawn AS (
        SELECT raw.*, CASE WHEN raw.hot < {hot} THEN 1 ELSE u.user_id END AS random_user
        FROM raw ASOF JOIN users AS u ON raw.pick >= u.lo)
    SELECT CASE WHEN kind < 0.18 THEN ev.user_id
                WHEN kind < 0.21 THEN {users} + 1 + (h24 % {users})::BIGINT
                ELSE random_user END AS user_id,
           make_timestamp(CASE WHEN kind < 0.10 THEN ev.us
                               WHEN kind < 0.13 THEN ev.us + {HOUR_US}
                               WHEN kind < 0.16 THEN ev.us + {DAY_US}
                               WHEN kind < 0.18 THEN ev.us + {7 * DAY_US}
                               ELSE {START_US} + (h25 % {span + DAY_US})::BIGINT END)::TIMESTAMPTZ AS ts,
           (h26 % 2)::BIGINT AS label
    FROM drawn JOIN events AS ev ON ev.i = drawn.e
    ORDER BY h(j, 27))
TO {sql_literal(shape.spine_path)} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})"""
    return [draw, u01, normal, weights, events, write_events, spine]


def write_project(project: Path, windows: tuple[str, ...], events: str) -> None:
    """The benchmark project: one Parquet source, the window view `activity`, the snapshot view `latest`."""
    (project / "definitions").mkdir(parents=True, exist_ok=True)
    (project / "featurestore.toml").write_text(
        f'definitions = "definitions"\n\n[sources]\nevents = {json.dumps(events)}\n')
    header = "-- entity: user_id\n-- timestamp: ts\n-- owner: bench@example.com\n"
    aggregates = ", ".join(f"{expression} AS {name}" for name, expression in AGGREGATES.items())
    (project / "definitions" / "activity.sql").write_text(
        f"{header}-- description: benchmark window view\n-- windows: {', '.join(windows)}\n"
        f"SELECT user_id, {aggregates}\nFROM events\nGROUP BY user_id\n")
    (project / "definitions" / "latest.sql").write_text(
        f"{header}-- description: benchmark snapshot view: the latest transaction\n"
        "SELECT user_id, ts, amount AS last_amount, merchant_id AS last_merchant, hour(ts) AS last_hour\n"
        "FROM events\n")


# --------------------------------------------------------------------------- offline contenders


FLOORS = ("join", "frames")
FLOOR_LABELS = {"join": "floor: range join + GROUP BY", "frames": "floor: window frames over the union"}


def _interval(micros: int) -> str:
    return f"INTERVAL '{micros} microseconds'"


def floor_sql(shape: Shape, kind: str) -> str:
    """The hand-written floor: the spine's columns then the same 12 features, for every spine row, in spine order.

    The floor may assume what the data guarantees: no NULL keys or times (so no NULL rows), no lag,
    no invalid periods, `amount` never NULL (so count(*) is a count of the joined rows).
    """
    spine, events = sql_literal(shape.spine_path), sql_literal(shape.events_path)
    longest = max(shape.windows, key=WINDOWS.__getitem__)
    if kind == "join":
        aggregates = []
        for name, expression in AGGREGATES.items():
            argument = "*" if expression == "count(*)" else "e.amount"
            function = expression.split("(")[0]
            for window in shape.windows:
                within = "" if window == longest else f" FILTER (WHERE e.ts >= s.ts - {_interval(WINDOWS[window])})"
                aggregates.append(f"{function}({argument}){within} AS {name}_{window}")
        outputs = [f"coalesce(a.{c}, 0) AS {c}" if c.startswith("n_") else f"a.{c}" for c in shape.columns]
        return f"""
WITH s AS (SELECT user_id, ts, label, file_row_number AS r FROM read_parquet({spine}, file_row_number = true)),
a AS (
    SELECT s.r,
           {(',' + chr(10) + '           ').join(aggregates)}
    FROM s JOIN read_parquet({events}) AS e
      ON e.user_id = s.user_id AND e.ts >= s.ts - {_interval(WINDOWS[longest])} AND e.ts < s.ts
    GROUP BY s.r)
SELECT s.user_id, s.ts, s.label, {', '.join(outputs)}
FROM s LEFT JOIN a ON a.r = s.r
ORDER BY s.r"""
    if kind == "frames":
        # A spine row sits 1 µs before its time t, and its frame ends at the current row: events in [t - W, t).
        aggregates = []
        for name, expression in AGGREGATES.items():
            argument = "event" if expression == "count(*)" else "amount"
            function = expression.split("(")[0]
            for window in shape.windows:
                aggregates.append(f"{function}({argument}) OVER w{window} AS {name}_{window}")
        frames = ",\n       ".join(
            f"w{w} AS (PARTITION BY user_id ORDER BY t RANGE BETWEEN {_interval(WINDOWS[w] - 1)} PRECEDING "
            "AND CURRENT ROW)" for w in shape.windows)
        return f"""
WITH u AS (
    SELECT user_id, ts AS t, 1 AS event, amount, NULL::BIGINT AS r, NULL::TIMESTAMPTZ AS ts, NULL::BIGINT AS label
    FROM read_parquet({events})
    UNION ALL
    SELECT user_id, ts - INTERVAL '1 microsecond', NULL, NULL, file_row_number, ts, label
    FROM read_parquet({spine}, file_row_number = true))
SELECT user_id, ts, label,
       {(',' + chr(10) + '       ').join(aggregates)}
FROM u
WINDOW {frames}
QUALIFY r IS NOT NULL
ORDER BY r"""
    raise ValueError(kind)


def run_floor(shape: Shape, kind: str) -> pa.Table:
    with duck() as connection:
        return connection.sql(floor_sql(shape, kind)).to_arrow_table()


def join_pairs(shape: Shape) -> int:
    """About how many (spine row, event) pairs the range join floor makes: per user, spine rows x events
    x the longest window's share of the user's span (as ours estimates its own)."""
    longest = max(WINDOWS[w] for w in shape.windows)
    with duck() as connection:
        return int(connection.execute(f"""
WITH e AS (SELECT user_id, count(*) AS n, epoch_us(max(ts)) - epoch_us(min(ts)) AS span
           FROM read_parquet({sql_literal(shape.events_path)}) GROUP BY user_id),
     s AS (SELECT user_id, count(*) AS n FROM read_parquet({sql_literal(shape.spine_path)}) GROUP BY user_id)
SELECT coalesce(sum(s.n * e.n * least(1, {longest} / greatest(e.span, 1))), 0)
FROM e JOIN s USING (user_id)""").fetchone()[0])


def run_ours(store: Any, shape: Shape, plan: str = "auto") -> tuple[pa.Table, str]:
    """Ours through the public API; with another `plan` (a window method), the same frame function with it forced."""
    if plan == "auto":
        frame = store.training_frame(str(shape.spine_path), ["activity.*"], timestamp="ts")
    else:
        from featurestore.offline.frames import training_frame

        frame = training_frame(store.project, str(shape.spine_path), ["activity.*"], timestamp="ts", join=plan)
    return frame.to_arrow(), frame.sql


def chosen_plans(sql: str, windows: tuple[str, ...]) -> dict[str, str]:
    """Which plan our frame ran per window, read from its SQL (`frame.sql`): the CTE `__fs_v0j` (range join)
    or `__fs_v0f` (window frames) that first names the window's count column."""
    starts = sorted((m.start(), "join" if m.group(1) == "j" else "frames")
                    for m in re.finditer(r'"__fs_v0([jf])" AS \(', sql))
    plans = {}
    for window in windows:
        at = sql.find(f'AS "n_{window}"')
        before = [plan for start, plan in starts if start < at]
        plans[window] = before[-1] if at >= 0 and before else "?"
    return plans


# --------------------------------------------------------------------------- checking


def compare(ours: pa.Table, floor: pa.Table, label: str) -> list[str]:
    """Differences between two frames: counts and maxima exactly, sums and averages to RELATIVE; empty if none."""
    import pyarrow.compute as pc

    if sorted(ours.column_names) != sorted(floor.column_names):
        return [f"{label}: columns differ: ours {ours.column_names}, floor {floor.column_names}"]
    if ours.num_rows != floor.num_rows:
        return [f"{label}: {ours.num_rows} rows in ours, {floor.num_rows} in the floor"]
    problems = []
    for name in floor.column_names:
        a, b = ours.column(name).combine_chunks(), floor.column(name).combine_chunks()
        if a.type != b.type:
            problems.append(f"{label}: column {name} is {a.type} in ours, {b.type} in the floor")
            continue
        if a.equals(b):
            continue
        nulls_differ = pc.xor(pc.is_null(a), pc.is_null(b)).to_numpy(zero_copy_only=False)
        if name.split("_")[0] in AGGREGATES and name.split("_")[0] not in EXACT:
            x = pc.fill_null(a, 0.0).to_numpy(zero_copy_only=False)
            y = pc.fill_null(b, 0.0).to_numpy(zero_copy_only=False)
            bad = nulls_differ | (np.abs(x - y) > RELATIVE * np.maximum(np.abs(x), np.abs(y)))
        else:
            same = pc.fill_null(pc.equal(a, b), False)
            both_null = pc.and_(pc.is_null(a), pc.is_null(b))
            bad = ~pc.or_(same, both_null).to_numpy(zero_copy_only=False)
        differ = np.flatnonzero(bad)
        if len(differ):
            where = ", ".join(f"row {i}: ours {a[int(i)].as_py()!r} floor {b[int(i)].as_py()!r}" for i in differ[:5])
            problems.append(f"{label}: column {name} differs in {len(differ):,} rows ({where})")
    return problems


# --------------------------------------------------------------------------- offline: timing


@dataclass
class Offline:
    """One shape's offline timings: `times[contender]` per round; contenders ours, join, frames."""

    shape: Shape
    generated_seconds: float = 0.0
    pairs: int = 0
    skipped: dict[str, str] = field(default_factory=dict)   # contender -> why it did not run
    times: dict[str, list[float]] = field(default_factory=dict)
    forced: dict[str, float | None] = field(default_factory=dict)  # ours, plan forced (once; None: skipped)
    plans: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        return median(self.times.get(name, []))

    @property
    def floor(self) -> str:
        return fastest(self.times, FLOORS)

    def summary(self) -> dict[str, Any]:
        floor = self.median(self.floor) or float("nan")
        ours = self.median("ours") or float("nan")
        return {
            "shape": self.shape.name, "events": self.shape.events, "spine": self.shape.spine,
            "users": self.shape.users, "hot_share": self.shape.hot_share, "windows": list(self.shape.windows),
            "aggregates": AGGREGATES, "data_folder": str(self.shape.folder),
            "generated_seconds": self.generated_seconds, "estimated_join_pairs": self.pairs,
            "seconds": self.times, "median_seconds": medians(self.times),
            "skipped": self.skipped, "floor": self.floor, "ratio": ours / floor,
            "ratio_to": {k: ours / m for k in FLOORS if (m := self.median(k))},
            "ours_plans": self.plans, "forced_plan_seconds": self.forced,
            "target": verdict(ours / floor, OFFLINE_TARGET), "checks": self.checks,
        }


def warm(shape: Shape, store: Any) -> None:
    """Once-per-process costs outside every timer: the OS file cache, DuckDB's first scan, and the SDK's lazy
    imports and first planning (a frame of the spine's first 1,000 rows: the frame functions, sqlglot's
    dialects, pyarrow's Parquet reader)."""
    import pyarrow.parquet as pq

    page_in(shape.events_path, shape.spine_path)
    with duck() as connection:
        connection.execute(f"SELECT count(*), sum(amount), max(ts) FROM read_parquet({sql_literal(shape.events_path)})")
    store.training_frame(pq.read_table(shape.spine_path).slice(0, 1000), ["activity.*"], timestamp="ts")


def run_offline(shape: Shape, repeat: int, cap: int, forced: bool, log: Callable[[str], None]) -> Offline:
    from featurestore import FeatureStore

    result = Offline(shape, generated_seconds=ensure_data(shape, log))
    store = FeatureStore(shape.project, consumer="benchmark")
    _ = store.project  # loading the project is not the frame
    warm(shape, store)
    result.pairs = join_pairs(shape)
    contenders = ["ours", *FLOORS]
    if result.pairs > cap:
        result.skipped["join"] = f"~{result.pairs:,} pairs > --join-floor-cap {cap:,}"
        contenders.remove("join")
    result.times = {name: [] for name in contenders}
    for number, order in interleaved(contenders, repeat):
        tables: dict[str, pa.Table] = {}
        for name in order:
            if name == "ours":
                seconds, (tables[name], sql) = timed(lambda: run_ours(store, shape), collect=True)
                result.plans = chosen_plans(sql, shape.windows)
            else:
                seconds, tables[name] = timed(lambda name=name: run_floor(shape, name), collect=True)
            result.times[name].append(seconds)
        log(f"{shape.name} round {number + 1}/{repeat}: " + ", ".join(
            f"{name} {result.times[name][-1]:.2f}s" for name in contenders)
            + f" (ours: {', '.join(f'{w} {p}' for w, p in result.plans.items())})")
        if number == 0:
            check_offline(result, tables, store, forced, cap, log)
        del tables
    return result


def check_offline(result: Offline, tables: dict[str, pa.Table], store: Any, forced: bool, cap: int,
                  log: Callable[[str], None]) -> None:
    """Ours against every floor that ran (and the floors against each other); then, once, ours with each plan
    forced: timed for information, and checked too."""
    shape = result.shape
    problems = [p for kind in FLOORS if kind in tables
                for p in compare(tables["ours"], tables[kind], f"ours vs {kind}")]
    if "join" in tables and "frames" in tables:
        problems += compare(tables["frames"], tables["join"], "frames floor vs join floor")
    if problems:
        raise results_differ("\n  ".join(problems))
    floors = [k for k in FLOORS if k in tables]
    rows = tables["ours"].num_rows
    nonzero = {w: int(np.count_nonzero(tables["ours"].column(f"n_{w}").to_numpy())) for w in shape.windows}
    result.checks.append(f"ours and the {' and '.join(floors)} floor{'s' if len(floors) > 1 else ''} agree on all "
                         f"{rows:,} rows x {tables['ours'].num_columns} columns (counts and maxima exactly, sums and "
                         f"averages to {RELATIVE:g} relative); non-empty windows: "
                         + ", ".join(f"{w} {n / rows:.0%}" for w, n in nonzero.items()))
    if not forced:
        return
    for plan in FLOORS:
        if plan == "join" and result.pairs > cap:
            result.forced[plan] = None
            continue
        seconds, (frame, _) = timed(lambda plan=plan: run_ours(store, shape, plan), collect=True)
        result.forced[plan] = seconds
        problems = compare(frame, tables[result.floor], f"ours with plan={plan} vs the {result.floor} floor")
        if problems:
            raise results_differ("\n  ".join(problems))
        log(f"{shape.name}: ours with plan={plan} forced: {seconds:.2f}s (agrees)")
        del frame


# --------------------------------------------------------------------------- online


@dataclass(frozen=True)
class OnlineSetup:
    """The online project: the regular shape's events shifted to end now, materialized until `until`."""

    project: Path
    events: Path
    until: datetime
    materialize_seconds: float
    runs: list[dict[str, Any]]
    users: list[int]
    server_version: str


def _epoch_us(value: datetime) -> int:
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def prepare_online(shape: Shape, log: Callable[[str], None]) -> OnlineSetup:
    """Shift the events so the last one is now (lookups over HTTP are at the current time), and materialize.

    The copy is rewritten every run, so materialization rebuilds both views' tables every run.
    """
    from featurestore import FeatureStore

    project = shape.folder / "online" / "project"
    events = project / "data" / "events.parquet"
    write_project(project, shape.windows, "data/events.parquet")
    events.parent.mkdir(parents=True, exist_ok=True)
    until = datetime.now(UTC).replace(microsecond=0)
    shift = _epoch_us(until) - (START_US + SPAN_DAYS * DAY_US)
    with duck() as connection:
        connection.execute(f"COPY (SELECT user_id, ts + {_interval(shift)} AS ts, amount, merchant_id "
                           f"FROM read_parquet({sql_literal(shape.events_path)})) TO {sql_literal(events)} "
                           f"(FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})")
        users = [row[0] for row in connection.execute(
            f"SELECT DISTINCT user_id FROM read_parquet({sql_literal(events)}) ORDER BY user_id").fetchall()]
    store = FeatureStore(project, consumer="benchmark")
    try:
        seconds, runs = timed(lambda: store.materialize(until=until))
        server_version = _server_version(store)
    finally:
        store.close()
    log(f"materialized until {until.isoformat()} in {seconds:.1f}s: "
        + ", ".join(f"{r.view} {r.mode} ({r.written:,} rows)" for r in runs))
    done = [{"view": r.view, "mode": r.mode, "rows_written": r.written, "seconds": r.seconds} for r in runs]
    return OnlineSetup(project, events, until, seconds, done, users, server_version)


def _server_version(store: Any) -> str:
    import psycopg

    from featurestore.engines import postgres

    with psycopg.connect(postgres.resolve_url(store.settings.postgres_url, store.settings.state_dir)) as connection:
        return str(connection.execute("SHOW server_version").fetchone()[0])


def expected_values(setup: OnlineSetup, keys: list[int], at: datetime) -> dict[str, dict[int, tuple]]:
    """What lookups at `at` must return, computed by DuckDB straight from the Parquet file: per key, the window
    counts (events in [at - W, at)) and the latest transaction's amount, merchant and hour (known by `at`)."""
    at_us = _epoch_us(at)
    ts = "epoch_us(ts)"
    counts = ", ".join(f"count(*) FILTER (WHERE {ts} >= {at_us - WINDOWS[w]})" for w in WINDOWS)
    with duck() as connection:
        connection.execute("CREATE TEMP TABLE wanted AS SELECT unnest($1::BIGINT[]) AS user_id", [sorted(set(keys))])
        source = f"read_parquet({sql_literal(setup.events)})"
        window = connection.execute(
            f"SELECT user_id, {counts} FROM {source} WHERE user_id IN (SELECT user_id FROM wanted) "
            f"AND {ts} >= {at_us - max(WINDOWS.values())} AND {ts} < {at_us} GROUP BY user_id").fetchall()
        snapshot = connection.execute(
            f"SELECT user_id, amount, merchant_id, hour(ts) FROM {source} "
            f"WHERE user_id IN (SELECT user_id FROM wanted) AND {ts} <= {at_us} "
            "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1").fetchall()
    found = {"window": {row[0]: tuple(row[1:]) for row in window},
             "snapshot": {row[0]: tuple(row[1:]) for row in snapshot}}
    for key in keys:
        found["window"].setdefault(key, (0, 0, 0))
        found["snapshot"].setdefault(key, (None, None, None))
    return found


def latency_summary(name: str, window: list[float], snapshot: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": len(window), "window_us": percentiles(window, (50, 90, 99)),
                           "snapshot_us": percentiles(snapshot, (50, 90, 99))}
    out["ratio"] = {p: out["window_us"][p] / out["snapshot_us"][p] for p in ("p50", "p99")}
    out["target"] = verdict(out["ratio"]["p99"], ONLINE_TARGET)
    out["measure"] = name
    return out


def run_lookups(setup: OnlineSetup, keys: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    """In process: `store.online` for one key, the window view's 3 features against the snapshot view's 3,
    alternating call by call (which goes first alternates too), after WARMUP_LOOKUPS untimed calls of each.
    The warm-up answers and every 10th timed one are checked against DuckDB (outside the timers)."""
    from featurestore import FeatureStore

    at = setup.until
    expected = expected_values(setup, keys, at)
    checked = 0

    def check(kind: str, key: int, frame: Any) -> None:
        nonlocal checked
        got = frame.row(0)
        want = expected[kind][key]
        if got[0] != key or tuple(got[1:]) != want:
            raise results_differ(f"online {kind} lookup of user {key} at {at.isoformat()}: got {got}, DuckDB over the "
                                 f"Parquet file says {want}")
        checked += 1

    store = FeatureStore(setup.project, consumer="benchmark")
    try:
        warmup, timed = keys[:WARMUP_LOOKUPS], keys[WARMUP_LOOKUPS:]
        for key in warmup:  # imports, planning, the connection pool, prepared statements: outside the timers
            for kind in ONLINE_FEATURES:
                check(kind, key, store.online({"user_id": [key]}, ONLINE_FEATURES[kind], at=at))
        ns: dict[str, list[float]] = {kind: [] for kind in ONLINE_FEATURES}
        frames: dict[str, Any] = {}
        gc.collect()
        gc.freeze()  # the SDK's heap out of the collector's reach: a full collection would stall one call at random
        try:
            for number, key in enumerate(timed):
                for kind in rotated(list(ONLINE_FEATURES), number):
                    features = ONLINE_FEATURES[kind]
                    started = time.perf_counter_ns()
                    frames[kind] = store.online({"user_id": [key]}, features, at=at)
                    ns[kind].append((time.perf_counter_ns() - started) / 1000)
                if number % 10 == 0:
                    for kind in ONLINE_FEATURES:
                        check(kind, key, frames[kind])
        finally:
            gc.unfreeze()
    finally:
        store.close()
    result = latency_summary("in process", ns["window"], ns["snapshot"])
    result["checked_calls"] = checked
    result["events_in_7d_per_lookup"] = float(np.mean([expected["window"][k][2] for k in timed]))
    log(f"in process: window p50 {result['window_us']['p50']:.0f}us p99 {result['window_us']['p99']:.0f}us, "
        f"snapshot p50 {result['snapshot_us']['p50']:.0f}us p99 {result['snapshot_us']['p99']:.0f}us")
    return result


def run_http(setup: OnlineSetup, keys: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    """Over HTTP: `featurestore serve` (1 worker) on the online project; POST /v1/features for one key,
    the window features against the snapshot ones, alternating request by request on one keep-alive
    httpx connection (one request in flight). Lookups are at the server's current time."""
    import httpx
    import orjson

    from featurestore import FeatureStore

    def body(kind: str, key: int) -> bytes:
        return orjson.dumps({"entities": {"user_id": [key]}, "features": ONLINE_FEATURES[kind]})

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/features"
    log_path = setup.project.parent / "serve.log"
    command = [sys.executable, "-m", "featurestore.cli.main", "--project", str(setup.project), "serve", "--host",
               "127.0.0.1", "--port", str(port), "--workers", "1"]
    store = FeatureStore(setup.project, consumer="benchmark")
    service = launch("featurestore serve", command, dict(os.environ), url, 1, log_path)
    try:
        wait_ready(service, body("window", keys[0]))
        with httpx.Client(trust_env=False, timeout=30, http2=False) as client:
            compared = _check_http(client, url, store, keys[:CHECKED_HTTP], body)
            warmup, timed = keys[CHECKED_HTTP:CHECKED_HTTP + WARMUP_LOOKUPS], keys[CHECKED_HTTP + WARMUP_LOOKUPS:]
            for key in warmup:
                for kind in ONLINE_FEATURES:
                    _post(client, url, body(kind, key))
            payloads = [{kind: body(kind, key) for kind in ONLINE_FEATURES} for key in timed]
            ns: dict[str, list[float]] = {kind: [] for kind in ONLINE_FEATURES}
            gc.collect()
            gc.freeze()
            try:
                for number, payload in enumerate(payloads):
                    for kind in rotated(list(ONLINE_FEATURES), number):
                        started = time.perf_counter_ns()
                        _post(client, url, payload[kind])
                        ns[kind].append((time.perf_counter_ns() - started) / 1000)
            finally:
                gc.unfreeze()
    finally:
        release_handles(store, stop(service))
        store.close()
    result = latency_summary("HTTP", ns["window"], ns["snapshot"])
    result["checked_requests"] = compared
    result["log"] = str(log_path)
    log(f"HTTP: window p50 {result['window_us']['p50'] / 1000:.2f}ms p99 {result['window_us']['p99'] / 1000:.2f}ms, "
        f"snapshot p50 {result['snapshot_us']['p50'] / 1000:.2f}ms p99 {result['snapshot_us']['p99'] / 1000:.2f}ms")
    return result


def _post(client: Any, url: str, payload: bytes) -> dict[str, Any]:
    response = client.post(url, content=payload, headers=HEADERS)
    if response.status_code != 200:
        raise SystemExit(f"POST {url} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def _check_http(client: Any, url: str, store: Any, keys: list[int], body: Callable[[str, int], bytes]) -> int:
    """The service's answers equal `store.online` in process at the same moment (a retry absorbs an event
    leaving a window between the two calls). Returns the number of requests compared."""
    compared = 0
    for key in keys:
        for kind, features in ONLINE_FEATURES.items():
            for attempt in range(2):
                answer = _post(client, url, body(kind, key))
                local = store.online({"user_id": [key]}, features).row(0)[1:]
                served = tuple(answer["features"][name][0] for name in features)
                if served == tuple(local):
                    break
                if attempt:
                    raise results_differ(f"HTTP {kind} lookup of user {key}: served {served}, "
                                         f"in process {tuple(local)}")
            compared += 1
    return compared


# --------------------------------------------------------------------------- reporting


def print_report(report: dict[str, Any]) -> None:
    online = report.get("online")
    note = f", PostgreSQL {online['postgres_server_version']}" if online else ""
    console = header(report, "Window aggregate benchmark", 130, versions_note=note)
    for shape in report["offline"]:
        hot = f", {shape['hot_share']:.0%} on user 1" if shape["hot_share"] else ""
        rows = table(f"Offline ({shape['shape']}): {shape['events']:,} events x {shape['spine']:,} spine rows, "
                     f"{shape['users']:,} users{hot}; windows {', '.join(shape['windows'])} x "
                     f"{len(shape['aggregates'])} aggregates; medians of {report['repeat']} "
                     f"round{'s' if report['repeat'] > 1 else ''}",
                     ("contender", "time (s)", "min-max", "x floor", "target"), left=("contender", "target"))
        med, seconds, floor = shape["median_seconds"], shape["seconds"], shape["median_seconds"][shape["floor"]]

        plans = ", ".join(f"{w} {p}" for w, p in shape["ours_plans"].items())
        rows.add_row(f"ours: store.training_frame (plans: {plans})", f"{med['ours']:.2f}", spread(seconds["ours"]),
                     f"{shape['ratio']:.2f}", mark(shape["target"], f"<={OFFLINE_TARGET}x"))
        for kind in FLOORS:
            label = FLOOR_LABELS[kind] + (" (the floor)" if kind == shape["floor"] else "")
            if kind in shape["skipped"]:
                rows.add_row(label, "skipped", "", "", shape["skipped"][kind])
            else:
                rows.add_row(label, f"{med[kind]:.2f}", spread(seconds[kind]), f"{med[kind] / floor:.2f}", "")
        for plan, value in shape["forced_plan_seconds"].items():
            label = f"(info) ours, plan={plan} forced, 1 run"
            if value is None:
                rows.add_row(label, "skipped", "", "", "as the join floor")
            else:
                rows.add_row(label, f"{value:.2f}", "-", f"{value / floor:.2f}", "")
        console.print(rows)
        longest = max(shape["windows"], key=WINDOWS.get)
        skipped = " (above --join-floor-cap: the range join was not run)" if shape["skipped"] else ""
        console.print(f"  estimated range-join pairs (spine row, event) within {longest}: "
                      f"{shape['estimated_join_pairs']:,}{skipped}; data in {shape['data_folder']}")
        for check in shape["checks"]:
            console.print(f"  check: {check}")
    if online:
        rows = table(f"Online: 1 user x 3 features per lookup (window view: "
                     f"{', '.join(ONLINE_FEATURES['window'])}; snapshot view: "
                     f"{', '.join(ONLINE_FEATURES['snapshot'])})",
                     ("measure", "window view", "snapshot view", "ratio", "target"), left=("measure", "target"))
        for part in ("in_process", "http"):
            result = online.get(part)
            if not result:
                continue
            unit, scale = ("µs", 1.0) if part == "in_process" else ("ms", 1000.0)
            label = f"store.online(at=T), {result['calls']:,} calls" if part == "in_process" else \
                f"POST /v1/features, 1 in flight, {result['calls']:,} requests"
            for p in ("p50", "p99"):
                fmt = "{:,.0f}" if unit == "µs" else "{:.2f}"
                rows.add_row(f"{label}: {p} ({unit})", fmt.format(result["window_us"][p] / scale),
                             fmt.format(result["snapshot_us"][p] / scale), f"{result['ratio'][p]:.2f}x",
                             mark(result["target"], f"<={ONLINE_TARGET}x") if p == "p99" else "")
        console.print(rows)
        runs = ", ".join(f"{r['view']} {r['mode']} {r['rows_written']:,} rows {r['seconds']:.1f}s"
                         for r in online["materialize_runs"])
        console.print(f"  materialize(until=T={online['until']}): {online['materialize_seconds']:.1f}s ({runs}); the "
                      f"window view's table holds the events of the last {max(WINDOWS, key=WINDOWS.get)}.")
        if "in_process" in online:
            r = online["in_process"]
            console.print(f"  in process: {r['events_in_7d_per_lookup']:.1f} events in a looked-up user's 7d window on "
                          f"average; {r['checked_calls']:,} answers checked against DuckDB over the Parquet file.")
        if "http" in online:
            console.print(f"  HTTP: `featurestore serve --workers 1`, httpx keep-alive client, lookups at the server's "
                          f"current time; {online['http']['checked_requests']} answers equal store.online() in "
                          f"process; log {online['http']['log']}.")


# --------------------------------------------------------------------------- main



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes ({QUICK['events']:,} events x {QUICK['spine']:,} spine rows, "
                             f"{QUICK['repeat']} rounds, fewer lookups): well under a minute")
    parser.add_argument("--events", type=positive_int, help="events (default 10_000_000)")
    parser.add_argument("--spine", type=positive_int, help="spine rows (default 1_000_000)")
    parser.add_argument("--users", type=positive_int, help=f"users (default events / {EVENTS_PER_USER})")
    parser.add_argument("--hot-events", type=positive_int, help="events of the hot-key shape (default events / 5)")
    parser.add_argument("--hot-spine", type=positive_int, help="spine rows of the hot-key shape (default spine / 5)")
    parser.add_argument("--hot-share", type=float, default=0.4,
                        help="share of the hot-key shape's events and spine rows on one user (default 0.4)")
    parser.add_argument("--join-floor-cap", type=float, default=5e8,
                        help="skip the range-join floor (and ours with plan=join forced) above this many "
                             "estimated (spine row, event) pairs (default 5e8)")
    parser.add_argument("--repeat", type=positive_int,
                        help="interleaved offline rounds; medians are reported (default 3)")
    parser.add_argument("--lookups", type=positive_int, help="timed in-process lookups of each view (default 3000)")
    parser.add_argument("--http-requests", type=positive_int, help="timed HTTP requests for each view (default 2000)")
    parser.add_argument("--no-forced-plans", action="store_true",
                        help="skip timing ours with each plan forced (once, for information)")
    parser.add_argument("--no-hot", action="store_true", help="skip the hot-key shape")
    parser.add_argument("--no-online", action="store_true", help="skip the online part (in process and HTTP)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part of the online part")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "fsbench", "windows"),
                        help="where data and the benchmark projects go (reused when unchanged; "
                             "default $TMPDIR/fsbench/windows)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"events": 10_000_000, "spine": 1_000_000, "repeat": 3, "lookups": 3000,
                                         "http_requests": 2000}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.users = args.users or max(args.events // EVENTS_PER_USER, 1)
    args.hot_events = args.hot_events or max(args.events // 5, 1)
    args.hot_spine = args.hot_spine or max(args.spine // 5, 1)
    if not 0 <= args.hot_share < 1:
        parser.error("--hot-share must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = progress()
    if os.environ.get("FEATURESTORE_POSTGRES_URL") and not args.no_online:
        log("FEATURESTORE_POSTGRES_URL is set: the views are materialized into schema featurestore_online there")
    found_versions = versions("polars", "psycopg", "httpx", "uvicorn", "fastapi")
    workdir = Path(args.workdir).resolve()
    regular = make_shape(workdir, "regular", args.events, args.spine, args.users, 0.0, tuple(WINDOWS))
    shapes = [regular]
    if not args.no_hot:
        shapes.append(make_shape(workdir, "hot", args.hot_events, args.hot_spine,
                                 max(args.hot_events // EVENTS_PER_USER, 2), args.hot_share, HOT_WINDOWS))
    offline = []
    for shape in shapes:
        log(f"offline, {shape.name}: {shape.describe()}")
        offline.append(run_offline(shape, args.repeat, int(args.join_floor_cap), not args.no_forced_plans, log))
    report: dict[str, Any] = {
        "command": command(),
        "machine": machine(), "versions": found_versions, "repeat": args.repeat,
        "targets": {"offline": f"ours <= {OFFLINE_TARGET}x the faster hand-written DuckDB query",
                    "online": f"window view p99 <= {ONLINE_TARGET}x the snapshot view's p99 (in process and HTTP)"},
        "offline": [o.summary() for o in offline],
    }
    if not args.no_online:
        log("online: shifting the events to end now, and materializing")
        setup = prepare_online(regular, log)
        rng = random.Random(SEED)
        online: dict[str, Any] = {
            "until": setup.until.isoformat(), "materialize_seconds": setup.materialize_seconds,
            "materialize_runs": setup.runs, "postgres_server_version": setup.server_version,
            "users_online": len(setup.users),
            "in_process": run_lookups(setup, [rng.choice(setup.users) for _ in range(WARMUP_LOOKUPS + args.lookups)],
                                      log)}
        if not args.no_http:
            keys = [rng.choice(setup.users) for _ in range(CHECKED_HTTP + WARMUP_LOOKUPS + args.http_requests)]
            online["http"] = run_http(setup, keys, log)
        report["online"] = online
    if warning := changed_during_run(found_versions):
        report["warning"] = warning
    emit(report, args.format, print_report)


if __name__ == "__main__":
    main()
