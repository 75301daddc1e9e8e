"""The online store on a real PostgreSQL: materialization and lookups, and the skew guarantee.

After `materialize(until=T)`, `online(entities, at=T)` must equal a training frame of the
same entities at T (docs/semantics.md): values, NULLs and types.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, FeatureStoreError
from featurestore.engines.postgres import lock_key
from featurestore.offline.frames import frame_sql

from reference import Rules
from snapshot_cases import UTC_US, cases, definition, has_ties, rows_table
from support import T0, ProjectDir, events_table, reset

EXAMPLES = max(10, int(os.environ.get("FEATURESTORE_EXAMPLES", "1000")) // 10)
UTC = UTC
HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"


@pytest.fixture(autouse=True)
def online_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test on the session's PostgreSQL, starting from an empty online schema."""
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    yield postgres_url



def online_table(url: str, store: FeatureStore, view: str) -> list[tuple]:
    import psycopg

    version = store.views[view].version
    with psycopg.connect(url) as connection:
        return connection.execute(f'SELECT * FROM featurestore_online."{view}__{version}" ORDER BY 1').fetchall()


def write_events(root: Path, rows: list[dict], rules: Rules, name: str = "events.parquet") -> None:
    pq.write_table(rows_table(rows), root / "data" / name)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
@given(cases(), st.data())
def test_online_equals_the_training_frame_at_each_materialized_instant(online_database: str, case: dict,
                                                                        data: st.DataObject) -> None:
    rules, rows, spine = case["rules"], case["rows"], case["spine"]
    assume(rules.created or not has_ties(rows, rules))  # ties: both sides refuse (tested below)
    reset(online_database)
    instants = sorted({at + timedelta(microseconds=d) for r in rows for d in (-1, 0, 1)
                       for at in (r["ts"] + rules.lag, *([r["arrived"]] if r["arrived"] else []))}
                      | {r["ts"] + (rules.ttl or timedelta(0)) for r in rows} | {T0})
    chosen = sorted(data.draw(st.lists(st.sampled_from(instants), min_size=1, max_size=3, unique=True)))
    # Rows land in files, one before each run, whatever their time: a row may come long after it was due.
    arrival = data.draw(st.lists(st.integers(0, len(chosen) - 1), min_size=len(rows), max_size=len(rows)))
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.sources["events"] = '"data/events-*.parquet"'
        project.write_config()
        project.view("view", definition(rules))
        with FeatureStore(project.root) as store:
            keys = {"k": [r["k"] for r in spine], "c": [r["c"] for r in spine]}
            entity = {name: keys[name] for name in rules.entity}
            for number, at in enumerate(chosen):  # increasing: the first run backfills, the later ones are incremental
                write_events(project.root, [r for r, a in zip(rows, arrival) if a == number], rules,
                             f"events-{number}.parquet")
                [run] = store.materialize(until=at)
                online = store.online(entity, ["view.*"], at=at)
                frame = store.training_frame(pl.DataFrame({**entity, "t": [at] * len(spine)},
                                                          schema={**{n: pl.Int64 if n == "k" else pl.String
                                                                     for n in entity}, "t": pl.Datetime("us", "UTC")}),
                                             ["view.*"], timestamp="t", cache=False).to_polars()
                assert online.select("v", "s").to_dicts() == frame.select("v", "s").to_dicts(), run
                assert online.select("v", "s").schema == frame.select("v", "s").schema


@pytest.fixture
def store(project: ProjectDir) -> Iterator[FeatureStore]:
    # events: user_id = i % 3, card_id = i, amount = i, ts = T0 + i hours, for i in 0..5
    project.view("spend", HEADER + "-- ttl: 2h\nSELECT user_id, ts, amount, card_id, amount > 2 AS big FROM events\n")
    with FeatureStore(project.root) as result:
        yield result


def test_runs_are_incremental_and_a_second_run_does_no_work(store: FeatureStore, project: ProjectDir,
                                                            online_database: str) -> None:
    until = T0 + timedelta(hours=5)
    assert [(r.mode, r.read, r.written) for r in store.materialize(until=until)] == [("backfill", 3, 3)]
    assert [(r.mode, r.read, r.written) for r in store.materialize(until=until)] == [("unchanged", 0, 0)]
    frame = store.online({"user_id": [2, 0, 7]}, ["spend.*"], at=until)
    assert frame.to_dicts() == [{"user_id": 2, "amount": 5.0, "card_id": 5, "big": True},
                                {"user_id": 0, "amount": 3.0, "card_id": 3, "big": True},
                                {"user_id": 7, "amount": None, "card_id": None, "big": None}]
    assert frame.schema == {"user_id": pl.Int64, "amount": pl.Float64, "card_id": pl.Int64, "big": pl.Boolean}
    # A row not yet known at the lookup's instant is not returned (no value from the future)...
    assert store.online({"user_id": [2]}, ["spend.amount"], at=T0)["amount"].to_list() == [None]
    # ...nor one older than the TTL then, as in a frame.
    assert store.online({"user_id": [0]}, ["spend.amount"], at=until + timedelta(hours=3))["amount"].to_list() == [None]
    # New rows: one on time, one late (known before the watermark, within the look-back).
    pq.write_table(pa.table({
        "user_id": pa.array([1, 0], pa.int64()), "card_id": pa.array([6, 9], pa.int64()),
        "amount": pa.array([6.0, 9.0]), "ts": pa.array([T0 + timedelta(hours=6), T0 + timedelta(hours=4, minutes=30)],
                                                       pa.timestamp("us", tz="UTC"))}),
        project.root / "data" / "events_new.parquet")  # a new file: the source only grew
    project.sources["events"] = '"data/events*.parquet"'
    project.write_config()
    store = FeatureStore(project.root)
    [run] = store.materialize(until=T0 + timedelta(hours=6))
    assert (run.mode, run.written, run.late) == ("incremental", 2, 1)
    assert store.online({"user_id": [0, 1]}, ["spend.amount"], at=T0 + timedelta(hours=6))["amount"].to_list() \
        == [9.0, 6.0]
    rows = online_table(online_database, store, "spend")
    assert [(r[0], r[2]) for r in rows] == [(0, 9.0), (1, 6.0), (2, 5.0)]  # plain SQL reads it
    # An earlier `until` never replaces a newer value with an older one.
    store.materialize(until=T0 + timedelta(hours=1), lookback=timedelta(days=1))
    assert [(r[0], r[2]) for r in online_table(online_database, store, "spend")] == [(0, 9.0), (1, 6.0), (2, 5.0)]
    store.close()


def test_a_tie_with_a_stored_row_is_refused(project: ProjectDir) -> None:
    project.sources["events"] = '"data/events*.parquet"'
    project.write_config()
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    store = FeatureStore(project.root)
    until = T0 + timedelta(hours=6)
    store.materialize(until=until)
    pq.write_table(events_table(6).slice(5, 1).set_column(2, "amount", pa.array([50.0])),  # user 2 at 5h, again
                   project.root / "data" / "events_late.parquet")
    with pytest.raises(FeatureStoreError, match=r"several rows with user_id=2 and ts=2026-01-01 05:00:00.*created"):
        FeatureStore(project.root).materialize(until=until)
    assert store.online({"user_id": [2]}, ["spend.amount"], at=until)["amount"].to_list() == [5.0]  # untouched
    store.close()


def test_a_rewritten_file_or_full_rebuilds(store: FeatureStore, project: ProjectDir) -> None:
    until = T0 + timedelta(hours=5)
    store.materialize(until=until)
    changed = events_table(6).set_column(2, "amount", pa.array([float(-i) for i in range(6)]))
    project.parquet("events", changed)  # old rows rewritten, not appended: an incremental run would miss them
    assert [r.mode for r in store.materialize(until=until)] == ["rebuild"]
    assert store.online({"user_id": [2]}, ["spend.amount"], at=until)["amount"].to_list() == [-5.0]
    assert [r.mode for r in store.materialize(until=until)] == ["unchanged"]
    assert [(r.mode, r.written) for r in store.materialize(until=until, full=True)] == [("rebuild", 3)]


def test_a_changed_view_is_backfilled_into_a_new_table_and_switched(store: FeatureStore, project: ProjectDir,
                                                                     online_database: str) -> None:
    import psycopg

    until = T0 + timedelta(hours=5)
    store.materialize(until=until)
    old = store.views["spend"].version
    project.view("spend", HEADER + "SELECT user_id, ts, amount * 2 AS amount FROM events\n")
    changed = FeatureStore(project.root)
    assert [r.mode for r in changed.materialize(until=until, keep_old_versions=True)] == ["backfill"]
    assert changed.online({"user_id": [2]}, ["spend.amount"], at=until)["amount"].to_list() == [10.0]
    with psycopg.connect(online_database) as connection:
        tables = {r[0] for r in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                                   "'featurestore_online'").fetchall()}
        assert {f"spend__{old}", f"spend__{changed.views['spend'].version}"} <= tables
        assert connection.execute('SELECT amount FROM featurestore_online."spend" WHERE user_id = 2').fetchone() \
            == (10.0,)  # the plain name follows the current version
    project.view("spend", HEADER + "SELECT user_id, ts, amount * 3 AS amount FROM events\n")
    third = FeatureStore(project.root)
    third.materialize(until=until)
    with psycopg.connect(online_database) as connection:
        tables = {r[0] for r in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                                   "'featurestore_online'").fetchall()}
    assert tables == {"watermarks", "quarantine", f"spend__{third.views['spend'].version}"}  # old versions dropped
    for s in (changed, third):
        s.close()


def test_lookup_errors_say_what_to_fix(store: FeatureStore) -> None:
    with pytest.raises(FeatureStoreError, match=r"not materialized.*featurestore materialize"):
        store.online({"user_id": [1]}, ["spend.amount"])
    store.materialize(until=T0 + timedelta(hours=5))
    with pytest.raises(FeatureStoreError, match="no feature 'amont'; did you mean 'amount'"):
        store.online({"user_id": [1]}, ["spend.amont"])
    with pytest.raises(FeatureStoreError, match=r"entities\['user_id'\]\[1\] is '2' \(str\).*BIGINT"):
        store.online({"user_id": [1, "2"]}, ["spend.amount"])
    with pytest.raises(FeatureStoreError, match="lack 'user_id', the entity key of view 'spend'"):
        store.online({"userid": [1]}, ["spend.amount"])
    with pytest.raises(FeatureStoreError, match="differ in length"):
        FeatureStore(store.root).online({"user_id": [1], "card_id": [1, 2]}, ["spend.amount"])
    assert store.online({"user_id": []}, ["spend.amount"]).shape == (0, 2)
    import numpy as np

    assert store.online({"user_id": np.array([2, 0])}, ["spend.amount"], at=T0 + timedelta(hours=5)) \
        ["amount"].to_list() == [5.0, 3.0]
    repeated = store.online({"user_id": [2, 9, 2]}, ["spend.amount", "spend.big"], at=T0 + timedelta(hours=5))
    assert repeated.rows() == [(2, 5.0, True), (9, None, None), (2, 5.0, True)]
    assert store.online(pl.DataFrame({"user_id": [None, 1]}), ["spend.amount"], at=T0 + timedelta(hours=5)) \
        ["amount"].to_list() == [None, 4.0]


def test_lookups_outlive_their_connections(store: FeatureStore, online_database: str) -> None:
    """A lookup whose connection the server dropped (a restart, an idle timeout) runs again on a new one."""
    import asyncio

    import psycopg

    def drop_connections() -> None:
        with psycopg.connect(online_database, autocommit=True) as connection:
            dropped = connection.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                         "datname = current_database() AND pid <> pg_backend_pid() AND "
                                         "backend_type = 'client backend'").fetchone()[0]
        assert dropped >= 1

    async def twice_async() -> list[float]:
        first = await store.online_async({"user_id": [2]}, ["spend.amount"], at=at)
        drop_connections()
        second = await store.online_async({"user_id": [2]}, ["spend.amount"], at=at)
        await store.aclose()
        return [first["amount"][0], second["amount"][0]]

    at = T0 + timedelta(hours=5)
    store.materialize(until=at)
    assert store.online({"user_id": [2]}, ["spend.amount"], at=at)["amount"].to_list() == [5.0]
    drop_connections()
    assert store.online({"user_id": [2]}, ["spend.amount"], at=at)["amount"].to_list() == [5.0]
    assert asyncio.run(twice_async()) == [5.0, 5.0]


def test_asynchronous_lookups_leave_no_connection_behind(store: FeatureStore, online_database: str) -> None:
    """Each event loop's pool closes when its loop ends: asyncio.run(...) in a loop (a notebook, a
    script) neither piles up connections nor runs out of them."""
    import asyncio

    import psycopg

    def connections() -> int:
        with psycopg.connect(online_database, autocommit=True) as connection:
            return connection.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]

    at = T0 + timedelta(hours=5)
    store.materialize(until=at)
    before = connections()
    for _ in range(12):  # more than the embedded server's free connection slots, had each loop kept two
        found = asyncio.run(store.online_async({"user_id": [2]}, ["spend.amount"], at=at))
        assert found["amount"].to_list() == [5.0]
    deadline = time.monotonic() + 10  # a server process ends a moment after its client closed the connection
    while (left := connections()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == before


_FEATURE_TYPES = [  # (DuckDB type of the feature, Arrow type of its source column, values)
    ("BOOLEAN", pa.bool_(), st.booleans()),
    ("SMALLINT", pa.int16(), st.integers(-2**15, 2**15 - 1)),
    ("INTEGER", pa.int32(), st.integers(-2**31, 2**31 - 1)),
    ("BIGINT", pa.int64(), st.integers(-2**63, 2**63 - 1)),
    ("FLOAT", pa.float32(), st.floats(width=32)),
    ("DOUBLE", pa.float64(), st.floats()),
    ("VARCHAR", pa.string(), st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                     max_size=8)),
    ("DATE", pa.date32(), st.dates()),
    ("TIME", pa.time64("us"), st.times()),
    ("TIMESTAMP", pa.timestamp("us"), st.datetimes()),
    ("TIMESTAMP WITH TIME ZONE", pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(UTC))),
    ("DECIMAL(18,3)", pa.decimal128(18, 3), st.decimals(-10**15 + 1, 10**15 - 1, places=3)),
    ("DECIMAL(38,10)", pa.decimal128(38, 10), st.decimals(-10**28 + 1, 10**28 - 1, places=10)),
    ("UUID", pa.string(), st.uuids().map(str)),  # cast to UUID in the view
]


@settings(max_examples=max(8, EXAMPLES // 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_lookups_equal_frames_for_every_type(online_database: str, data: st.DataObject) -> None:
    """online() at T equals the training frame at T, values (NULL, NaN, extremes, unicode) and types,
    over the SDK, its asynchronous form, and as columns (what the HTTP service sends)."""
    import asyncio

    users = data.draw(st.integers(1, 4))
    rows = [(user, T0 + timedelta(minutes=minute)) for user in range(users)
            for minute in data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True))]
    columns = {f"c{i}": pa.array(data.draw(st.lists(st.one_of(st.none(), values), min_size=len(rows),
                                                    max_size=len(rows))), kind)
               for i, (_, kind, values) in enumerate(_FEATURE_TYPES)}
    selected = ", ".join(f"CAST(c{i} AS {name}) AS c{i}" for i, (name, _, _) in enumerate(_FEATURE_TYPES))
    at = T0 + timedelta(hours=1)
    entities = {"user_id": [*range(users), users]}  # and one unknown
    reset(online_database)
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.parquet("events", pa.table({"user_id": pa.array([u for u, _ in rows], pa.int64()),
                                            "ts": pa.array([t for _, t in rows], pa.timestamp("us", "UTC")),
                                            **columns}))
        project.view("typed", HEADER + f"SELECT user_id, ts, {selected} FROM events\n")
        with FeatureStore(project.root, consumer="test") as store:
            store.materialize(until=at)
            frame = store.training_frame(pl.DataFrame({**entities, "t": [at] * (users + 1)},
                                                      schema={"user_id": pl.Int64, "t": pl.Datetime("us", "UTC")}),
                                         ["typed.*"], timestamp="t", cache=False).to_polars().drop("t")
            online = store.online(entities, ["typed.*"], at=at)
            in_columns = store.online(entities, ["typed.*"], at=at, columns=True)

            async def lookup_async() -> pl.DataFrame:
                try:
                    return await store.online_async(entities, ["typed.*"], at=at)
                finally:
                    await store.aclose()

            asynchronous = asyncio.run(lookup_async())
    def rows(values: list[tuple]) -> list[tuple]:  # NaN equal to NaN
        return [tuple("NaN" if isinstance(v, float) and v != v else v for v in row) for row in values]

    assert online.schema == frame.schema == asynchronous.schema
    assert rows(online.rows()) == rows(asynchronous.rows()) == rows(frame.rows())
    assert rows(list(zip(*in_columns.values()))) == rows(frame.rows())  # time zones may differ by name only


_TEXT_KEYS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=5) \
    | st.sampled_from(['"', "\\", "\\\"", "{a,b}", "NULL", "null", " ", "", "a,b", "'", "ünï"])


@settings(max_examples=max(8, EXAMPLES // 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(_TEXT_KEYS, min_size=1, max_size=4, unique=True), st.lists(_TEXT_KEYS | st.none(), max_size=4),
       st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=3, unique=True), st.booleans())
def test_lookup_keys_are_any_text_or_integer(online_database: str, names: list[str], unknown: list[str | None],
                                             numbers: list[int], composite: bool) -> None:
    """Text keys with quotes, backslashes, braces, commas, 'NULL' and unicode, NULL keys, and integers at
    their extremes find their rows, one key column or two, as a training frame does."""
    rows = [(name, number) for name in names for number in (numbers if composite else numbers[:1])]
    entity = "name, number" if composite else "name"
    asked = [*rows, *((u, numbers[0]) for u in unknown), (names[0], None)]
    entities = {"name": [n for n, _ in asked], **({"number": [k for _, k in asked]} if composite else {})}
    reset(online_database)
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.parquet("events", pa.table({"name": pa.array([n for n, _ in rows], pa.string()),
                                            "number": pa.array([k for _, k in rows], pa.int64()),
                                            "ts": pa.array([T0] * len(rows), pa.timestamp("us", "UTC")),
                                            "v": pa.array(range(len(rows)), pa.int64())}))
        project.view("named", f"-- entity: {entity}\n-- timestamp: ts\n-- owner: team@example.com\n"
                              "SELECT name, number, ts, v FROM events\n")
        with FeatureStore(project.root, consumer="test") as store:
            at = T0 + timedelta(hours=1)
            store.materialize(until=at)
            online = store.online(entities, ["named.v"], at=at)
            types = {"name": pl.String, "number": pl.Int64}
            spine = pl.DataFrame({**entities, "t": [at] * len(asked)},
                                 schema={**{n: types[n] for n in entities}, "t": pl.Datetime("us", "UTC")})
            frame = store.training_frame(spine, ["named.v"], timestamp="t", cache=False).to_polars()
    assert online.rows() == frame.drop("t").rows()
    found = dict(zip(rows, range(len(rows))))
    assert online["v"].to_list() == [found.get(key if composite else (key[0], numbers[0])) for key in asked]


def test_an_unreachable_server_is_named_without_its_password(project: ProjectDir,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", "postgresql://fs:s3cret@127.0.0.1:9/features")
    with pytest.raises(FeatureStoreError, match=r"cannot connect to PostgreSQL at postgresql://fs:\*\*\*@127.0.0.1:9") \
            as error:
        FeatureStore(project.root).materialize()
    assert "s3cret" not in str(error.value)


LARGE = ("import sys; from featurestore import FeatureStore; from datetime import datetime, timezone\n"
         "runs = FeatureStore(sys.argv[1]).materialize(until=datetime(2027, 1, 1, tzinfo=timezone.utc))\n"
         "print(','.join(r.mode for r in runs))\n")


def large_project(root: Path, rows: int) -> ProjectDir:
    import numpy as np

    project = ProjectDir(root)
    rng = np.random.default_rng(7)
    project.parquet("events", pa.table({
        "user_id": pa.array(rng.integers(0, rows // 4, rows), pa.int64()),
        "ts": pa.array((T0.timestamp() * 1e6 + np.arange(rows) * 1000).astype("int64"), pa.timestamp("us", "UTC")),
        **{f"f{i}": pa.array(rng.random(rows)) for i in range(6)}}))
    project.view("big", HEADER + "SELECT user_id, ts, f0, f1, f2, f3, f4, f5 FROM events\n")
    return project


def test_a_killed_run_loses_and_duplicates_nothing(tmp_path: Path, online_database: str) -> None:
    import psycopg

    project = large_project(tmp_path / "big", 600_000)
    store = FeatureStore(project.root)
    until = T0.replace(year=2027)
    started = time.perf_counter()
    assert store.materialize(until=until)[0].mode == "backfill"
    clean = online_table(online_database, store, "big")
    full = time.perf_counter() - started
    interrupted = 0
    key = lock_key("materialize:big")
    for fraction in (0.05, 0.2, 0.4, 0.6):  # kill -9 in the DuckDB pass, the COPY, the keying, the commit
        reset(online_database)
        run = subprocess.Popen([sys.executable, "-c", LARGE, str(project.root)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        with psycopg.connect(online_database, autocommit=True) as connection:
            while not connection.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                         "AND classid::bigint = %s AND objid::bigint = %s",
                                         [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]).fetchone()[0]:
                time.sleep(0.005)  # until the run's transaction has begun
        time.sleep(full * fraction)
        run.send_signal(signal.SIGKILL)
        killed = run.wait() == -signal.SIGKILL
        mode = FeatureStore(project.root).materialize(until=until)[0].mode
        interrupted += killed and mode == "backfill"  # else it had committed: nothing to redo
        assert online_table(online_database, store, "big") == clean
    assert interrupted >= 2  # the test did kill runs in the middle


def test_concurrent_runs_queue_and_agree(tmp_path: Path, online_database: str) -> None:
    project = large_project(tmp_path / "big", 200_000)
    runs = [subprocess.Popen([sys.executable, "-c", LARGE, str(project.root)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    # the second waited, then had nothing to do
    assert sorted(out.strip() for out, _ in results) == ["backfill", "unchanged"]
    store = FeatureStore(project.root)
    concurrent = online_table(online_database, store, "big")
    reset(online_database)
    store.materialize(until=T0.replace(year=2027))
    assert online_table(online_database, store, "big") == concurrent


def test_cli_materializes_and_looks_up(store: FeatureStore, project: ProjectDir,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = project.run("materialize", "--until", "2026-01-01T05:00:00Z", "--format", "json", capsys=capsys)
    assert code == 0 and [(r["view"], r["mode"], r["written"]) for r in json.loads(out)] == [("spend", "backfill", 3)]
    code, out, _ = project.run("materialize", "--until", "2026-01-01T05:00:00Z", capsys=capsys)
    assert code == 0 and "unchanged" in out
    code, out, _ = project.run("online", "--entity", "user_id=2,9", "--features", "spend.amount", "--at",
                               "2026-01-01T05:00:00Z", "--format", "json", capsys=capsys)
    assert (code, json.loads(out)) == (0, [{"user_id": 2, "amount": 5.0}, {"user_id": 9, "amount": None}])
    code, _, err = project.run("materialize", "--until", "yesterday", capsys=capsys)
    assert code == 1 and "--until 'yesterday'" in err and "2026-10-15" in err
    code, _, err = project.run("online", "--entity", "user_id", "--features", "spend.amount", capsys=capsys)
    assert code == 1 and "KEY=V1,V2" in err


def materialize_every_second(root: Path, url: str) -> subprocess.Popen:
    """`featurestore materialize --every 1s --format json` on the project, running."""
    return subprocess.Popen([sys.executable, "-m", "featurestore.cli.main", "--project", str(root),
                             "materialize", "--every", "1s", "--format", "json"],
                            env={**os.environ, "FEATURESTORE_POSTGRES_URL": url},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_materialize_every_runs_until_stopped(store: FeatureStore, online_database: str, stop: int) -> None:
    """`materialize --every 1s`: a JSON line per run; SIGTERM or Ctrl-C ends it after the current run, cleanly."""
    import json

    process = materialize_every_second(store.root, online_database)
    try:
        first, second = (json.loads(process.stdout.readline()) for _ in range(2))
        process.send_signal(stop)
        code = process.wait(timeout=30)
    finally:
        process.kill()
    assert [(v["view"], v["mode"], v["written"]) for v in first["views"]] == [("spend", "backfill", 3)]
    assert [v["written"] for v in second["views"]] == [0] and second["until"] > first["until"]
    assert code == 0 and "stopped after the last run" in process.stderr.read()
    assert store.online({"user_id": [2]}, ["spend.amount"], at=T0 + timedelta(hours=5))["amount"].to_list() == [5.0]


def test_materialize_every_reports_a_failed_run_and_goes_on(store: FeatureStore, project: ProjectDir,
                                                            online_database: str) -> None:
    """A run that fails (here a definition broken while it runs) is one error line; the next run reads
    the fixed project and succeeds; stopped after a failed run, the exit status is 1."""
    import json

    process = materialize_every_second(store.root, online_database)
    good = (project.root / "definitions" / "spend.sql").read_text()
    try:
        assert json.loads(process.stdout.readline())["views"][0]["mode"] == "backfill"
        project.view("spend", good.replace("FROM events", "FROM evnts"))
        error = process.stderr.readline()
        project.view("spend", good)
        assert json.loads(process.stdout.readline())["views"][0]["view"] == "spend"
        project.view("spend", good.replace("FROM events", "FROM evnts"))
        process.stderr.readline()  # failed again
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        process.kill()
    assert error.startswith("error: ") and "evnts" in error
    assert code == 1 and "stopped after a failed run" in process.stderr.read()


def test_materialize_every_refuses_what_it_cannot_repeat(project: ProjectDir,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--every", "1m", "--until", "2026-01-01T00:00:00Z"], "drop --until"),
                          (["--every", "1m", "--full"], "run `featurestore materialize --full` once"),
                          (["--every", "soon"], "write e.g. 30s, 1m or 1h"),
                          (["--every", "0"], "longer than 0")):
        code, _, err = project.run("materialize", *args, capsys=capsys)
        assert code == 1 and message in err, (args, err)


def test_the_fast_row_constructor_equals_polars_public_one() -> None:
    import datetime as dt
    import decimal

    from featurestore.online.lookup import rows_frame

    schema = pl.Schema({"a": pl.Int64, "b": pl.Float64, "c": pl.String, "d": pl.Boolean, "e": pl.Datetime("us", "UTC"),
                        "f": pl.Datetime("us"), "g": pl.Date, "h": pl.Decimal(10, 2), "i": pl.Int32, "j": pl.Time})
    rows = [(1, 0.5, "x", True, dt.datetime(2024, 1, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
             dt.datetime(2024, 1, 1), dt.date(2024, 1, 2), decimal.Decimal("1.25"), 3, dt.time(1, 2, 3)), (None,) * 10]
    fast = rows_frame(rows, schema)
    assert fast.schema == schema
    assert fast.equals(pl.DataFrame(rows, schema=schema, orient="row"))
    assert rows_frame([], schema).equals(pl.DataFrame([], schema=schema, orient="row"))


def test_async_and_columnar_lookups_equal_the_frame(store: FeatureStore) -> None:
    import asyncio

    at = T0 + timedelta(hours=5)
    store.materialize(until=at)
    frame = store.online({"user_id": [2, 9, 0]}, ["spend.*"], at=at)
    assert store.online({"user_id": [2, 9, 0]}, ["spend.*"], at=at, columns=True) == frame.to_dict(as_series=False)

    async def both() -> tuple:
        found = await store.online_async({"user_id": [2, 9, 0]}, ["spend.*"], at=at)
        columns = await store.online_async({"user_id": [2, 9, 0]}, ["spend.*"], at=at, columns=True)
        await store.aclose()
        return found, columns

    found, columns = asyncio.run(both())
    assert found.equals(frame) and columns == frame.to_dict(as_series=False)
    assert store.online({"user_id": []}, ["spend.amount"], columns=True) == {"user_id": [], "amount": []}


_COPY_COLUMNS = [  # (PostgreSQL type, Arrow type, values)
    ("boolean", pa.bool_(), st.booleans()),
    ("smallint", pa.int16(), st.integers(-2**15, 2**15 - 1)),
    ("integer", pa.int32(), st.integers(-2**31, 2**31 - 1)),
    ("bigint", pa.int64(), st.integers(-2**63, 2**63 - 1)),
    ("real", pa.float32(), st.floats(width=32, allow_nan=False)),
    ("double precision", pa.float64(), st.floats(allow_nan=False)),
    ("text", pa.string(), st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                  max_size=6)),
    ("date", pa.date32(), st.dates()),
    ("timestamp", pa.timestamp("us"), st.datetimes()),
    ("timestamptz", pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(UTC))),
]


@settings(max_examples=max(20, EXAMPLES // 2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_binary_copy_loads_every_value_of_every_type(online_database: str, data: st.DataObject) -> None:
    """The binary COPY that materialization uses: NULLs, extremes, unicode, sliced batches, with or without text."""
    import psycopg

    from featurestore.engines.postgres import copy_binary

    chosen = data.draw(st.lists(st.sampled_from(range(len(_COPY_COLUMNS))), min_size=1, max_size=6, unique=True))
    columns = [_COPY_COLUMNS[i] for i in chosen]
    rows = data.draw(st.integers(0, 40))
    values = [data.draw(st.lists(st.one_of(st.none(), strategy), min_size=rows, max_size=rows))
              for _, _, strategy in columns]
    table = pa.table({f"c{i}": pa.array(v, kind) for i, ((_, kind, _), v) in enumerate(zip(columns, values))})
    skip = data.draw(st.integers(0, rows))  # a batch that starts inside its buffers
    batches = table.slice(skip).to_batches(max_chunksize=data.draw(st.integers(1, 50)))
    names = [(f"c{i}", kind) for i, (kind, _, _) in enumerate(columns)]
    with psycopg.connect(online_database) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        cursor = connection.cursor()
        cursor.execute("CREATE TEMP TABLE copied (n serial, " + ", ".join(f"{n} {k}" for n, k in names) + ")")
        copy_binary(cursor, "pg_temp", "copied", names, batches)
        found = cursor.execute(f"SELECT {', '.join(n for n, _ in names)} FROM copied").fetchall()

    def same(row: tuple) -> tuple:  # PostgreSQL prints a real in its shortest form: compare as float32
        import numpy as np

        return tuple(float(np.float32(v)) if kind == "real" and v is not None else v
                     for (_, kind), v in zip(names, row))

    expected = list(zip(*[v[skip:] for v in values])) if rows > skip else []
    assert sorted(map(same, found), key=repr) == sorted(map(same, expected), key=repr)


def test_every_online_type_is_materialized_exactly(project: ProjectDir, online_database: str) -> None:
    """DuckDB's values of each type with an online form, at its extremes, as PostgreSQL holds them."""
    import decimal
    import uuid
    from datetime import date, datetime, time

    import psycopg

    columns = {  # name: (user 0's value, user 1's; user 2's is NULL), in DuckDB
        "tiny": ("127::TINYINT", "(-128)::TINYINT"), "utiny": ("255::UTINYINT", "0::UTINYINT"),
        "usmall": ("65535::USMALLINT", "0::USMALLINT"), "uint": ("4294967295::UINTEGER", "0::UINTEGER"),
        "ubig": ("18446744073709551615::UBIGINT", "0::UBIGINT"),
        "huge": ("170141183460469231731687303715884105727::HUGEINT", "(-170141183460469231731687303715884105727 - 1)"
                 "::HUGEINT"),
        "dec": ("9999999999999999999999999999.9999999999::DECIMAL(38,10)", "(-0.0000000001)::DECIMAL(38,10)"),
        "id": ("'ffffffff-ffff-ffff-ffff-ffffffffffff'::UUID", "'00112233-4455-6677-8899-aabbccddeeff'::UUID"),
        "clock": ("TIME '23:59:59.999999'", "TIME '00:00:00'"),
        "calendar": ("DATE '9999-12-31'", "DATE '0001-01-01'"),
        "ns": ("TIMESTAMP_NS '2262-04-11 23:47:16.854775'", "TIMESTAMP_NS '1677-09-22 00:12:43.145225'"),
        "moment": ("TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'", "TIMESTAMPTZ '0001-01-01 00:00:00+00'"),
        "f": ("'infinity'::DOUBLE", "'nan'::FLOAT"), "word": ("'ünï ✓'", "''"),
    }
    project.view("typed", HEADER + "SELECT user_id, ts, " + ", ".join(
        f"CASE user_id WHEN 0 THEN {first} WHEN 1 THEN {second} END AS {name}"
        for name, (first, second) in columns.items()) + " FROM events\n")
    store = FeatureStore(project.root)
    store.materialize(until=T0 + timedelta(hours=5))
    listed = ", ".join("f::text" if n == "f" else n for n in columns)
    with psycopg.connect(online_database) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        rows = connection.execute(f'SELECT {listed} FROM featurestore_online."typed__'
                                  f'{store.views["typed"].version}" ORDER BY user_id').fetchall()
    store.close()
    found = [dict(zip(columns, row)) for row in rows]
    assert found[0] == {
        "tiny": 127, "utiny": 255, "usmall": 65535, "uint": 4294967295, "ubig": decimal.Decimal(2**64 - 1),
        "huge": decimal.Decimal(2**127 - 1), "dec": decimal.Decimal("9999999999999999999999999999.9999999999"),
        "id": uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        "clock": time(23, 59, 59, 999999), "calendar": date(9999, 12, 31),
        "ns": datetime(2262, 4, 11, 23, 47, 16, 854775),
        "moment": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "f": "Infinity", "word": "ünï ✓"}
    assert found[1] == {
        "tiny": -128, "utiny": 0, "usmall": 0, "uint": 0, "ubig": 0, "huge": decimal.Decimal(-(2**127)),
        "dec": decimal.Decimal("-0.0000000001"), "id": uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"),
        "clock": time(0), "calendar": date(1, 1, 1),
        "ns": datetime(1677, 9, 22, 0, 12, 43, 145225), "moment": datetime(1, 1, 1, tzinfo=UTC), "f": "NaN", "word": ""}
    assert found[2] == dict.fromkeys(columns)


def test_a_row_that_arrives_late_is_known_when_it_arrives_offline_and_online(project: ProjectDir) -> None:
    """docs/semantics.md, arrival times: a row stamped 10:00 that arrived at 10:30 was not known at
    10:05, in a training frame nor online; a materialization that reads it after the 10:05 run does
    not count it as late (it came when it came); `compile --frame` writes the same rule."""
    at = T0.replace(hour=10)
    minute = timedelta(minutes=1)
    project.parquet("ledger", pa.table({
        "user_id": pa.array([1, 1, 2], pa.int64()),
        "ts": pa.array([at - 60 * minute, at, at], UTC_US),
        "ingested_at": pa.array([None, at + 30 * minute, at - 5 * minute], UTC_US),  # NULL: on time
        "balance": pa.array([3.0, 5.0, 7.0])}))
    project.view("balance", HEADER + "-- known_at: ingested_at\nSELECT user_id, ts, ingested_at, balance FROM ledger\n")
    with FeatureStore(project.root, consumer="test") as store:
        assert [f.name for f in store.views["balance"].features] == ["balance"]  # the arrival is not a feature

        def frame(t: datetime) -> list:
            spine = pl.DataFrame({"user_id": [1, 2], "ts": [t, t]}, schema={"user_id": pl.Int64,
                                                                           "ts": pl.Datetime("us", "UTC")})
            return store.training_frame(spine, ["balance.balance"], cache=False).to_polars()["balance"].to_list()

        assert frame(at + 5 * minute) == [3.0, 7.0]
        assert frame(at + 30 * minute - timedelta(microseconds=1)) == [3.0, 7.0]
        assert frame(at + 30 * minute) == [5.0, 7.0]
        assert store.materialize(until=at + 5 * minute)[0].mode == "backfill"
        assert store.online({"user_id": [1, 2]}, ["balance.balance"], at=at + 5 * minute)["balance"].to_list() == \
            [3.0, 7.0]
        [second] = store.materialize(until=at + 30 * minute)
        assert (second.mode, second.written, second.late) == ("incremental", 1, 0)
        assert store.online({"user_id": [1, 2]}, ["balance.balance"], at=at + 30 * minute)["balance"].to_list() == \
            [5.0, 7.0]
        for dialect in ("duckdb", "postgres", "spark"):
            assert "GREATEST(" in frame_sql(store.project, ["balance.balance"], dialect=dialect).upper(), dialect
