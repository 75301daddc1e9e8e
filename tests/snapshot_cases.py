"""Random snapshot-view cases for the point-in-time suites: views with drawn time rules, rows and
spines with ties, NULLs, naive and nanosecond times, and boundaries exactly at lag and TTL edges.

    @given(cases())
    def test_something(case): rules, rows, spine = case

Shared by tests/test_point_in_time.py, tests/test_online.py and tests/test_spark.py.
"""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlglot
from hypothesis import assume
from hypothesis import strategies as st

from featurestore.compiler.point_in_time import (
    ROW,
    Spine,
    ViewRows,
    duplicate_fix,
    duplicate_message,
    duplicates,
    point_in_time,
    prepare_rows,
    ties,
    validity_intervals,
)
from featurestore.definitions.loader import parse_definition
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, build_view
from featurestore.errors import FeatureStoreError

from reference import Rules, known
from timelines import anywhere, instants, shapes, unmatched

BASE = datetime(2026, 1, 1, tzinfo=UTC)


STEP = timedelta(minutes=30)


EXAMPLES = int(os.environ.get("FEATURESTORE_EXAMPLES", "1000"))


# A heavy case holds up to ~10k rows and a few hundred spine rows, run under all four plans: about
# a hundred times the cost of a small one, so a twentieth of the examples (50 by default, 15-30 s on
# two cores), at least 10.
HEAVY_EXAMPLES = max(10, EXAMPLES // 20)


# "… in buckets": the hash joins that also match a time bucket (what the join chooser picks for few heavy keys).
PLANS = ("asof", "intervals", "ranked", "last", "ranked in buckets", "intervals in buckets")


US = timedelta(microseconds=1)


UTC_US = pa.timestamp("us", tz="UTC")


def grid(max_index: int) -> st.SearchStrategy[datetime]:
    return st.builds(lambda i, nudge: BASE + i * STEP + timedelta(microseconds=nudge),
                     st.integers(0, max_index), st.sampled_from([0, 0, 0, 0, 1, -1]))


durations = st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(minutes=45), timedelta(hours=1)])


# How late a row arrives after it is due (ts + lag): early (then it is known when due), on time,
# a microsecond late, late by grid steps (past later rows), or no arrival recorded (NULL: on time).
ARRIVALS = st.one_of(st.none(), st.sampled_from([-STEP, -US, timedelta(0), timedelta(0), US, STEP, 3 * STEP,
                                                 5 * STEP + US]))


@st.composite
def cases(draw: st.DrawFn) -> dict:
    composite = draw(st.booleans())
    created = draw(st.booleans())
    arrivals = draw(st.booleans())  # the view declares `known_at: arrived`
    lag = draw(durations)
    rows = draw(st.lists(st.fixed_dictionaries({
        "k": st.integers(1, 3), "c": st.sampled_from(["x", "y"]), "ts": grid(10),
        "v": st.one_of(st.none(), st.integers(-5, 5)), "s": st.one_of(st.none(), st.text("ab", max_size=2)),
        "late": ARRIVALS if arrivals else st.none(),
    }), max_size=16))
    entity = ("k", "c") if composite else ("k",)
    if rows and draw(st.booleans()):  # exact copies of (keys, ts) with other values: ties
        rows += [{**rows[i], "v": draw(st.integers(-5, 5))} for i in draw(st.lists(st.integers(0, len(rows) - 1),
                                                                                    max_size=3))]
    for number, row in enumerate(rows):
        row["created"] = number  # unique, so the tie-break is total
        late = row.pop("late")
        row["arrived"] = None if late is None else row["ts"] + lag + late
    if arrivals and len(rows) > 1 and draw(st.booleans()):  # a batch: several rows arriving at one instant
        batch = draw(st.sampled_from([r["arrived"] for r in rows if r["arrived"] is not None] or [BASE]))
        for i in draw(st.lists(st.integers(0, len(rows) - 1), max_size=4)):
            rows[i]["arrived"] = batch
    if not created and draw(st.booleans()):  # without a tie-break, (keys, ts) should be unique: keep the first
        seen, unique = set(), []
        for row in rows:
            identity = (*(row[k] for k in entity), row["ts"])
            if identity not in seen:
                seen.add(identity)
                unique.append(row)
        rows = unique
    invalid = ()
    if draw(st.booleans()):
        a, b = sorted([draw(grid(10)), draw(grid(10))])
        invalid = ((a, b),)
    rules = Rules(entity=entity, timestamp="ts", lag=lag, known_at="arrived" if arrivals else None,
                  ttl=draw(st.sampled_from([None, timedelta(minutes=30), timedelta(hours=1), timedelta(hours=2)])),
                  since=draw(st.one_of(st.none(), grid(12))), invalid=invalid,
                  created="created" if created else None, features=("v", "s"))
    # Spine times exactly on (and a microsecond either side of) the edges that rows define:
    # known-at (ts + lag), TTL expiry (ts + ttl), the start of available_since and invalid periods.
    # With arrival times, also on each arrival.
    edges = [at + timedelta(microseconds=d) for r in rows for d in (-1, 0, 1)
             for at in (r["ts"] + rules.lag, *([r["arrived"]] if r["arrived"] is not None else []))]
    if rules.ttl is not None:
        edges += [r["ts"] + rules.ttl + timedelta(microseconds=d) for r in rows for d in (-1, 0, 1)]
    if rules.since is not None:
        edges += [rules.since + timedelta(microseconds=d) for d in (-1, 0, 1)]
    times = st.one_of(st.none(), grid(14), st.sampled_from(edges)) if edges else st.one_of(st.none(), grid(14))
    spine = draw(st.lists(st.fixed_dictionaries({
        "k": st.one_of(st.none(), st.integers(1, 4)), "c": st.sampled_from(["x", "y"]),
        "t": times, "label": st.integers(0, 1)}), max_size=12))
    flavour = draw(st.sampled_from(["utc", "naive", "nanos"]))
    nanos = [draw(st.integers(0, 999)) for _ in spine]
    return {"rows": rows, "rules": rules, "spine": spine, "flavour": flavour, "nanos": nanos}


def definition(rules: Rules) -> str:
    header = [f"-- entity: {', '.join(rules.entity)}", "-- timestamp: ts", "-- owner: test@example.com"]
    header.append(f"-- available_after: {int(rules.lag.total_seconds())}s")
    if rules.ttl is not None:
        header.append(f"-- ttl: {int(rules.ttl.total_seconds())}s")
    if rules.since is not None:
        header.append(f"-- available_since: {rules.since.isoformat()}")
    if rules.invalid:
        header.append("-- invalid: " + ", ".join(f"{a.isoformat()}..{b.isoformat()}" for a, b in rules.invalid))
    if rules.created:
        header.append(f"-- created: {rules.created}")
    if rules.known_at:
        header.append(f"-- known_at: {rules.known_at}")
    arrival = f", {rules.known_at}" if rules.known_at else ""
    return "\n".join(header) + f"\nSELECT {', '.join(rules.entity)}, ts, created{arrival}, v, s FROM events\n"


def rows_table(rows: list[dict]) -> pa.Table:
    """The rows as the source `events`: keys, time, tie-break, arrival (NULL where none) and values."""
    return pa.table({
        "k": pa.array([r["k"] for r in rows], pa.int64()), "c": pa.array([r["c"] for r in rows], pa.string()),
        "ts": pa.array([r["ts"] for r in rows], UTC_US), "created": pa.array([r["created"] for r in rows], pa.int64()),
        "arrived": pa.array([r.get("arrived") for r in rows], UTC_US),
        "v": pa.array([r["v"] for r in rows], pa.int64()), "s": pa.array([r["s"] for r in rows], pa.string())})


def run(rows: list[dict], rules: Rules, spine: list[dict], flavour: str, nanos: list[int],
        plan: str = "asof") -> list[dict]:
    loaded, problems = parse_definition(Path("view.sql"), definition(rules))
    view, problems = build_view(loaded)
    assert view is not None, problems
    types = {"k": "BIGINT", "c": "VARCHAR", "ts": "TIMESTAMP WITH TIME ZONE", "created": "BIGINT", "v": "BIGINT",
             "s": "VARCHAR", "arrived": "TIMESTAMP WITH TIME ZONE"}
    names = (*rules.entity, "ts", "created", *([rules.known_at] if rules.known_at else []), "v", "s")
    view = view.model_copy(update={"columns": tuple(Column(name=n, type=types[n]) for n in names)})
    events = rows_table(rows)
    times = [row["t"] for row in spine]
    if flavour == "utc":
        t_column, t_type = pa.array(times, UTC_US), "TIMESTAMP WITH TIME ZONE"
    elif flavour == "naive":
        t_column = pa.array([t.replace(tzinfo=None) if t else None for t in times], pa.timestamp("us"))
        t_type = "TIMESTAMP"
    else:
        ns = [None if t is None else int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9
              + t.microsecond * 1000 + extra for t, extra in zip(times, nanos)]
        t_column, t_type = pa.array(ns, pa.timestamp("ns", tz="UTC")), "TIMESTAMPTZ_NS"
    spine_table = pa.table({"k": pa.array([r["k"] for r in spine], pa.int64()),
                            "c": pa.array([r["c"] for r in spine], pa.string()), "t": t_column,
                            "label": pa.array([r["label"] for r in spine], pa.int64()),
                            ROW: pa.array(range(len(spine)), pa.int64())})
    selected = select_features({view.name: view}, ["view.*"], full_names=False, taken=["k", "c", "t", "label"])
    spine_columns = (Column(name="k", type="BIGINT"), Column(name="c", type="VARCHAR"), Column(name="t", type=t_type),
                     Column(name="label", type="BIGINT"), Column(name=ROW, type="BIGINT"))
    rows = sqlglot.parse_one("SELECT * FROM events", read="duckdb")
    bucket = None
    if plan == "ranked in buckets" and view.ttl is not None:  # at least the TTL: exactly it, so edges align
        plan, bucket = "ranked", max(view.ttl, timedelta(microseconds=1))
    elif plan == "intervals in buckets":  # off the grid, shorter than most intervals: many buckets each
        plan, bucket = "intervals", timedelta(minutes=7, microseconds=1)
    plan = plan.replace(" in buckets", "")
    if plan == "asof" or (plan == "ranked" and view.ttl is None):
        join = ViewRows(view, rows, tuple(selected))
    elif plan in ("ranked", "last"):
        columns = list(dict.fromkeys(s.feature.column for s in selected))
        join = ViewRows(view, prepare_rows(view, rows, columns), tuple(selected), prepared=True, join=plan,
                        bucket=bucket)
    else:  # what the cache holds: prepared rows with validity intervals, joined by hash
        columns = list(dict.fromkeys(s.feature.column for s in selected))
        join = ViewRows(view, validity_intervals(view, prepare_rows(view, rows, columns)), tuple(selected),
                        prepared=True, join="intervals", bucket=bucket)
    query = point_in_time(Spine("spine", spine_columns, "t"), [join])
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("events", events)
        connection.register("spine", spine_table)
        # The cache fill refuses every tie; a frame, only a tie whose value it would return.
        checks = [duplicates(view, prepare_rows(view, rows, []))] if plan == "intervals" and not view.created else []
        result = connection.sql(query.sql(dialect="duckdb")).to_arrow_table()
        connection.register("result", result)
        checks.append(ties(join, 0, "result", repeated=result.num_rows != len(spine)))
        for check in filter(None, checks):
            duplicate = connection.execute(check.sql(dialect="duckdb")).fetchone()
            if duplicate:
                raise FeatureStoreError(f"{duplicate_message(view, duplicate)}; {duplicate_fix(view)}")
    return [{k: v for k, v in row.items() if not k.startswith("__fs_taken")} for row in result.to_pylist()]


def has_ties(rows: list[dict], rules: Rules) -> bool:
    """Whether two rows that count (a time, outside invalid periods) share keys and time, and (with
    arrival times) could both be the latest: neither arrived after a later row of its keys had."""
    counted = [r for r in rows if r["ts"] is not None and not any(a <= r["ts"] <= b for a, b in rules.invalid)]
    if rules.known_at:
        by_key: dict[tuple, list[dict]] = {}
        for r in counted:
            by_key.setdefault(tuple(r[k] for k in rules.entity), []).append(r)
        counted = [r for group in by_key.values() for r in _latest_on_arrival(group, rules)]
    seen = [(*(r[k] for k in rules.entity), r["ts"]) for r in counted]
    return len(seen) != len(set(seen))


def _latest_on_arrival(rows: list[dict], rules: Rules) -> list[dict]:
    """The rows (of one key) that no row known no later has a later time than."""
    kept, latest = [], None
    ordered = sorted(rows, key=lambda r: known(r, rules))
    for _, group in itertools.groupby(ordered, key=lambda r: known(r, rules)):
        group = list(group)
        latest = max([r["ts"] for r in group] + ([latest] if latest is not None else []))
        kept += [r for r in group if r["ts"] == latest]
    return kept


@st.composite
def heavy_cases(draw: st.DrawFn) -> dict:
    """One to five keys, hundreds to thousands of rows each (readings or bursts, `timelines`), ties
    (broken by `created`, or left for the frame to refuse), NULLs, and a few hundred spine rows, most
    of them exactly on an edge that a row defines (or a microsecond either side)."""
    composite = draw(st.booleans())
    created = draw(st.booleans())
    arrivals = draw(st.booleans())  # the view declares `known_at: arrived`
    per_key = draw(shapes())
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    entity = ("k", "c") if composite else ("k",)
    # Composite keys share their parts ((1, 'x') and (1, 'y')), so a join on one part alone mixes them up.
    keys = rng.sample([(k, c) for k in (1, 2, 3) for c in ("x", "y")], len(per_key)) if composite else \
        [(k, None) for k in rng.sample(range(1, 8), len(per_key))]
    nulls = draw(st.sampled_from([0.0, 0.05, 0.5]))  # the share of NULL values
    rows = []
    for (k, c), shape in zip(keys, per_key):
        for ts in instants(shape, BASE + rng.randrange(86_400) * timedelta(seconds=1), rng):
            rows.append({"k": k, "c": c or rng.choice("xy"), "ts": ts,
                         "v": None if rng.random() < nulls else rng.randint(-10**6, 10**6),
                         "s": None if rng.random() < nulls else rng.choice(["a", "b", "ab", ""])})
    timed = list(rows)
    assume(timed)  # a timeline whose outages took every reading: nothing to check (rare)
    for _ in range(rng.randint(0, 5)):  # rows without a time or a key
        rows.append({**rng.choice(timed), "ts": None, "v": rng.randint(0, 9)})
        rows.append({**rng.choice(timed), "k": None, "v": rng.randint(0, 9)})
    ties = draw(st.sampled_from([0.0, 0.01, 0.05]))  # exact copies of (keys, ts) with other values
    copies = [{**row, "v": rng.randint(-9, 9), "s": rng.choice(["a", "b"])} for row in timed if rng.random() < ties]
    order = list(range(len(rows) + len(copies)))
    rng.shuffle(order)
    for row, number in zip(rows, order):
        row["created"] = number  # unique, so the tie-break is total
    for row, number in zip(copies, order[len(rows):]):
        row["created"] = None if rng.random() < 0.2 else number  # NULL loses to any value (an original has one)
    rows += copies
    if not created:
        # Without a tie-break, (keys, ts) should be unique: mostly keep the first of each, else a few ties.
        seen: set[tuple] = set()
        unique, repeated = [], []
        for row in rows:
            identity = (*(row[k] for k in entity), row["ts"])
            (repeated if identity in seen else unique).append(row)
            seen.add(identity)
        rows = unique + (rng.sample(repeated, min(len(repeated), rng.randint(1, 3))) if draw(st.booleans()) else [])
    if draw(st.booleans()):
        rng.shuffle(rows)
    def near(at: datetime) -> datetime:
        return at + rng.choice([-1, 0, 0, 1]) * US
    def some_time() -> datetime:
        return rng.choice(timed)["ts"]
    invalid = []
    for _ in range(draw(st.integers(0, 3))):
        start = near(some_time())
        invalid.append((start, start + draw(st.sampled_from([timedelta(0), US, timedelta(seconds=1), timedelta(hours=1),
                                                             timedelta(days=1), timedelta(days=7)]))))
    since = draw(st.sampled_from([None, "row", "free"]))
    first, last = min(r["ts"] for r in timed), max(r["ts"] for r in timed)
    rules = Rules(entity=entity, timestamp="ts",
                  lag=draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(seconds=1), timedelta(minutes=15),
                                            timedelta(hours=1), timedelta(days=1)])),
                  # From shorter than any gap between readings (or than the lag: never a value) to longer
                  # than many of them.
                  ttl=draw(st.sampled_from([None, None, timedelta(seconds=1), timedelta(seconds=59),
                                            timedelta(minutes=10), timedelta(hours=1), timedelta(seconds=3601),
                                            timedelta(hours=6), timedelta(days=1, seconds=1), timedelta(days=3)])),
                  since=None if since is None else near(some_time()) if since == "row" else
                  first + (last - first) * rng.random(),
                  invalid=tuple(invalid), created="created" if created else None, features=("v", "s"),
                  known_at="arrived" if arrivals else None)
    for row in rows:
        row["arrived"] = arrival(row["ts"], rules.lag, rng) if arrivals and row["ts"] is not None else None
    counts: dict[tuple, int] = {}
    for row in rows:
        identity = (*(row[k] for k in entity), row["ts"])
        counts[identity] = counts.get(identity, 0) + 1
    tied = [row for row in rows if row["ts"] is not None and counts[(*(row[k] for k in entity), row["ts"])] > 1]
    spine = []
    for _ in range(draw(st.integers(100, 400))):
        origin = rng.choices(["known", "tie", "ttl", "ts", "since", "invalid", "free", "no time", "no key",
                              "other key", "arrival"], [25, 5, 15, 5, 5, 5, 20, 5, 5, 5, 15 if arrivals else 0])[0]
        row = rng.choice(tied if origin == "tie" and tied else timed)
        k, c = row["k"], row["c"]
        if origin == "arrival":
            t = near(row.get("arrived") or row["ts"] + rules.lag)
        elif origin in ("known", "tie") or (origin == "ttl" and rules.ttl is None):
            t = near(row["ts"] + rules.lag)
        elif origin == "ttl":
            t = near(row["ts"] + rules.ttl)
        elif origin == "ts":
            t = near(row["ts"])
        elif origin == "since" and rules.since is not None:
            t = near(rules.since)
        elif origin == "invalid" and invalid:
            t = near(rng.choice(rng.choice(invalid)) + rules.lag)
        else:
            t = anywhere(first, last, rng)
        t, k, c = unmatched(origin, t, k, c, composite, rng)
        spine.append({"k": k, "c": c, "t": t, "label": rng.randint(0, 1)})
    flavour = draw(st.sampled_from(["utc", "naive", "nanos"]))
    nanos = [rng.choice([0, 0, 1, 500, 999]) for _ in spine]
    return {"rows": rows, "rules": rules, "spine": spine, "flavour": flavour, "nanos": nanos}


def arrival(ts: datetime, lag: timedelta, rng: random.Random) -> datetime | None:
    """When a heavy case's row arrived: not recorded, on time, early, late (past many later rows),
    or in an hourly batch (many rows arriving at one instant)."""
    due = ts + lag
    kind = rng.choices(["none", "due", "early", "late", "batch"], [25, 20, 10, 30, 15])[0]
    if kind == "none":
        return None
    if kind == "due":
        return due
    if kind == "early":
        return due - rng.choice([US, timedelta(seconds=rng.randrange(1, 86_400))])
    if kind == "late":
        return due + rng.choice([US, timedelta(seconds=1), timedelta(seconds=rng.randrange(1, 3 * 86_400))])
    hour = timedelta(hours=1)
    return BASE + ((due - BASE) // hour + 1) * hour + rng.randrange(3) * hour
