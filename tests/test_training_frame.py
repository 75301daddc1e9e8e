"""Training frames through the SDK: spine kinds, order, types, errors, snapshots."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, FeatureStoreError
from featurestore.cli.main import main

from support import T0, ProjectDir

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"


@pytest.fixture
def store(project: ProjectDir) -> FeatureStore:
    # events: user_id = i % 3, card_id = i, amount = i, ts = T0 + i hours, for i in 0..5
    project.view("spend", HEADER + "SELECT user_id, ts, amount, card_id, amount > 2 AS big, 'u' || user_id AS label "
                                   "FROM events\n")
    project.view("lagged", HEADER + "-- available_after: 1h\n-- ttl: 2h\nSELECT user_id, ts, amount AS lagged_amount "
                                    "FROM events\n")
    return FeatureStore(project.root)


def spine_rows() -> dict:
    return {"user_id": [2, 0, None, 1, 7, 0], "ts": [T0 + timedelta(hours=h) for h in (5, 3, 3, 0, 9, 4)],
            "target": [1, 0, 1, 0, 1, 0]}


def test_spine_order_columns_and_types(store: FeatureStore) -> None:
    frame = store.training_frame(pl.DataFrame(spine_rows()), ["spend.*", "lagged.lagged_amount"])
    table = frame.to_arrow()
    assert table.column_names == ["user_id", "ts", "target", "amount", "card_id", "big", "label", "lagged_amount"]
    assert table.schema.field("card_id").type == pa.int64()
    assert table.schema.field("big").type == pa.bool_()
    assert table.schema.field("label").type in (pa.string(), pa.large_string())
    assert table.column("card_id").to_pylist() == [5, 3, None, None, None, 3]
    assert table.column("big").to_pylist() == [True, True, None, None, None, True]
    # lag 1h, ttl 2h. User 2 at 5h: the 5h row is known only at 6h, the 2h row is 3h old → NULL.
    # User 0 at 4h: the 3h row is known at exactly 4h (equality counts) and 1h old → 3.0.
    assert table.column("lagged_amount").to_pylist() == [None, None, None, None, None, 3.0]
    assert "ASOF LEFT JOIN" in frame.sql


@pytest.mark.parametrize("kind", ["polars", "pandas", "arrow", "parquet", "sql"])
def test_every_spine_kind_gives_the_same_frame(store: FeatureStore, project: ProjectDir, kind: str) -> None:
    rows = spine_rows()
    expected = store.training_frame(pa.table(rows), ["spend.amount"]).to_arrow().column("amount").to_pylist()
    if kind == "polars":
        spine = pl.DataFrame(rows)
    elif kind == "pandas":
        spine = pd.DataFrame(rows)  # nanosecond timestamps, float keys because of the None: cast below
        spine["user_id"] = spine["user_id"].astype("Int64")
    elif kind == "arrow":
        spine = pa.table(rows)
    elif kind == "parquet":
        spine = str(project.root / "spine.parquet")
        pq.write_table(pa.table(rows), spine)
    else:
        spine = ("SELECT * FROM (VALUES (2, TIMESTAMPTZ '2026-01-01 05:00:00+00', 1),"
                 " (0, TIMESTAMPTZ '2026-01-01 03:00:00+00', 0),"
                 " (NULL, TIMESTAMPTZ '2026-01-01 03:00:00+00', 1), (1, TIMESTAMPTZ '2026-01-01 00:00:00+00', 0),"
                 " (7, TIMESTAMPTZ '2026-01-01 09:00:00+00', 1), (0, TIMESTAMPTZ '2026-01-01 04:00:00+00', 0))"
                 " AS s(user_id, ts, target)")
    assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == expected


def test_sql_spine_reads_sources(store: FeatureStore) -> None:
    frame = store.training_frame("SELECT user_id, ts + INTERVAL 1 HOUR AS ts FROM events ORDER BY card_id",
                                 ["spend.amount"])
    assert frame.to_arrow().column("amount").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_naive_spine_times_are_utc(store: FeatureStore) -> None:
    naive = pl.DataFrame({"user_id": [0, 0], "ts": [datetime(2026, 1, 1, 2, 59, 59), datetime(2026, 1, 1, 3)]})
    assert store.training_frame(naive, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [0.0, 3.0]


def test_pandas_output_keeps_integers_with_nulls(store: FeatureStore) -> None:
    frame = store.training_frame(pl.DataFrame(spine_rows()), ["spend.card_id", "spend.big"]).to_pandas()
    assert str(frame["card_id"].dtype) == "Int64"
    assert str(frame["big"].dtype) == "boolean"
    assert frame["card_id"].isna().tolist() == [False, False, True, True, True, False]


def test_empty_spine_gives_an_empty_frame_with_the_schema(store: FeatureStore) -> None:
    empty = pa.table({"user_id": pa.array([], pa.int64()), "ts": pa.array([], pa.timestamp("us", tz="UTC"))})
    table = store.training_frame(empty, ["spend.*"]).to_arrow()
    assert table.num_rows == 0
    assert table.schema.field("card_id").type == pa.int64() and table.schema.field("big").type == pa.bool_()


def test_null_spine_times_get_null_features(store: FeatureStore) -> None:
    spine = pa.table({"user_id": [0, 0], "ts": pa.array([None, T0 + timedelta(hours=5)], pa.timestamp("us", tz="UTC"))})
    assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [None, 3.0]


@pytest.mark.parametrize(("spine", "features", "kwargs", "message"), [
    ({"id": [1], "ts": [T0]}, ["spend.amount"], {}, "lacks the column 'user_id', the entity key of view 'spend'"),
    ({"user_id": [1], "time": [T0]}, ["spend.amount"], {}, "no timestamp column 'ts'"),
    ({"user_id": [1], "time": [T0]}, ["spend.amount"], {"timestamp": "tme"}, "did you mean 'time'"),
    ({"user_id": ["1"], "ts": [T0]}, ["spend.amount"], {}, "'user_id' is VARCHAR but view 'spend' keys it as BIGINT"),
    ({"user_id": [1], "ts": ["2026-01-01"]}, ["spend.amount"], {}, "has type VARCHAR"),
    ({"user_id": [1], "ts": [T0]}, ["spnd.amount"], {}, "did you mean 'spend'"),
    ({"user_id": [1], "ts": [T0]}, ["spend.amont"], {}, "did you mean 'amount'"),
    ({"user_id": [1], "ts": [T0], "amount": [1.0]}, ["spend.amount"], {}, "full_names=True"),
    ({"user_id": [1], "ts": [T0], "__fs_row": [1]}, ["spend.amount"], {}, "reserved"),
])
def test_bad_input_is_a_clear_error(store: FeatureStore, spine: dict, features: list, kwargs: dict,
                                    message: str) -> None:
    with pytest.raises(FeatureStoreError, match=None) as raised:
        store.training_frame(pa.table(spine), features, **kwargs)
    assert message in str(raised.value)


def test_same_feature_name_in_two_views(store: FeatureStore, project: ProjectDir) -> None:
    project.view("other", HEADER + "SELECT user_id, ts, card_id AS amount FROM events\n")
    store = FeatureStore(project.root)
    with pytest.raises(FeatureStoreError, match=r"'spend\.amount'.*'other\.amount'|'other\.amount'.*'spend\.amount'"):
        store.training_frame(pa.table(spine_rows()), ["spend.amount", "other.amount"])
    frame = store.training_frame(pa.table(spine_rows()), ["spend.amount", "other.amount"], full_names=True)
    assert frame.columns[-2:] == ["spend__amount", "other__amount"]


def test_views_reading_views(store: FeatureStore, project: ProjectDir) -> None:
    project.view("doubled", HEADER + "SELECT user_id, ts, amount * 2 AS doubled FROM spend\n")
    store = FeatureStore(project.root)
    assert store.training_frame(pa.table(spine_rows()), ["doubled.*"]).to_arrow().column("doubled").to_pylist() == \
        [10.0, 6.0, None, None, None, 6.0]


def test_snapshot_round_trip_and_tamper_detection(store: FeatureStore, tmp_path: Path) -> None:
    spine = pl.DataFrame(spine_rows())
    frame = store.training_frame(spine, ["spend.*"])
    again = store.training_frame(spine, ["spend.*"])
    assert frame.content_hash() == again.content_hash()
    folder = frame.save_snapshot(tmp_path / "snap")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == 6 and manifest["view_versions"]["spend"] == store.views["spend"].version
    assert manifest["features"] == ["spend.amount", "spend.card_id", "spend.big", "spend.label"]
    assert {"spine_hash", "created_at", "content_hash", "sql"} <= set(manifest)
    loaded = FeatureStore.load_snapshot(folder)
    assert loaded.to_arrow().equals(frame.to_arrow())
    with pytest.raises(FeatureStoreError, match="immutable"):
        frame.save_snapshot(folder)
    table = pq.read_table(folder / "frame.parquet")
    pq.write_table(table.set_column(3, "amount", pa.array([9.0] * 6)), folder / "frame.parquet")
    with pytest.raises(FeatureStoreError, match="modified after it was saved"):
        FeatureStore.load_snapshot(folder)


def test_frame_cli(store: FeatureStore, project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(pa.table(spine_rows()), project.root / "spine.parquet")
    out = project.root / "frame.parquet"
    code = main(["--project", str(project.root), "frame", "--spine", str(project.root / "spine.parquet"),
                 "--features", "spend.amount,lagged.*", "--out", str(out)])
    assert code == 0
    assert pq.read_table(out).column_names == ["user_id", "ts", "target", "amount", "lagged_amount"]
    capsys.readouterr()
    assert main(["--project", str(project.root), "frame", "--spine", str(project.root / "spine.parquet"),
                 "--features", "spend.nope"]) == 1
    assert "has no feature 'nope'" in capsys.readouterr().err
    for form in ("text", "json"):
        assert main(["--project", str(project.root), "frame", "--spine", str(project.root / "spine.parquet"),
                     "--features", "spend.amount", "--explain", "--format", form, "--consumer", "t"]) == 0
        shown = capsys.readouterr().out
        if form == "json":
            [join] = json.loads(shown)["joins"]
            assert join["view"] == "spend" and join["join"] in ("asof", "ranked", "intervals")
            assert join["join"] in join["estimated_seconds"] or join["bucket"]
        else:
            assert shown.startswith("spend: ") and "estimated" in shown and "-- join spend: " in shown


def test_cache_is_filled_at_the_second_read_and_refreshed_when_sources_change(
        store: FeatureStore, project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    from support import events_table

    spine = pa.table({"user_id": [0], "ts": pa.array([T0 + timedelta(days=1)], pa.timestamp("us", tz="UTC"))})
    assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [3.0]
    assert store.cache_status() == []  # read once: computed inline, nothing cached
    assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [3.0]
    [entry] = store.cache_status()  # read again: cached by that call, before it returned
    assert (entry["view"], entry["version"], entry["rows"], entry["fresh"]) == (
        "spend", store.views["spend"].version, 6, True)
    assert "__fs_until" in store.training_frame(spine, ["spend.amount"]).sql  # joined from the cache
    project.parquet("events", events_table(9))  # the source grows: user 0 now has a row at 6h
    assert store.cache_status()[0]["fresh"] is False
    for _ in range(2):  # the new data's first read is inline, its second refreshes the cache
        assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [6.0]
    assert store.training_frame(spine, ["spend.amount"], cache=False).to_arrow().column("amount").to_pylist() == [6.0]
    assert [(e["rows"], e["fresh"]) for e in store.cache_status()] == [(9, True)]
    code, out, _ = project.run("cache", "status", "--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)[0]["view"] == "spend"
    code, out, _ = project.run("cache", "clear", capsys=capsys)
    assert (code, out.strip()) == (0, "dropped 1 cached view(s)")
    assert store.cache_status() == []
    store.training_frame(spine, ["spend.amount"])  # a cleared view counts as never read
    assert store.cache_status() == []


@pytest.mark.parametrize("setting", ["on_first_read", "off"])
def test_the_cache_setting_says_when_view_rows_are_cached(project: ProjectDir, setting: str) -> None:
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    project.write_config(f'[offline]\ncache = "{setting}"\n')
    store = FeatureStore(project.root)
    spine = pa.table({"user_id": [0], "ts": pa.array([T0 + timedelta(days=1)], pa.timestamp("us", tz="UTC"))})
    for _ in range(3):
        assert store.training_frame(spine, ["spend.amount"]).to_arrow().column("amount").to_pylist() == [3.0]
        assert [e["fresh"] for e in store.cache_status()] == ([True] if setting == "on_first_read" else [])


def test_an_unknown_cache_setting_names_the_choices(project: ProjectDir) -> None:
    project.write_config('[offline]\ncache = "always"\n')
    with pytest.raises(FeatureStoreError, match=r"offline\.cache: 'always' is not a choice"):
        FeatureStore(project.root)


def test_cache_follows_duckdb_and_postgres_sources(project: ProjectDir, postgres_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb
    import psycopg

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS public.tiers")
        connection.execute("CREATE TABLE public.tiers (user_id bigint, since timestamptz, tier text)")
        connection.execute("INSERT INTO public.tiers VALUES (1, '2026-01-01', 'gold')")
    database = project.root / ".featurestore" / "offline.duckdb"
    database.parent.mkdir(exist_ok=True)
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE TABLE limits AS SELECT 1::BIGINT AS user_id, TIMESTAMPTZ '2026-01-01' AS since, "
                           "10 AS cap")
    project.sources.update({"tiers": '{ postgres = "public.tiers" }', "limits": '{ duckdb = "limits" }'})
    project.write_config()
    project.view("tier", HEADER.replace("ts", "since") + "SELECT user_id, since, tier FROM tiers\n")
    project.view("cap", HEADER.replace("ts", "since") + "SELECT user_id, since, cap FROM limits\n")
    store = FeatureStore(project.root)
    spine = pa.table({"user_id": [1], "ts": pa.array([T0 + timedelta(days=1)], pa.timestamp("us", tz="UTC"))})
    for _ in range(2):  # the second read fills the cache
        assert store.training_frame(spine, ["tier.tier", "cap.cap"]).to_arrow().to_pylist()[0] | {"ts": None} == \
            {"user_id": 1, "ts": None, "tier": "gold", "cap": 10}
    assert {e["view"]: e["fresh"] for e in store.cache_status()} == {"cap": True, "tier": True}
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE public.tiers SET tier = 'platinum'")
    with duckdb.connect(str(database)) as connection:
        connection.execute("UPDATE limits SET cap = 20")
    assert {e["view"]: e["fresh"] for e in store.cache_status()} == {"cap": False, "tier": False}
    row = store.training_frame(spine, ["tier.tier", "cap.cap"]).to_arrow().to_pylist()[0]
    assert (row["tier"], row["cap"]) == ("platinum", 20)


def test_concurrent_frames_wait_for_each_other(store: FeatureStore, project: ProjectDir) -> None:
    import subprocess
    import sys

    script = ("import sys, pyarrow as pa, datetime as dt; from featurestore import FeatureStore\n"
              "s = FeatureStore(sys.argv[1])\n"
              "spine = pa.table({'user_id': [0, 1, 2] * 200, "
              "'ts': [dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)] * 600})\n"
              "for _ in range(5):\n"
              "    print(sum(v or 0 for v in s.training_frame(spine, ['spend.amount'])"
              ".to_arrow().column('amount').to_pylist()))\n")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(project.root)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err for _, err in results]
    assert all(out.split() == ["2400.0"] * 5 for out, _ in results)


@pytest.mark.parametrize("cache", [True, False])
def test_duplicate_rows_without_tie_break_are_a_data_error(project: ProjectDir, cache: bool) -> None:
    project.view("dup", HEADER + "SELECT user_id, TIMESTAMPTZ '2026-01-01' AS ts, amount FROM events\n")
    store = FeatureStore(project.root)
    when = pa.array([T0 + timedelta(days=3)] * 2, pa.timestamp("us", tz="UTC"))
    # A frame refuses a value that would come from one of the tied rows...
    with pytest.raises(FeatureStoreError, match=r"view 'dup' has several rows with user_id=0 and ts=2026-01-01.*"
                                                r"`-- created: <column>` in dup.sql"):
        store.training_frame(pa.table({"user_id": [9, 0], "ts": when}), ["dup.amount"], cache=cache)
    # ...and builds frames the ties do not touch; the cache, which serves every spine, refuses them all.
    with pytest.warns(RuntimeWarning, match="could not update the cache: view 'dup' has several rows") if cache \
            else contextlib.nullcontext():
        for _ in range(2):  # the second read tries to cache the view
            frame = store.training_frame(pa.table({"user_id": [9, 9], "ts": when}), ["dup.amount"], cache=cache)
    assert frame.to_arrow().column("amount").to_pylist() == [None, None]
    assert store.cache_status() == []
    project.view("dup", HEADER + "-- created: card_id\n"
                                 "SELECT user_id, TIMESTAMPTZ '2026-01-01' AS ts, amount, card_id FROM events\n")
    store = FeatureStore(project.root)
    spine = pa.table({"user_id": [0], "ts": pa.array([T0 + timedelta(days=3)], pa.timestamp("us", tz="UTC"))})
    assert store.training_frame(spine, ["dup.amount"], cache=cache).to_arrow().column("amount").to_pylist() == [3.0]
    # (user 0 has cards 0 and 3 at that instant: the greatest `created` wins)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_sources_of_any_time_precision(project: ProjectDir, unit: str) -> None:
    times = pa.array([T0 + timedelta(hours=1, microseconds=1)], pa.timestamp("us", tz="UTC"))
    if unit == "ns":  # pandas' default: 1 h + 1 µs + 1 ns
        times = pa.array([int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 10**9) + 3_600_000_001_001],
                         pa.timestamp("ns", tz="UTC"))
    else:
        times = times.cast(pa.timestamp(unit, tz="UTC"), safe=False)
    project.parquet("precise", pa.table({"user_id": [1], "ts": times, "value": [42]}))
    project.view("precise_view", HEADER + "SELECT user_id, ts, value FROM precise\n")
    store = FeatureStore(project.root)
    hour = T0 + timedelta(hours=1)
    spine = pa.table({"user_id": [1, 1, 1],
                      "ts": pa.array([hour, hour + timedelta(microseconds=1), hour + timedelta(microseconds=2)],
                                     pa.timestamp("us", tz="UTC"))})
    expected = {"s": [42, 42, 42], "ms": [42, 42, 42], "us": [None, 42, 42], "ns": [None, None, 42]}[unit]
    assert store.training_frame(spine, ["precise_view.value"]).to_arrow().column("value").to_pylist() == expected


def test_unknown_engine_and_missing_pyspark_say_what_to_do(store: FeatureStore, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    with pytest.raises(FeatureStoreError, match="unknown engine 'sprak'; choose one of duckdb, spark"):
        store.training_frame(pa.table(spine_rows()), ["spend.amount"], engine="sprak")
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if the extra were not installed
    with pytest.raises(FeatureStoreError, match=r"engine 'spark' needs PySpark, which is not installed; "
                                                r"pip install 'featurestore\[spark\]'"):
        store.training_frame(pa.table(spine_rows()), ["spend.amount"], engine="spark")
    code = main(["frame", "--project", str(store.settings.root), "--spine", "SELECT user_id, ts FROM events",
                 "--features", "spend.amount", "--spark-master", "local[1]", "--consumer", "test"])
    assert code == 1 and "--spark-master applies only with --engine spark" in capsys.readouterr().err
