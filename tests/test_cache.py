"""The cache of view rows: incremental refresh when a file source only gains files.

After every refresh the cached rows must equal a rebuild from scratch, and frames from the
cache must equal frames computed without it.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore

from support import T0, ProjectDir

EXAMPLES = max(10, int(os.environ.get("FEATURESTORE_EXAMPLES", "1000")) // 50)
FIRST_READ = '[offline]\ncache = "on_first_read"\n'  # every frame brings the cache up to date first
HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"
ROWS = st.fixed_dictionaries({
    "user_id": st.integers(0, 3),
    "ts": st.builds(lambda i: T0 + timedelta(minutes=30 * i), st.integers(0, 12)),
    "amount": st.one_of(st.none(), st.integers(-5, 5).map(float)),
})


@st.composite
def batches(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Files of rows; `created` is unique and in random order, so a later file may lose a tie."""
    files = draw(st.lists(st.lists(ROWS, min_size=1, max_size=8), min_size=2, max_size=4))
    order = iter(draw(st.permutations(range(sum(map(len, files))))))
    return [[row | {"created": next(order)} for row in rows] for rows in files]


def write_part(root: Path, number: int, rows: list[dict[str, Any]]) -> None:
    table = pa.table({
        "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
        "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
        "created": pa.array([r["created"] for r in rows], pa.int64()),
        "amount": pa.array([r["amount"] for r in rows], pa.float64()),
    })
    pq.write_table(table, root / "data" / "events" / f"part-{number:03}.parquet")


def partitioned_project(root: Path, view: str) -> ProjectDir:
    project = ProjectDir(root)
    (root / "data" / "events").mkdir(parents=True)
    project.sources["events"] = '"data/events/*.parquet"'
    project.write_config(FIRST_READ)
    project.view("snap", HEADER + view)
    return project


def cached_rows(store: FeatureStore) -> list[dict[str, Any]]:
    import duckdb

    view = store.views["snap"]
    with duckdb.connect(str(store.settings.offline_database), read_only=True) as connection:
        table = connection.sql('SELECT * REPLACE (__fs_until::VARCHAR AS __fs_until) '
                               f'FROM featurestore_cache."snap__{view.version}" ORDER BY ALL').to_arrow_table()
    return table.to_pylist()


def one_spine_row(user_id: int, at: Any) -> pa.Table:
    return pa.table({"user_id": [user_id], "ts": pa.array([at], pa.timestamp("us", tz="UTC"))})


def frames_agree(store: FeatureStore, spine: pa.Table) -> list[dict[str, Any]]:
    """The frame from the cache (or computed inline) equals the frame computed without any cache."""
    cached = store.training_frame(spine, ["snap.*"]).to_arrow().to_pylist()
    assert cached == store.training_frame(spine, ["snap.*"], cache=False).to_arrow().to_pylist()
    return cached


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.lists(st.tuples(st.integers(0, 4), st.integers(0, 16)), max_size=8))
def test_appended_files_refresh_the_cache_as_a_rebuild_would(batches: list[list[dict]], spine_rows: list) -> None:
    spine = pa.table({"user_id": pa.array([u for u, _ in spine_rows], pa.int64()),
                      "ts": pa.array([T0 + timedelta(minutes=20 * i) for _, i in spine_rows],
                                     pa.timestamp("us", tz="UTC"))})
    with tempfile.TemporaryDirectory() as folder:
        project = partitioned_project(Path(folder), "-- created: created\n-- available_after: 30m\n-- ttl: 3h\n"
                                                    "SELECT user_id, ts, created, amount FROM events\n")
        write_part(project.root, 0, batches[0])
        store = FeatureStore(project.root)
        frames_agree(store, spine)
        for number, batch in enumerate(batches[1:], start=1):  # new files; late rows and ties with old ones too
            write_part(project.root, number, batch)
            frames_agree(store, spine)  # stale: refreshed, then joined from the cache
            [entry] = store.cache_status()
            assert (entry["fresh"], entry["refresh"]) == (True, "incremental")
            assert entry["read_rows"] <= len(batch)  # the new file's rows, not the history
            frames_agree(store, spine)  # from the refreshed cache
        incremental = cached_rows(store)
        store.clear_cache()
        frames_agree(store, spine)
        assert store.cache_status()[0]["refresh"] == "full"
        assert cached_rows(store) == incremental


def test_views_that_combine_rows_are_rebuilt(tmp_path: Path) -> None:
    # lag() reads earlier rows: a new file changes the value of old keys' next rows, so only a rebuild is right.
    project = partitioned_project(tmp_path / "lagged", "SELECT user_id, ts, amount - lag(amount) OVER "
                                                       "(PARTITION BY user_id ORDER BY ts) AS change FROM events\n")
    rows = [{"user_id": 1, "ts": T0 + timedelta(hours=h), "created": None, "amount": float(h)} for h in (0, 2)]
    write_part(project.root, 0, rows[:1])
    store = FeatureStore(project.root)
    spine = one_spine_row(1, T0 + timedelta(hours=3))
    assert [r["change"] for r in frames_agree(store, spine)] == [None]
    write_part(project.root, 1, rows[1:])
    frames_agree(store, spine)
    assert store.cache_status()[0]["refresh"] == "full"
    assert [r["change"] for r in frames_agree(store, spine)] == [2.0]


def test_a_changed_file_means_a_rebuild(tmp_path: Path) -> None:
    project = partitioned_project(tmp_path / "p", "SELECT user_id, ts, amount FROM events\n")
    row = {"user_id": 1, "ts": T0, "created": None, "amount": 1.0}
    write_part(project.root, 0, [row])
    store = FeatureStore(project.root)
    spine = one_spine_row(1, T0 + timedelta(hours=1))
    frames_agree(store, spine)
    write_part(project.root, 0, [row | {"amount": 7.0}])  # rewritten in place
    write_part(project.root, 1, [row | {"user_id": 2}])
    assert [r["amount"] for r in frames_agree(store, spine)] == [7.0]
    assert store.cache_status()[0]["refresh"] == "full"
    assert [r["amount"] for r in frames_agree(store, spine)] == [7.0]


def test_a_tie_across_files_without_created_is_refused(tmp_path: Path) -> None:
    project = partitioned_project(tmp_path / "p", "SELECT user_id, ts, amount FROM events\n")
    row = {"user_id": 1, "ts": T0, "created": None, "amount": 1.0}
    write_part(project.root, 0, [row])
    store = FeatureStore(project.root)
    spine = one_spine_row(2, T0 + timedelta(hours=1))
    frames_agree(store, spine)
    write_part(project.root, 1, [row | {"amount": 2.0}])  # the same (user_id, ts) again
    with pytest.warns(RuntimeWarning, match="could not update the cache: view 'snap' has several rows with "
                                            "user_id=1"):
        frames_agree(store, spine)
    assert store.cache_status()[0]["fresh"] is False  # the old entry stays, marked stale
