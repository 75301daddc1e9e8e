"""Training frames on Apache Spark equal DuckDB's, values and types, and both equal the reference.

The reference suites' own cases (test_point_in_time, test_windows) run end to end: a project on
disk with the events as Parquet, one frame by DuckDB and one by a local Spark session.
Spark cannot read nanosecond times from Parquet, so events and their arrivals are in microseconds
here (spines still come in every flavour). Run by scripts/test-spark.sh (marker `spark`); the number of
random cases is FEATURESTORE_SPARK_EXAMPLES.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, FeatureStoreError
from featurestore.cli.main import main
from featurestore.offline.frames import training_frame

import snapshot_cases as snapshots
import window_cases as windows
from reference import Ambiguous, as_of
from support import ProjectDir

pytestmark = pytest.mark.spark

EXAMPLES = int(os.environ.get("FEATURESTORE_SPARK_EXAMPLES", "40"))
SLOW = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local session, made as the engine makes one; few shuffle partitions: the data is tiny."""
    from featurestore.engines.spark import local_session

    session = local_session("local[2]")
    session.conf.set("spark.sql.shuffle.partitions", "2")
    yield session
    session.stop()


def both(root: Path, spine: pa.Table, features: list[str], spark: Any, *, timestamp: str = "t",
         plan: str = "auto", full_names: bool = False) -> pa.Table:
    """The frame by DuckDB and by Spark; they must be equal, types included. Returns it."""
    project = FeatureStore(root, consumer="test").project
    duck = training_frame(project, spine, features, timestamp=timestamp, cache=False, full_names=full_names)
    on_spark = training_frame(project, spine, features, timestamp=timestamp, engine="spark", spark=spark, join=plan,
                              full_names=full_names)
    assert on_spark.info["engine"] == "spark" and "ASOF" not in on_spark.sql
    assert on_spark.to_arrow().schema == duck.to_arrow().schema
    assert on_spark.to_arrow().to_pylist() == duck.to_arrow().to_pylist()
    return duck.to_arrow()


def refused(root: Path, spine: pa.Table, features: list[str], spark: Any, match: str, plan: str = "auto") -> None:
    """Both engines refuse the frame, joined as `plan` says, with the same message."""
    project = FeatureStore(root, consumer="test").project
    with pytest.raises(FeatureStoreError, match=match):
        training_frame(project, spine, features, timestamp="t", cache=False, join=plan)
    with pytest.raises(FeatureStoreError, match=match):
        training_frame(project, spine, features, timestamp="t", engine="spark", spark=spark, join=plan)


def snapshot_spine(case: dict) -> pa.Table:
    """The case's spine in its time flavour (UTC, naive or nanoseconds), as the reference suite builds it."""
    times, nanos = [row["t"] for row in case["spine"]], case["nanos"]
    if case["flavour"] == "utc":
        column = pa.array(times, snapshots.UTC_US)
    elif case["flavour"] == "naive":
        column = pa.array([t.replace(tzinfo=None) if t else None for t in times], pa.timestamp("us"))
    else:
        column = windows.time_array(times, nanos, "nanos")[0]
    return pa.table({"k": pa.array([r["k"] for r in case["spine"]], pa.int64()),
                     "c": pa.array([r["c"] for r in case["spine"]], pa.string()), "t": column,
                     "label": pa.array([r["label"] for r in case["spine"]], pa.int64())})


@SLOW
@given(snapshots.cases(), st.sampled_from(["auto", "last", "ranked"]))
def test_snapshot_frames_equal_duckdb_and_the_reference(spark: Any, case: dict, plan: str) -> None:
    rules, rows = case["rules"], case["rows"]
    try:
        expected = [{"k": r["k"], "c": r["c"], "label": r["label"],
                     **as_of(rows, tuple(r[k] for k in rules.entity), r["t"], rules)} for r in case["spine"]]
    except Ambiguous:
        expected = None
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.parquet("events", snapshots.rows_table(rows))
        project.view("view", snapshots.definition(rules))
        spine = snapshot_spine(case)
        if expected is None:
            refused(project.root, spine, ["view.*"], spark, "several rows with .*-- created", plan)
            return
        frame = both(project.root, spine, ["view.*"], spark, plan=plan)
    assert [{k: r[k] for k in ("k", "c", "label", "v", "s")} for r in frame.to_pylist()] == expected


def spark_readable(case: windows.Case) -> bool:
    return "nanos" not in case.event_flavour


def arrivals_in_microseconds(case: windows.Case) -> windows.Case:
    """The case with its arrivals in microseconds (Spark cannot read nanoseconds from Parquet)."""
    micros = {"nanos": "utc", "naive_nanos": "naive"}
    if case.arrival_flavour not in micros:
        return case
    return replace(case, arrival_flavour=micros[case.arrival_flavour],
                   events=[{**e, "arrived_ns": 0} for e in case.events])


@SLOW
@given(windows.cases().filter(spark_readable).map(arrivals_in_microseconds),
       st.sampled_from(["auto", "frames", "join"]))
def test_window_frames_equal_duckdb_and_the_reference(spark: Any, case: windows.Case, plan: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = ProjectDir(Path(folder))
        project.parquet("events", windows.events_table(case))
        project.view("view", case.view.definition())
        t, _ = windows.time_array([r["t"] for r in case.spine], [r["ns"] for r in case.spine], case.spine_flavour)
        spine = pa.table({"k": pa.array([r["k"] for r in case.spine], pa.int64()),
                          "c": pa.array([r["c"] for r in case.spine], pa.string()), "t": t,
                          "label": pa.array([r["label"] for r in case.spine], pa.int64())})
        features = [f"view.{name}" for name in case.features] or ["view.*"]
        if case.view.known_at and plan == "frames":  # arrival times: windows by range join only
            refused(project.root, spine, features, spark, r"declares arrival times \(known_at\)", plan)
            plan = "join"
        frame = both(project.root, spine, features, spark, plan=plan, full_names=case.full_names)
    names = list(case.features) or [f"{a.name}_{label}" for a in case.view.aggregates for label in case.view.windows]
    outputs = [f"view__{name}" if case.full_names else name for name in names]
    actual = [{name: windows.plain(value) for name, value in row.items() if name != "t"} for row in frame.to_pylist()]
    want = [{"k": r["k"], "c": r["c"], "label": r["label"], **{out: r[name] for name, out in zip(names, outputs)}}
            for r in windows.expected(case)]
    assert actual == want


HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"


def events(count: int = 6) -> pa.Table:
    """user_id = i % 3, amount = i, ts = T0 + i hours."""
    return pa.table({"user_id": pa.array([i % 3 for i in range(count)], pa.int64()),
                     "amount": pa.array([float(i) for i in range(count)]),
                     "ts": pa.array([T0 + timedelta(hours=i) for i in range(count)], pa.timestamp("us", tz="UTC"))})


def spine() -> pa.Table:
    return pa.table({"user_id": [0, 1, 2, None], "t": pa.array([T0 + timedelta(hours=h) for h in (3, 9, 1, 2)],
                                                                pa.timestamp("us", tz="UTC"))})


def test_a_csv_source_is_refused_until_the_session_has_a_table_of_its_name(spark: Any, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    events().to_pandas().to_csv(tmp_path / "data" / "card_events.csv", index=False)
    project.sources["card_events"] = '"data/card_events.csv"'
    project.write_config()
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM card_events\n")
    store = FeatureStore(tmp_path, consumer="test")
    with pytest.raises(FeatureStoreError, match=r"reads source 'card_events', a csv file, which Spark does not read "
                                                r"in place.*createOrReplaceTempView\('card_events'\)"):
        store.training_frame(spine(), ["spend.amount"], timestamp="t", engine="spark", spark=spark)
    spark.createDataFrame(events()).createOrReplaceTempView("card_events")
    try:
        frame = store.training_frame(spine(), ["spend.amount"], timestamp="t", engine="spark", spark=spark)
    finally:
        spark.catalog.dropTempView("card_events")
    assert frame.to_arrow().column("amount").to_pylist() == [3.0, 4.0, None, None]


def test_nanosecond_event_times_are_refused_with_the_fix(spark: Any, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    table = events()
    project.parquet("events", table.set_column(2, "ts", table.column("ts").cast(pa.timestamp("ns", tz="UTC"))))
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    store = FeatureStore(tmp_path, consumer="test")
    with pytest.raises(FeatureStoreError, match=r"spend\.sql: view 'spend' has nanosecond times in 'ts', which Spark "
                                                r"cannot read; store them in microseconds"):
        store.training_frame(spine(), ["spend.amount"], timestamp="t", engine="spark", spark=spark)


def test_duckdb_only_joins_and_functions_are_refused(spark: Any, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    project.parquet("events", events())
    project.view("spend", HEADER + "SELECT user_id, ts, epoch_us(ts) AS micros FROM events\n")
    store = FeatureStore(tmp_path, consumer="test")
    with pytest.raises(FeatureStoreError, match="join 'asof' runs only on DuckDB"):
        training_frame(store.project, spine(), ["spend.micros"], timestamp="t", engine="spark", spark=spark,
                       join="asof")
    with pytest.raises(FeatureStoreError, match=r"spend\.sql: view 'spend' cannot be written in spark SQL: it calls "
                                                r"epoch_us\(\)"):
        store.training_frame(spine(), ["spend.micros"], timestamp="t", engine="spark", spark=spark)


def test_the_session_gets_its_time_zone_back(spark: Any, tmp_path: Path) -> None:
    project = ProjectDir(tmp_path)
    project.parquet("events", events())
    project.view("spend", HEADER + "-- ttl: 2h\nSELECT user_id, ts, amount FROM events\n")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        frame = both(tmp_path, spine(), ["spend.amount"], spark)
        assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    # TTL 2h: user 1's latest row at 9h is from 4h, too old; user 2 has no row by 1h.
    assert frame.column("amount").to_pylist() == [3.0, None, None, None]
    assert not [name for name in spark.catalog.listTables() if name.name.startswith("__fs_")]  # temp views dropped


def test_the_cli_builds_the_same_frame_on_spark(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = ProjectDir(tmp_path)
    project.parquet("events", events())
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    pq.write_table(spine(), tmp_path / "spine.parquet")
    written = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        assert main(["frame", "--project", str(tmp_path), "--spine", str(tmp_path / "spine.parquet"), "--timestamp",
                     "t", "--features", "spend.*", "--engine", engine, "--out", str(out), "--consumer", "test"]) == 0
        written[engine] = pq.read_table(out)
    assert written["spark"].equals(written["duckdb"])
    assert written["spark"].column("amount").to_pylist() == [3.0, 4.0, None, None]


def test_spark_frames_read_pushed_rows_landed_and_compacted(spark: Any, tmp_path: Path, postgres_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that takes pushes reads as its files plus its pushed rows on Spark as on DuckDB."""
    from support import reset

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    project = ProjectDir(tmp_path / "proj")
    micros = pa.timestamp("us", tz="UTC")
    project.parquet("card_events", pa.table({
        "user_id": pa.array([1, 2], pa.int64()), "ts": pa.array([T0, T0 + timedelta(hours=1)], micros),
        "ingested_at": pa.array([None, None], micros), "amount": pa.array([1.0, 2.0])}))
    project.sources["card_events"] = '{ path = "data/card_events.parquet", arrival = "ingested_at" }'
    project.write_config()
    header = "-- entity: user_id\n-- timestamp: ts\n-- owner: t@example.com\n-- known_at: ingested_at\n"
    project.view("cards", header + "-- windows: 1d\nSELECT user_id, count(*) AS n, sum(amount) AS spent "
                 "FROM card_events GROUP BY user_id\n")
    project.view("last_amount", header + "SELECT user_id, ts, ingested_at, amount FROM card_events\n")
    with FeatureStore(project.root, consumer="test") as store:
        store.push("card_events", [{"user_id": 1, "ts": T0 + timedelta(hours=2), "amount": 5.0,
                                    "ingested_at": T0 + timedelta(hours=3)},
                                   {"user_id": 3, "ts": T0 + timedelta(hours=2), "amount": 7.0}])
        arrived = store.push("card_events", [{"user_id": 2, "ts": T0 + timedelta(hours=4), "amount": 1.5}]).arrived
        times = [T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=3, microseconds=1),
                 T0 + timedelta(hours=2, minutes=30), arrived, arrived - timedelta(microseconds=1)]
        spine = pa.table({"user_id": pa.array([1, 1, 3, 2, 2], pa.int64()), "t": pa.array(times, micros)})
        features = ["cards.*", "last_amount.amount"]
        landed = both(project.root, spine, features, spark)
        assert landed.column("n_1d").to_pylist() == [1, 2, 0, 0, 0]
        assert landed.column("amount").to_pylist() == [1.0, 5.0, None, 1.5, 2.0]
        store.compact()
        assert both(project.root, spine, features, spark).to_pylist() == landed.to_pylist()
