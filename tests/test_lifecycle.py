"""What a FeatureStore leaves behind: threads, open files, and writes into the project folder (issue 17)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore

from support import SNAPSHOT, T0, ProjectDir, events_table


@pytest.fixture(autouse=True)
def settled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PostgreSQL at hand (the embedded one is not running for these projects), and no store of an
    earlier test still registered: every featurestore thread seen here is one these tests made."""
    monkeypatch.delenv("FEATURESTORE_POSTGRES_URL", raising=False)
    gc.collect()  # stores earlier tests dropped without close() unregister as they are collected
    yield


def featurestore_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("featurestore") and t.is_alive()]


def tiny_project(folder: Path) -> ProjectDir:
    """featurestore.toml with one Parquet source, `events`, and one snapshot view, `spend`."""
    project = ProjectDir(folder)
    project.parquet("events", events_table())
    project.view("spend", SNAPSHOT)
    return project


def spine() -> pa.Table:
    return pa.table({"user_id": pa.array([0, 1, 2], pa.int64()),
                     "ts": pa.array([T0 + timedelta(hours=h) for h in (3, 4, 5)], pa.timestamp("us", tz="UTC"))})


def open_files_under(folder: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since listed (the listing's own descriptor)
        if target.startswith(str(folder)):
            found.append(target)
    return found


def spooled(root: Path) -> list[list]:
    """The usage rows kept on disk, from every batch file."""
    return [row for path in sorted((root / ".featurestore" / "usage").glob("*.json"))
            for row in json.loads(path.read_text())]


def test_stores_share_one_usage_thread_that_stops_when_the_last_closes(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "proj")
    stores = [FeatureStore(project.root, consumer="t") for _ in range(5)]
    for store in stores:
        store.training_frame(spine(), ["spend.amount"], cache=False)
    assert [t.name for t in featurestore_threads()] == ["featurestore-usage"]
    for store in stores:
        store.close()
    assert featurestore_threads() == []
    # The five stores' reads were counted together and written once, by the first close.
    [row] = spooled(project.root)
    assert row[:7] == ["spend", "amount", stores[0].views["spend"].version, "t", "offline", 5, 15]


def native_threads() -> int:
    """Every thread of this process, DuckDB's workers included (threading.enumerate sees Python's only)."""
    return len(os.listdir("/proc/self/task"))


def build_two_frames_then_remove(folder: Path, *, cache: bool) -> None:
    project = tiny_project(folder)
    before = native_threads()
    with FeatureStore(folder, consumer="t") as store:
        first = store.training_frame(spine(), ["spend.amount"], cache=cache)
        second = store.training_frame(spine(), ["spend.amount"], cache=cache)
        assert [e["fresh"] for e in store.cache_status()] == ([True] if cache else [])  # the second read filled it
    assert first.to_arrow().column("amount").to_pylist() == second.to_arrow().column("amount").to_pylist() \
        == [3.0, 4.0, 5.0]
    assert featurestore_threads() == []
    assert native_threads() == before  # the store's DuckDB went with it
    assert open_files_under(folder) == []
    assert len(spooled(project.root)) == 1  # written by close(), not behind its back
    shutil.rmtree(folder)
    assert not folder.exists()


def test_a_project_folder_can_be_removed_after_the_store_is_closed(tmp_path: Path) -> None:
    build_two_frames_then_remove(tmp_path / "work" / "proj", cache=False)


# The second frame reads the view again, so it fills the cache: inside the call, leaving nothing running.
def test_a_project_folder_can_be_removed_after_cached_frames(tmp_path: Path) -> None:
    build_two_frames_then_remove(tmp_path / "work" / "proj", cache=True)


def test_an_open_store_leaves_the_offline_database_to_other_processes_between_calls(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "proj")
    (project.root / "featurestore.toml").write_text((project.root / "featurestore.toml").read_text()
                                                    + '\n[offline]\ncache = "on_first_read"\n')
    script = ("import sys, duckdb\n"
              "with duckdb.connect(sys.argv[1]) as connection:\n"
              "    connection.execute('CREATE TABLE IF NOT EXISTS written_meanwhile AS SELECT 1 AS x')\n")
    with FeatureStore(project.root, consumer="t") as store:
        first = store.training_frame(spine(), ["spend.amount"])  # fills the cache: the file exists
        database = store.settings.offline_database
        assert database.exists() and open_files_under(database.parent) == []
        subprocess.run([sys.executable, "-c", script, str(database)], check=True, timeout=120)
        second = store.training_frame(spine(), ["spend.amount"])  # from the cache, after the other write
        assert [e["fresh"] for e in store.cache_status()] == [True]
    assert first.to_arrow().column("amount").to_pylist() == second.to_arrow().column("amount").to_pylist() \
        == [3.0, 4.0, 5.0]


def test_usage_without_postgres_is_spooled_at_close_not_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("featurestore.governance.usage.FLUSH_SECONDS", 0.05)
    project = tiny_project(tmp_path / "proj")
    store = FeatureStore(project.root, consumer="t")
    store.training_frame(spine(), ["spend.amount"], cache=False)
    store.training_frame(spine().slice(0, 2), ["spend.amount"], cache=False)
    time.sleep(0.5)  # ten flush intervals
    assert [t.name for t in featurestore_threads()] == ["featurestore-usage"]  # the writer had its chances
    assert not (project.root / ".featurestore" / "usage").exists()
    store.close()
    [row] = spooled(project.root)  # both reads, merged in memory, in one batch
    assert row[:7] == ["spend", "amount", store.views["spend"].version, "t", "offline", 2, 5]
    assert featurestore_threads() == []


def test_counts_of_a_store_never_closed_are_kept_at_exit(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "proj")
    script = ("import sys\n"
              "from featurestore.config import load_settings\n"
              "from featurestore.governance.usage import UsageRecorder\n"
              "UsageRecorder(load_settings(sys.argv[1])).record((('spend', 'amount', 'v1'),), 't', 'offline', 3)\n")
    env = {k: v for k, v in os.environ.items() if k != "FEATURESTORE_POSTGRES_URL"}
    subprocess.run([sys.executable, "-c", script, str(project.root)], cwd=Path(__file__).parents[1], env=env,
                   check=True, timeout=120)
    assert [row[:7] for row in spooled(project.root)] == [["spend", "amount", "v1", "t", "offline", 1, 3]]


def usage_rows(url: str, consumer: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        if not connection.execute("SELECT to_regclass('featurestore_registry.usage') IS NOT NULL").fetchone()[0]:
            return []
        return connection.execute("SELECT view, feature, reads, rows FROM featurestore_registry.usage "
                                  "WHERE consumer = %s", [consumer]).fetchall()


def test_spooled_usage_is_sent_by_the_next_store_that_reaches_postgres(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = f"lifecycle_{uuid.uuid4().hex[:8]}"  # the session's PostgreSQL is shared: only this test's rows
    project = tiny_project(tmp_path / "proj")
    with FeatureStore(project.root, consumer=consumer) as store:
        store.training_frame(spine(), ["spend.amount"], cache=False)
    assert len(spooled(project.root)) == 1
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    with FeatureStore(project.root, consumer=consumer) as store:
        store.training_frame(spine(), ["spend.amount"], cache=False)
    assert spooled(project.root) == []
    assert usage_rows(postgres_url, consumer) == [("spend", "amount", 2, 6)]


def test_the_writer_thread_writes_to_postgres_when_it_is_at_hand(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("featurestore.governance.usage.FLUSH_SECONDS", 0.05)
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    consumer = f"lifecycle_{uuid.uuid4().hex[:8]}"
    project = tiny_project(tmp_path / "proj")
    store = FeatureStore(project.root, consumer=consumer)
    store.training_frame(spine(), ["spend.amount"], cache=False)
    deadline = time.monotonic() + 10
    while not usage_rows(postgres_url, consumer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert usage_rows(postgres_url, consumer) == [("spend", "amount", 1, 3)]  # before close()
    store.close()
    assert usage_rows(postgres_url, consumer) == [("spend", "amount", 1, 3)]  # not twice
    assert not (project.root / ".featurestore" / "usage").exists()
