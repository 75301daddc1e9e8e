"""Window views online, on a real PostgreSQL: the events kept, and the skew guarantee.

After `materialize(until=T)`, `online(entities, at=T)` equals a training frame of the same
entities at T (docs/semantics.md), for instants drawn from the edges windows have: an event's
known-at time, and that time plus each window, each to the microsecond either side. Half of the
views declare arrival times (`-- known_at: arrived`): then also an event's arrival, and that plus
each window; events that arrive after a run's instant are in its files already.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore

from reference import Measure, Rules, window_aggregate
from support import T0, ProjectDir, reset

EXAMPLES = max(10, int(os.environ.get("FEATURESTORE_EXAMPLES", "1000")) // 25)
UTC_US = pa.timestamp("us", tz="UTC")
STEP = timedelta(minutes=30)
WINDOWS = {"30m": timedelta(minutes=30), "1h": timedelta(hours=1), "2h": timedelta(hours=2)}
AGGREGATES = ("count(*) AS n, count(v) AS nv, count(DISTINCT v) AS dv, sum(v) AS total, avg(v) AS mean, "
              "min(s) AS lo, max(v) AS hi, arg_max(s, o) AS latest_s, last(v) AS last_v, "
              "count(*) FILTER (WHERE v > 0) AS positive")
# The reference's reading of AGGREGATES, by output name.
MEASURES = {"n": Measure("count", lambda e: 1), "nv": Measure("count", lambda e: e["v"]),
            "dv": Measure("count_distinct", lambda e: e["v"]), "total": Measure("sum", lambda e: e["v"]),
            "mean": Measure("avg", lambda e: e["v"]), "lo": Measure("min", lambda e: e["s"]),
            "hi": Measure("max", lambda e: e["v"]),
            "latest_s": Measure("latest", lambda e: e["s"], order=lambda e: e["o"]),
            "last_v": Measure("latest", lambda e: e["v"]),
            "positive": Measure("count", lambda e: 1, where=lambda e: e["v"] is not None and e["v"] > 0)}


@pytest.fixture(autouse=True)
def online_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    yield postgres_url


def instant(index: int, nudge: int = 0) -> datetime:
    return T0 + index * STEP + timedelta(microseconds=nudge)


def definition(windows: list[str], lag: timedelta, since: datetime | None, known_at: bool = False) -> str:
    header = ["-- entity: k", "-- timestamp: ts", "-- owner: test@example.com", f"-- windows: {', '.join(windows)}",
              f"-- available_after: {int(lag.total_seconds())}s"]
    if since is not None:
        header.append(f"-- available_since: {since.isoformat()}")
    if known_at:
        header.append("-- known_at: arrived")
    return "\n".join(header) + f"\nSELECT k, {AGGREGATES}\nFROM events\nGROUP BY k\n"


def write_events(root: Path, rows: list[dict], name: str) -> None:
    pq.write_table(pa.table({
        "k": pa.array([r["k"] for r in rows], pa.int64()), "ts": pa.array([r["ts"] for r in rows], UTC_US),
        "v": pa.array([r["v"] for r in rows], pa.int64()), "s": pa.array([r["s"] for r in rows], pa.string()),
        "o": pa.array([r["o"] for r in rows], pa.int64()),
        "arrived": pa.array([r.get("arrived") for r in rows], UTC_US)}), root / "data" / name)


@st.composite
def arrivals(draw: st.DrawFn, ts: datetime, lag: timedelta) -> datetime | None:
    """An event's arrival: NULL (on time), an instant of the grid (others arrive then too), or grid
    steps before, at or after its time plus the lag, or a microsecond either side of those."""
    origin = draw(st.sampled_from(["null", "grid", "due", "due"]))
    if origin == "null":
        return None
    if origin == "grid":
        return instant(draw(st.integers(0, 10)))
    return ts + lag + draw(st.integers(-1, 4)) * STEP + timedelta(microseconds=draw(st.sampled_from([0, 0, 1, -1])))


@st.composite
def cases(draw: st.DrawFn) -> dict:
    hot = draw(st.booleans())  # one key holding most events
    events = draw(st.lists(st.fixed_dictionaries({
        "k": st.sampled_from([1, 1, 1, 2]) if hot else st.integers(1, 3),
        "ts": st.builds(instant, st.integers(0, 8), st.sampled_from([0, 0, 0, 1, -1])),
        "v": st.one_of(st.none(), st.integers(-3, 3)), "s": st.one_of(st.none(), st.sampled_from(["a", "b", "B", "é"])),
        "o": st.one_of(st.none(), st.integers(0, 2))}), max_size=14))
    lag = draw(st.sampled_from([timedelta(0), timedelta(minutes=30)]))
    known_at = draw(st.booleans())
    for e in events:  # the column is there either way; it counts where the view declares it
        e["arrived"] = draw(arrivals(e["ts"], lag))
    if events and draw(st.booleans()):  # exact copies: two events, both counted
        events += [dict(events[i]) for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=2))]
    windows = draw(st.lists(st.sampled_from(list(WINDOWS)), min_size=1, max_size=3, unique=True))
    since = draw(st.one_of(st.none(), st.builds(instant, st.integers(0, 10))))
    chosen = sorted(set(draw(st.lists(edges(events, lag, windows, known_at), min_size=1, max_size=3))))
    # Events land in files, one before each run, whatever their time: some come long after they were due,
    # and with arrival times some before they arrive (read by a later run).
    lands = draw(st.lists(st.integers(0, len(chosen) - 1), min_size=len(events), max_size=len(events)))
    return {"events": events, "windows": windows, "lag": lag, "since": since, "instants": chosen, "lands": lands,
            "known_at": known_at}


@st.composite
def edges(draw: st.DrawFn, events: list[dict], lag: timedelta, windows: list[str], known_at: bool) -> datetime:
    """An instant on an edge of one event: when it is due (time plus lag), or with arrival times when it
    arrives, or either plus a window, each to the microsecond either side."""
    if not events:
        return instant(4)
    e = draw(st.sampled_from(events))
    start = e["ts"] + lag
    if known_at and e["arrived"] is not None and draw(st.booleans()):
        start = e["arrived"]
    shift = draw(st.sampled_from([timedelta(0), *(WINDOWS[n] for n in windows)]))
    return start + shift + timedelta(microseconds=draw(st.sampled_from([-1, 0, 1])))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
@given(cases())
def test_online_window_values_equal_the_training_frame_at_each_materialized_instant(online_database: str,
                                                                                    case: dict) -> None:
    reset(online_database)
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.sources["events"] = '"data/events-*.parquet"'
        project.write_config()
        project.view("view", definition(case["windows"], case["lag"], case["since"], case["known_at"]))
        keys = [1, 2, 3, None, 4]  # 4: no events; None: no key
        with FeatureStore(project.root) as store:
            for number, at in enumerate(case["instants"]):  # the first run backfills, the later ones are incremental
                write_events(project.root, [e for e, n in zip(case["events"], case["lands"]) if n == number],
                             f"events-{number}.parquet")
                [run] = store.materialize(until=at)
                online = store.online({"k": keys}, ["view.*"], at=at)
                frame = store.training_frame(pl.DataFrame({"k": keys, "t": [at] * len(keys)},
                                                          schema={"k": pl.Int64, "t": pl.Datetime("us", "UTC")}),
                                             ["view.*"], timestamp="t").to_polars().drop("t")
                assert online.to_dicts() == frame.to_dicts(), (run, at)
                assert online.schema == frame.schema
                # And both are right: the events of the files so far, arrived or not by `at`, read by the reference.
                landed = [e for e, n in zip(case["events"], case["lands"]) if n <= number]
                assert [approximately(r) for r in frame.to_dicts()] == [
                    approximately(reference_row(case, landed, k, at)) for k in keys], (run, at)


def reference_row(case: dict, events: list[dict], k: int | None, at: datetime) -> dict:
    rules = Rules(entity=("k",), timestamp="ts", lag=case["lag"], since=case["since"],
                  known_at="arrived" if case["known_at"] else None)
    return {"k": k, **{f"{name}_{label}": window_aggregate(events, (k,), at, rules, measure, WINDOWS[label])
                       for name, measure in MEASURES.items() for label in case["windows"]}}


def approximately(row: dict) -> dict:
    """A row with its averages to 12 significant digits: the sums behind them are added in another order."""
    return {name: float(f"{value:.12g}") if name.startswith("mean_") and value is not None else value
            for name, value in row.items()}


def test_events_are_kept_for_the_longest_window_and_runs_are_incremental(project: ProjectDir,
                                                                         online_database: str) -> None:
    import psycopg

    project.sources["events"] = '"data/events-*.parquet"'
    project.write_config()
    project.view("view", definition(["30m", "2h"], timedelta(0), None))
    first = [{"k": 1, "ts": instant(i), "v": i, "s": "a", "o": i} for i in range(6)]  # every 30 minutes
    write_events(project.root, first, "events-0.parquet")
    with FeatureStore(project.root) as store:
        table = f'featurestore_online."view__{store.views["view"].version}"'

        def stored() -> list[datetime]:
            with psycopg.connect(online_database) as connection:
                return [row[0] for row in connection.execute(f"SELECT __fs_known FROM {table} ORDER BY 1")]

        [run] = store.materialize(until=instant(5))
        assert (run.mode, run.written) == ("backfill", 5)  # instant(0) is older than the 2h window of instant(5)
        assert stored() == [instant(i) for i in range(1, 6)]
        [run] = store.materialize(until=instant(5))
        assert (run.mode, run.read, run.written) == ("unchanged", 0, 0)
        # Later: the watermark moves, old events are trimmed, a new file with a late event is read whole.
        write_events(project.root, [{"k": 1, "ts": instant(6), "v": 6, "s": "b", "o": 6},
                                    {"k": 1, "ts": instant(5, -1), "v": 9, "s": "c", "o": 9}], "events-1.parquet")
        [run] = store.materialize(until=instant(7))
        assert (run.mode, run.written, run.late) == ("incremental", 2, 1)
        assert stored() == [instant(3), instant(4), instant(5, -1), instant(5), instant(6)]
        online = store.online({"k": [1]}, ["view.n_30m", "view.n_2h", "view.latest_s_2h"], at=instant(7))
        assert online.to_dicts() == [{"k": 1, "n_30m": 1, "n_2h": 5, "latest_s_2h": "c"}]


def test_window_and_snapshot_views_in_one_lookup(project: ProjectDir) -> None:
    project.view("counts", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n-- windows: 3h\n"
                           "SELECT user_id, count(*) AS cards, sum(amount) AS spent FROM events GROUP BY user_id\n")
    project.view("latest", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n"
                           "SELECT user_id, ts, amount FROM events\n")
    at = T0 + timedelta(hours=5, minutes=30)
    with FeatureStore(project.root) as store:
        store.materialize(until=at)
        online = store.online({"user_id": [2, 0, 7]}, ["counts.*", "latest.amount"], at=at)
        frame = store.training_frame(pl.DataFrame({"user_id": [2, 0, 7], "ts": [at] * 3}),
                                     ["counts.*", "latest.amount"]).to_polars().drop("ts")
    assert online.to_dicts() == frame.to_dicts()
    # events: user_id = i % 3, amount = i, ts = T0 + i hours: user 2 has i = 2 and 5, user 0 has 3 (and 0)
    assert online.to_dicts() == [{"user_id": 2, "cards_3h": 1, "spent_3h": 5.0, "amount": 5.0},
                                 {"user_id": 0, "cards_3h": 1, "spent_3h": 3.0, "amount": 3.0},
                                 {"user_id": 7, "cards_3h": 0, "spent_3h": None, "amount": None}]


def test_a_changed_database_table_replaces_the_events_after_the_lookback(project: ProjectDir) -> None:
    import duckdb

    database = project.root / ".featurestore" / "offline.duckdb"
    database.parent.mkdir()
    with duckdb.connect(str(database)) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("CREATE TABLE cards (user_id BIGINT, ts TIMESTAMPTZ)")
        connection.execute("INSERT INTO cards VALUES (1, $1), (1, $2)", [instant(0), instant(2)])
    project.sources["cards"] = '{ duckdb = "cards" }'
    project.write_config()
    project.view("added", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n-- windows: 2h\n"
                          "SELECT user_id, count(*) AS n FROM cards GROUP BY user_id\n")
    with FeatureStore(project.root) as store:
        assert [(r.mode, r.written) for r in store.materialize(until=instant(3))] == [("backfill", 2)]
        with duckdb.connect(str(database)) as connection:  # one event late (before the watermark), one on time
            connection.execute("INSERT INTO cards VALUES (1, $1), (1, $2)", [instant(3, -1), instant(4)])
        [run] = store.materialize(until=instant(4, 1), lookback=timedelta(hours=1))
        # Events known after watermark - lookback (instant(1)) are replaced: instant(2), the late one and the new one.
        assert (run.mode, run.written, run.late) == ("incremental", 3, 1)
        online = store.online({"user_id": [1]}, ["added.n_2h"], at=instant(4, 1))
        frame = store.training_frame(pl.DataFrame({"user_id": [1], "ts": [instant(4, 1)]}), ["added.n_2h"])
        assert online.to_dicts() == frame.to_polars().drop("ts").to_dicts() == [{"user_id": 1, "n_2h": 3}]


def test_a_late_event_is_served_once_it_has_arrived_and_leaves_by_its_time(project: ProjectDir,
                                                                           online_database: str) -> None:
    """Stamped 01:00 and arrived 02:00, in a 2h window: online and in frames, not counted at 02:00, counted
    1 µs later, and gone after 03:00 (its time plus the window, not its arrival plus the window)."""
    import psycopg

    project.sources["events"] = '"data/events-*.parquet"'
    project.write_config()
    project.view("view", definition(["2h"], timedelta(0), None, known_at=True))
    late = {"k": 1, "ts": instant(2), "v": 1, "s": "a", "o": 1, "arrived": instant(4)}
    write_events(project.root, [late, {"k": 1, "ts": instant(3), "v": 10, "s": "b", "o": 2, "arrived": None}],
                 "events-0.parquet")
    expected = [(instant(3), 0), (instant(3, 1), 1), (instant(4), 1), (instant(4, 1), 2), (instant(6), 2),
                (instant(6, 1), 1), (instant(7), 1), (instant(7, 1), 0), (instant(8), 0)]
    with FeatureStore(project.root, consumer="test") as store:
        for at, n in expected:  # one run each, incremental after the first
            store.materialize(until=at)
            online = store.online({"k": [1]}, ["view.n_2h", "view.total_2h"], at=at)
            frame = store.training_frame(pl.DataFrame({"k": [1], "t": [at]}, schema={
                "k": pl.Int64, "t": pl.Datetime("us", "UTC")}), ["view.n_2h", "view.total_2h"], timestamp="t")
            assert online.to_dicts() == frame.to_polars().drop("t").to_dicts(), at
            assert online.to_dicts()[0]["n_2h"] == n, at
        table = f'featurestore_online."view__{store.views["view"].version}"'
    # Kept for the 2h window of 04:00 by when it became known, with when it was due: the late event only.
    with psycopg.connect(online_database) as connection:
        assert connection.execute(f"SELECT __fs_ts, __fs_due, __fs_known FROM {table}").fetchall() == [
            (instant(2), instant(2), instant(4))]
