"""The snapshot benchmarks' data: generated events and a spine, and a project with one snapshot view.

    from snapshot_data import ensure_data, make_case

    case = make_case(Path("/tmp/featurestore-bench"), rows=200_000, spine=20_000, features=10)
    ensure_data(case, log)      # generated once per size, seed and generator version; reused after
    case.events, case.spine_path, case.project   # Parquet events, Parquet spine, the project

One snapshot view (`snap`: user_id, ts, f0..f{n-1}, TTL 7 days) over a generated Parquet file of
events in time order with unique times (user activity log-normally skewed, 5% NULL features), and
a generated Parquet spine in random order (mostly known users at random times, plus the edge cases
of the contract: exactly at an event, exactly TTL after one, unknown users, a NULL key).
Used by training_frame.py, cache_refresh.py, online.py, serve.py and spark.py.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness import duck, sql_literal

SEED = 20240601
GENERATOR_VERSION = 5  # bump when the generated data changes, so cached files are rebuilt
TTL_DAYS = 7
EVENTS_PER_USER = 40
SPAN_DAYS = 180
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400_000_000
ROW_GROUP = 131_072


@dataclass(frozen=True)
class Case:
    """One benchmark size, and where its files live."""

    rows: int
    spine: int
    features: int
    folder: Path

    @property
    def project(self) -> Path:
        return self.folder / "project"

    @property
    def events(self) -> Path:
        return self.project / "data" / "events.parquet"

    @property
    def spine_path(self) -> Path:
        return self.folder / "spine.parquet"

    @property
    def feature_names(self) -> list[str]:
        return [f"f{i}" for i in range(self.features)]


def make_case(workdir: Path, rows: int, spine: int, features: int) -> Case:
    return Case(rows, spine, features, workdir / f"rows{rows}_spine{spine}_features{features}")


def ensure_data(case: Case, log: Callable[[str], None]) -> float:
    """Generate the case's files unless an identical generation is already on disk; returns seconds spent."""
    meta = {"generator": GENERATOR_VERSION, "seed": SEED, "rows": case.rows, "spine": case.spine,
            "features": case.features, "ttl_days": TTL_DAYS}
    stamp = case.folder / "generated.json"
    fresh = stamp.is_file() and json.loads(stamp.read_text()) == meta
    if fresh and case.events.is_file() and case.spine_path.is_file():
        write_project(case)
        return 0.0
    log(f"generating {case.rows:,} events and {case.spine:,} spine rows in {case.folder}")
    started = time.perf_counter()
    if case.folder.exists():
        shutil.rmtree(case.folder)
    case.events.parent.mkdir(parents=True)
    write_project(case)
    users, user_id, ts = _write_events(case)
    _write_spine(case, users, user_id, ts)
    stamp.write_text(json.dumps(meta) + "\n")
    return time.perf_counter() - started


def write_project(case: Case) -> None:
    (case.project / "definitions").mkdir(parents=True, exist_ok=True)
    (case.project / "featurestore.toml").write_text(
        'definitions = "definitions"\n\n[sources]\nevents = "data/events.parquet"\n')
    (case.project / "definitions" / "snap.sql").write_text(
        "-- entity: user_id\n-- timestamp: ts\n-- owner: bench@example.com\n"
        f"-- description: benchmark snapshot view\n-- ttl: {TTL_DAYS}d\n"
        f"SELECT user_id, ts, {', '.join(case.feature_names)} FROM events\n")


def _write_events(case: Case) -> tuple[int, np.ndarray, np.ndarray]:
    """Events in time order with unique times (so unique (user_id, ts)); user activity is log-normally skewed."""
    rng = np.random.default_rng(SEED)
    users = max(case.rows // EVENTS_PER_USER, 1)
    weights = rng.lognormal(0.0, 0.8, users)
    weights /= weights.sum()
    ts = np.sort(START_US + rng.integers(0, SPAN_DAYS * DAY_US, case.rows, dtype=np.int64))
    # Strictly increasing: a repeated instant moves up by a microsecond or so (the span dwarfs the row count).
    steps = np.arange(case.rows, dtype=np.int64)
    ts = np.maximum.accumulate(ts - steps) + steps
    user_id = rng.choice(np.arange(1, users + 1, dtype=np.int64), size=case.rows, p=weights)

    schema = pa.schema([("user_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")),
                        *[(name, pa.float64()) for name in case.feature_names]])
    # Random doubles do not dictionary-encode; trying costs more than the rest of the generation.
    with pq.ParquetWriter(case.events, schema, use_dictionary=["user_id"]) as writer:
        for start in range(0, case.rows, ROW_GROUP):
            stop = min(start + ROW_GROUP, case.rows)
            n = stop - start
            values = rng.standard_normal((case.features, n))
            missing = rng.integers(0, 20, (case.features, n), dtype=np.uint8) == 0  # 5% NULLs
            columns = [pa.array(user_id[start:stop]), pa.array(ts[start:stop], type=pa.timestamp("us", tz="UTC"))]
            columns += [pa.array(values[i], mask=missing[i]) for i in range(case.features)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=ROW_GROUP)
    return users, user_id, ts


def _write_spine(case: Case, users: int, ev_user: np.ndarray, ev_ts: np.ndarray) -> None:
    """Spine rows in random order: mostly known users at random times, plus the edge cases of the contract."""
    rng = np.random.default_rng(SEED + 1)
    n = case.spine
    user_id = rng.integers(1, users + 1, n, dtype=np.int64)
    ts = START_US + rng.integers(0, (SPAN_DAYS + TTL_DAYS) * DAY_US, n, dtype=np.int64)
    kind = rng.random(n)
    picked = rng.integers(0, len(ev_ts), n)
    exact = kind < 0.15                       # exactly at an event's time: the event is known (<=)
    at_ttl = (kind >= 0.15) & (kind < 0.20)   # exactly TTL after an event: still within TTL
    unknown = (kind >= 0.20) & (kind < 0.24)  # users with no events at all
    user_id[exact | at_ttl] = ev_user[picked[exact | at_ttl]]
    ts[exact] = ev_ts[picked[exact]]
    ts[at_ttl] = ev_ts[picked[at_ttl]] + TTL_DAYS * DAY_US
    user_id[unknown] = users + 1 + rng.integers(0, users, int(unknown.sum()))
    null_key = (kind >= 0.24) & (kind < 0.241)  # a NULL key matches nothing
    table = pa.table({
        "user_id": pa.array(user_id, mask=null_key),
        "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.integers(0, 2, n, dtype=np.int64)),
    })
    pq.write_table(table, case.spine_path, row_group_size=ROW_GROUP)


def last_event(case: Case) -> datetime:
    """The time of the case's latest event."""
    with duck() as connection:
        query = f"SELECT epoch_us(max(ts)) FROM read_parquet({sql_literal(case.events)})"
        micros = connection.execute(query).fetchone()[0]
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
