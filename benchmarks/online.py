"""Online store benchmark: materialization and lookups against hand-written PostgreSQL floors, in one run.

    python benchmarks/online.py                          # 4M events (~100k users), 10 features, 3 rounds
    python benchmarks/online.py --rows 200000 --repeat 2 --lookups 500
    python benchmarks/online.py --format json > result.json

The events of `snapshot_data.py` (same generator, seed and `--workdir`) feed one
snapshot view, `snap` (user_id, ts, f0..f9, TTL 7 days). Three things are measured,
each against what a careful engineer would write by hand, on the same PostgreSQL
server, in the same process:

1. Full materialization (every user's latest row, into a fresh online table) against
   a DuckDB latest-row query written to CSV and loaded with a raw COPY into a fresh
   table keyed the same way. Both tables must hold the same rows.
2. An incremental run after the source (a glob of files) gains a file with the last 1%
   of the events, against a full materialization of the same data. Both must leave the
   same online table.
3. Lookup latency of `store.online(...)` for 1 and 100 entities against a prepared
   `SELECT ... WHERE user_id = ANY(%s)` on one open psycopg connection. Both must agree
   (the floor's rows with the view's TTL applied).

Times are medians of `--repeat` interleaved rounds; latencies are percentiles of
`--lookups` calls each, the two contenders alternating call by call. A difference in
results stops the run (exit status 1). It drops and recreates the schemas
`featurestore_online` and `bench_floor` of the server it uses: the embedded one of its
own projects, or FEATURESTORE_POSTGRES_URL when set (point that at a scratch database).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    changed_during_run,
    command,
    duck,
    emit,
    header,
    machine,
    mark,
    medians,
    page_in,
    percentiles,
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
from services import server_url
from snapshot_data import ROW_GROUP, TTL_DAYS, Case, ensure_data, last_event, make_case

FEATURES = 10
NEW_SHARE = 0.01            # the share of events (the latest) that arrives as a new file
FULL_TARGET = 0.5           # ours rows/s >= 0.5x the floor's
INCREMENTAL_TARGET = 0.05   # incremental run < 5% of a full run's time
LOOKUP_P99_TARGET = {1: 1.3, 100: 1.2}  # per lookup size: ours p99 <= this times the floor's
LOOKUP_SIZES = (1, 100)
WARMUP_LOOKUPS = 200
CHECK_EVERY = 10            # every 10th timed lookup of each contender is also checked (outside the timer)
ONLINE_SCHEMA = "featurestore_online"
FLOOR_SCHEMA = "bench_floor"
FLOOR_TABLE = "snap_latest"


# --------------------------------------------------------------------------- projects


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_project(folder: Path, case: Case, events: str) -> Path:
    """A project with the benchmark's `snap` view (the same definition as snapshot_data.py's) over `events`."""
    (folder / "definitions").mkdir(parents=True, exist_ok=True)
    (folder / "featurestore.toml").write_text(
        f'definitions = "definitions"\n\n[sources]\nevents = {_toml_string(events)}\n')
    (folder / "definitions" / "snap.sql").write_text((case.project / "definitions" / "snap.sql").read_text())
    return folder


@dataclass(frozen=True)
class Split:
    """The events as files: the first 99% (in time order) in the project, the last 1% held back."""

    project: Path
    pending: Path            # the held-back file, outside the project's glob
    landed: Path             # where it lands: data/events/part-001.parquet
    history_rows: int
    new_rows: int
    history_until: datetime  # the time of the last row of the first file
    until: datetime          # after the last event


def build_split(case: Case, folder: Path, log: Callable[[str], None]) -> Split:
    """Write the two files once per generation (reused while the events file is unchanged)."""
    import pyarrow.parquet as pq

    project = folder / "files"
    events_dir = project / "data" / "events"
    pending = folder / "pending" / "part-001.parquet"
    first = events_dir / "part-000.parquet"
    stamp = folder / "split.json"
    source = case.events.stat()
    meta = {"events": str(case.events), "size": source.st_size, "mtime_ns": source.st_mtime_ns, "share": NEW_SHARE,
            "rows": case.rows}
    write_project(project, case, "data/events/*.parquet")
    if not (stamp.is_file() and json.loads(stamp.read_text()).get("meta") == meta and first.is_file()
            and pending.is_file()):
        log(f"splitting the events into {1 - NEW_SHARE:.0%} (part-000) and {NEW_SHARE:.0%} (part-001) in {folder}")
        shutil.rmtree(events_dir, ignore_errors=True)
        shutil.rmtree(pending.parent, ignore_errors=True)
        events_dir.mkdir(parents=True)
        pending.parent.mkdir(parents=True)
        table = pq.read_table(case.events)  # in time order, unique times
        history = table.num_rows - max(int(table.num_rows * NEW_SHARE), 1)
        for path, part in ((first, table.slice(0, history)), (pending, table.slice(history))):
            pq.write_table(part, path, row_group_size=ROW_GROUP, use_dictionary=["user_id"])
        ts = table.column("ts")
        info = {"history_rows": history, "new_rows": table.num_rows - history,
                "history_until": ts[history - 1].as_py().isoformat(),
                "last": ts[table.num_rows - 1].as_py().isoformat()}
        del table, ts
        stamp.write_text(json.dumps({"meta": meta, "info": info}) + "\n")
    info = json.loads(stamp.read_text())["info"]
    return Split(project, pending, events_dir / "part-001.parquet", info["history_rows"], info["new_rows"],
                 datetime.fromisoformat(info["history_until"]),
                 datetime.fromisoformat(info["last"]) + timedelta(seconds=1))


# --------------------------------------------------------------------------- PostgreSQL helpers


def execute(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def drop_online(url: str) -> None:
    """Forget every materialization: the next run is a backfill."""
    execute(url, f"DROP SCHEMA IF EXISTS {ONLINE_SCHEMA} CASCADE")


def checksum(url: str, table: str, ts: str) -> tuple[int, str]:
    """Row count and an order-independent sum of row hashes, over the same columns in both tables."""
    import psycopg

    columns = ", ".join(["user_id", ts, *(f"f{i}" for i in range(FEATURES))])
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        count, total = connection.execute(
            f"SELECT count(*), sum(hashtextextended(row({columns})::text, 0))::text FROM {table}").fetchone()
    return int(count), str(total)


def online_table(store: Any) -> str:
    return f'{ONLINE_SCHEMA}."snap__{store.views["snap"].version}"'


# --------------------------------------------------------------------------- 1. full materialization


def floor_materialize(case: Case, url: str, csv_path: Path) -> int:
    """The hand-written floor: DuckDB's latest row per user to CSV, COPY into a fresh table, then the key.

    It may assume what the data guarantees: every event is known by the run's instant (so no time
    filter), unique (user_id, ts), microsecond UTC times.
    """
    import psycopg

    features = ", ".join(f"f{i}" for i in range(FEATURES))
    with duck() as connection:
        connection.execute(f"COPY (SELECT user_id, ts, {features} FROM read_parquet({sql_literal(case.events)}) "
                           "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1) "
                           f"TO {sql_literal(csv_path)} (FORMAT csv, HEADER false)")
    columns = ", ".join(f"f{i} double precision" for i in range(FEATURES))
    table = f"{FLOOR_SCHEMA}.{FLOOR_TABLE}"
    with psycopg.connect(url) as connection, connection.transaction():
        cursor = connection.cursor()
        cursor.execute(f"CREATE TABLE {table} (user_id bigint, ts timestamptz, {columns})")
        with cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy, open(csv_path, "rb") as data:
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        loaded = cursor.rowcount
        cursor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (user_id)")
    csv_path.unlink(missing_ok=True)
    return loaded


def floor_incremental_table(url: str, ours: str) -> str:
    """A copy of our online table after the history backfill (same shape, key and fillfactor), untimed."""
    table = f"{FLOOR_SCHEMA}.{FLOOR_TABLE}_inc"
    execute(url, f"CREATE TABLE {table} (LIKE {ours} INCLUDING ALL) WITH (fillfactor = 70); "
                 f"INSERT INTO {table} SELECT * FROM {ours}")
    execute(url, f"VACUUM ANALYZE {table}")
    return table


def floor_incremental(url: str, table: str, new_file: Path, csv_path: Path) -> int:
    """The hand-written incremental floor: the new file's latest row per user, COPY, upsert on newer time.

    It may assume what the data guarantees: only the new file holds rows the table lacks, every
    one known by the run's instant, unique (user_id, ts).
    """
    import psycopg

    features = [f"f{i}" for i in range(FEATURES)]
    with duck() as connection:
        connection.execute(f"COPY (SELECT user_id, ts, {', '.join(features)} "
                           f"FROM read_parquet({sql_literal(new_file)}) "
                           "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1) "
                           f"TO {sql_literal(csv_path)} (FORMAT csv, HEADER false)")
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in ["__fs_ts", *features])
    with psycopg.connect(url) as connection, connection.transaction():
        cursor = connection.cursor()
        cursor.execute(f"CREATE TEMP TABLE staging (LIKE {table}) ON COMMIT DROP")
        with cursor.copy("COPY staging FROM STDIN (FORMAT csv)") as copy, open(csv_path, "rb") as data:
            while chunk := data.read(1 << 20):
                copy.write(chunk)
        cursor.execute(f"INSERT INTO {table} AS t SELECT * FROM staging ON CONFLICT (user_id) DO UPDATE SET "
                       f"{updates} WHERE EXCLUDED.__fs_ts > t.__fs_ts")
        written = cursor.rowcount
    csv_path.unlink(missing_ok=True)
    return written


def reset_floor(url: str) -> None:
    execute(url, f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE; CREATE SCHEMA {FLOOR_SCHEMA}")


def check_against_source(case: Case, url: str, table: str, until: datetime) -> list[str]:
    """Every online row against DuckDB's latest rows read straight from Parquet (no CSV in between).

    Times are compared as epoch microseconds (exact on both sides; DuckDB's Python times need pytz).
    """
    import psycopg

    features = ", ".join(f"f{i}" for i in range(FEATURES))
    with duck() as connection:
        expected = connection.execute(
            f"SELECT user_id, epoch_us(ts), {features} FROM read_parquet({sql_literal(case.events)}) "
            f"WHERE ts <= '{until.isoformat()}'::TIMESTAMPTZ "
            "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1 ORDER BY user_id").fetchall()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        got = connection.execute(f"SELECT user_id, (extract(epoch FROM __fs_ts) * 1000000)::bigint, {features} "
                                 f"FROM {table} ORDER BY user_id").fetchall()
    if len(got) != len(expected):
        return [f"online table has {len(got):,} rows, the source's latest rows are {len(expected):,}"]
    differ = [(g, e) for g, e in zip(got, expected) if tuple(g) != tuple(e)]
    return [f"{len(differ):,} online rows differ from the source's latest rows, e.g. ours {differ[0][0]!r}, "
            f"source {differ[0][1]!r}"] if differ else []


# --------------------------------------------------------------------------- 3. lookups


def expected_lookup(ids: list[int], rows: list[tuple], at: datetime) -> list[tuple]:
    """What a lookup at `at` must return, from the floor's raw rows: request order, the TTL applied."""
    ttl = timedelta(days=TTL_DAYS)
    by_id = {row[0]: row for row in rows}
    empty = (None,) * FEATURES
    out = []
    for key in ids:
        row = by_id.get(key)
        out.append((key, *(row[2:] if row is not None and at - row[1] <= ttl else empty)))
    return out


def run_lookups(store: Any, url: str, table: str, at: datetime, user_ids: list[int], lookups: int, blocks: int,
                seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Latency percentiles of both contenders per lookup size, over all timed calls and per block of
    consecutive calls (`blocks` of them: how much the p99 moves within the run)."""
    import psycopg

    features = ["snap.*"]
    statement = f"SELECT * FROM {table} WHERE user_id = ANY(%s)"
    rng = np.random.default_rng(seed)
    pool = np.asarray(user_ids, dtype=np.int64)
    results: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as floor:
        checked = 0

        def check(ids: list[int], ours: Any, rows: list[tuple]) -> None:
            nonlocal checked
            got, want = ours.rows(), expected_lookup(ids, rows, at)
            if got != want or ours.columns != ["user_id", *(f"f{i}" for i in range(FEATURES))]:
                bad = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), None)
                raise SystemExit("RESULTS DIFFER, benchmark aborted: store.online() and the floor disagree for "
                                 f"{len(ids)} entities (columns {ours.columns}; first difference at {bad}: "
                                 f"ours {got[bad] if bad is not None else got!r}, "
                                 f"floor {want[bad] if bad is not None else want!r})")
            checked += 1

        for size in LOOKUP_SIZES:
            batches = [[int(x) for x in rng.choice(pool, size, replace=False)] for _ in range(WARMUP_LOOKUPS + lookups)]
            for ids in batches[:WARMUP_LOOKUPS]:  # planning, imports, prepared statements, pool: outside the timers
                check(ids, store.online({"user_id": ids}, features, at=at),
                      floor.execute(statement, [ids], prepare=True).fetchall())
            ours_ns, floor_ns = [], []
            gc.collect()
            for number, ids in enumerate(batches[WARMUP_LOOKUPS:]):
                for who in rotated(("ours", "floor"), number):
                    if who == "ours":
                        started = time.perf_counter_ns()
                        frame = store.online({"user_id": ids}, features, at=at)
                        ours_ns.append(time.perf_counter_ns() - started)
                    else:
                        started = time.perf_counter_ns()
                        rows = floor.execute(statement, [ids], prepare=True).fetchall()
                        floor_ns.append(time.perf_counter_ns() - started)
                if number % CHECK_EVERY == 0:
                    check(ids, frame, rows)
            ours_us, floor_us = np.array(ours_ns) / 1000, np.array(floor_ns) / 1000
            results[str(size)] = {"calls": lookups, "ours_us": percentiles(ours_us), "floor_us": percentiles(floor_us),
                                  "p99_blocks_us": {who: [float(np.percentile(part, 99))
                                                          for part in np.array_split(us, blocks)]
                                                    for who, us in (("ours", ours_us), ("floor", floor_us))}}
            r = results[str(size)]
            r["ratio"] = {p: r["ours_us"][p] / r["floor_us"][p] for p in ("p50", "p99")}
            r["target_p99"] = verdict(r["ratio"]["p99"], LOOKUP_P99_TARGET[size])
            log(f"lookups of {size} entit{'y' if size == 1 else 'ies'}: ours p50 {r['ours_us']['p50']:.0f}us "
                f"p99 {r['ours_us']['p99']:.0f}us, floor p50 {r['floor_us']['p50']:.0f}us "
                f"p99 {r['floor_us']['p99']:.0f}us")
        results["checked_calls"] = checked
    return results


# --------------------------------------------------------------------------- the run


@dataclass
class Result:
    case: Case
    events_until: datetime
    full: dict[str, list[float]] = field(default_factory=lambda: {"ours": [], "floor": []})
    users: int = 0
    incremental: dict[str, list[float]] = field(default_factory=lambda: {"history_backfill": [], "incremental": [],
                                                                         "floor": [], "full": []})
    incremental_runs: list[dict[str, Any]] = field(default_factory=list)
    split: Split | None = None
    lookups: dict[str, Any] = field(default_factory=dict)
    server_version: str = ""
    checks: list[str] = field(default_factory=list)


def _expect(runs: list[Any], mode: str, what: str) -> Any:
    if len(runs) != 1 or runs[0].mode != mode:
        raise SystemExit(f"{what}: expected one '{mode}' run of view snap, featurestore did {runs!r}")
    return runs[0]


def run(case: Case, workdir: Path, repeat: int, lookups: int, log: Callable[[str], None]) -> Result:
    from featurestore import FeatureStore

    ensure_data(case, log)
    folder = workdir / f"online_rows{case.rows}_features{case.features}"
    full_project = write_project(folder / "full", case, str(case.events))
    until = last_event(case) + timedelta(seconds=1)
    result = Result(case, until)
    csv_path = folder / "floor.csv"

    # Once-per-process costs outside every timer: the embedded server, imports, the OS file cache,
    # DuckDB's first large query, one run of each contender.
    store = FeatureStore(full_project)
    url = server_url(store)
    import psycopg

    with psycopg.connect(url) as connection:
        result.server_version = connection.execute("SHOW server_version").fetchone()[0]
    page_in(case.events)
    log("warm-up: one untimed run of each contender")
    drop_online(url)
    reset_floor(url)
    store.materialize(until=until)
    floor_materialize(case, url, csv_path)

    # 1. Full materialization, interleaved rounds.
    for number in range(repeat):
        drop_online(url)
        store = FeatureStore(full_project)
        _ = store.project  # loading the project is not materialization
        seconds, runs = timed(lambda store=store: store.materialize(until=until), collect=True)
        run_ = _expect(runs, "backfill", "full materialization")
        result.full["ours"].append(seconds)
        result.users = run_.written
        reset_floor(url)
        seconds, _ = timed(lambda: floor_materialize(case, url, csv_path), collect=True)
        result.full["floor"].append(seconds)
        ours_sum = checksum(url, online_table(store), "__fs_ts")
        floor_sum = checksum(url, f"{FLOOR_SCHEMA}.{FLOOR_TABLE}", "ts")
        if ours_sum != floor_sum:
            raise results_differ(f"online table {ours_sum} vs floor table {floor_sum} (count, sum of row hashes)")
        if number == 0:
            problems = check_against_source(case, url, online_table(store), until)
            if problems:
                raise results_differ("\n  ".join(problems))
            result.checks.append(f"full: the online table equals the floor's table ({ours_sum[0]:,} rows, same "
                                 "row-hash sum every round) and, row by row, DuckDB's latest rows read from Parquet")
        log(f"full {number + 1}/{repeat}: ours {result.full['ours'][-1]:.3f}s, floor {result.full['floor'][-1]:.3f}s "
            f"({ours_sum[0]:,} rows)")
    execute(url, f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")

    # 3. Lookups, on the last round's online table (before 2: a shared server's schema is dropped there).
    user_ids = [row[0] for row in _fetch(url, f"SELECT user_id FROM {online_table(store)} ORDER BY user_id")]
    # The table was just written: vacuum it now, or autovacuum does it during the timed calls.
    execute(url, f"VACUUM ANALYZE {online_table(store)}")
    log(f"lookups: {lookups:,} timed calls per size and contender ({WARMUP_LOOKUPS} warm-up)")
    store = FeatureStore(full_project)
    try:
        result.lookups = run_lookups(store, url, online_table(store), until, user_ids, lookups, repeat, case.rows,
                                     log)
    finally:
        store.close()
    result.checks.append(f"lookups: {result.lookups['checked_calls']:,} calls (the warm-up ones and every "
                         f"{CHECK_EVERY}th timed one) equal the floor's rows with the {TTL_DAYS}d TTL applied")

    # 2. Incremental run after the last 1% of the events lands as a new file.
    split = build_split(case, folder, log)
    result.split = split
    for number in range(repeat):
        split.landed.unlink(missing_ok=True)
        store = FeatureStore(split.project)
        url_b = server_url(store)
        drop_online(url_b)
        seconds, runs = timed(lambda store=store: store.materialize(until=split.history_until), collect=True)
        _expect(runs, "backfill", "history backfill")
        result.incremental["history_backfill"].append(seconds)
        reset_floor(url_b)
        floor_table = floor_incremental_table(url_b, online_table(store))
        shutil.copyfile(split.pending, split.landed)
        seconds, runs = timed(lambda store=store: store.materialize(until=split.until), collect=True)
        inc = _expect(runs, "incremental", "run after the new file")
        result.incremental["incremental"].append(seconds)
        result.incremental_runs.append({"read": inc.read, "written": inc.written, "late": inc.late})
        inc_sum = checksum(url_b, online_table(store), "__fs_ts")
        seconds, floor_written = timed(
            lambda floor_table=floor_table, url_b=url_b: floor_incremental(url_b, floor_table, split.landed, csv_path),
            collect=True)
        result.incremental["floor"].append(seconds)
        floor_sum = checksum(url_b, floor_table, "__fs_ts")
        if floor_sum != inc_sum:
            raise results_differ(f"after the incremental run the online table is {inc_sum}, the floor's {floor_sum} "
                                 "(count, sum of row hashes)")
        execute(url_b, f"DROP SCHEMA IF EXISTS {FLOOR_SCHEMA} CASCADE")
        drop_online(url_b)
        seconds, runs = timed(lambda store=store: store.materialize(until=split.until), collect=True)
        _expect(runs, "backfill", "full run after the new file")
        result.incremental["full"].append(seconds)
        full_sum = checksum(url_b, online_table(store), "__fs_ts")
        if inc_sum != full_sum:
            raise results_differ(f"after the incremental run the online table is {inc_sum}, "
                                 f"after a full run {full_sum} (count, sum of row hashes)")
        if number == 0:
            problems = check_against_source(case, url_b, online_table(store), split.until)
            if problems:
                raise results_differ("\n  ".join(problems))
        log(f"incremental {number + 1}/{repeat}: {result.incremental['incremental'][-1]:.3f}s "
            f"(read {inc.read:,}, wrote {inc.written:,}), floor {result.incremental['floor'][-1]:.3f}s "
            f"(wrote {floor_written:,}), full {result.incremental['full'][-1]:.3f}s, "
            f"history backfill {result.incremental['history_backfill'][-1]:.3f}s")
    result.checks.append(f"incremental: the online table after the incremental run equals the floor's and a full run's "
                         f"({full_sum[0]:,} rows, every round) and DuckDB's latest rows read from Parquet")
    return result


def _fetch(url: str, statement: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(statement).fetchall()


# --------------------------------------------------------------------------- reporting


def summary(result: Result) -> dict[str, Any]:
    med = medians(result.full)
    rows = result.case.rows
    full = {
        "source_rows": rows, "online_rows": result.users, "until": result.events_until.isoformat(),
        "seconds": result.full, "median_seconds": med,
        "rows_per_second": {k: rows / v for k, v in med.items()},
        "ratio": med["floor"] / med["ours"],  # ours rows/s over the floor's
    }
    full["target"] = "PASS" if full["ratio"] >= FULL_TARGET else "FAIL"
    inc_med = medians(result.incremental)
    split = result.split
    assert split is not None
    incremental = {
        "history_rows": split.history_rows, "new_rows": split.new_rows,
        "history_until": split.history_until.isoformat(), "until": split.until.isoformat(),
        "seconds": result.incremental, "median_seconds": inc_med, "runs": result.incremental_runs,
        "ratio": inc_med["incremental"] / inc_med["full"],
        "floor_ratio": inc_med["floor"] / inc_med["full"],  # the hand-written incremental run's share of a full run
        "ratio_to_floor": inc_med["incremental"] / inc_med["floor"],
    }
    incremental["target"] = verdict(incremental["ratio"], INCREMENTAL_TARGET, strict=True)
    return {"rows": rows, "features": result.case.features, "data_folder": str(result.case.folder),
            "postgres_server_version": result.server_version, "full_materialization": full,
            "incremental": incremental, "lookups": result.lookups, "checks": result.checks}


def print_report(report: dict[str, Any]) -> None:
    s = report["result"]
    console = header(report, "Online store benchmark", 130,
                     versions_note=f", PostgreSQL {s['postgres_server_version']}")
    full, inc = s["full_materialization"], s["incremental"]
    rows = table(f"{s['rows']:,} events, {full['online_rows']:,} users, {s['features']} features, "
                 f"TTL {TTL_DAYS}d; medians of {report['repeat']} rounds, latency percentiles of "
                 f"{report['lookups']:,} calls",
                 ("measure", "ours", "floor", "ratio", "target", "ours min-max", "floor min-max"),
                 left=("measure", "target"))

    rps, fmed = full["rows_per_second"], full["median_seconds"]
    rows.add_row("full materialization, s", f"{fmed['ours']:.3f}", f"{fmed['floor']:.3f}", "", "",
                 spread(full["seconds"]["ours"], 3), spread(full["seconds"]["floor"], 3))
    rows.add_row("full materialization, rows/s", f"{rps['ours']:,.0f}", f"{rps['floor']:,.0f}",
                 f"{full['ratio']:.2f}x", mark(full["target"], f">={FULL_TARGET}x"), "", "")
    med = inc["median_seconds"]
    rows.add_row(f"+{NEW_SHARE:.0%} rows: incremental vs full run, s", f"{med['incremental']:.3f}",
                 f"{med['full']:.3f} (full)", f"{inc['ratio']:.1%}", mark(inc["target"], f"<{INCREMENTAL_TARGET:.0%}"),
                 spread(inc["seconds"]["incremental"], 3), spread(inc["seconds"]["full"], 3))
    rows.add_row(f"+{NEW_SHARE:.0%} rows: incremental run vs hand-written upsert, s", f"{med['incremental']:.3f}",
                 f"{med['floor']:.3f}", f"{inc['ratio_to_floor']:.2f}x", f"(floor: {inc['floor_ratio']:.1%} of full)",
                 spread(inc["seconds"]["incremental"], 3), spread(inc["seconds"]["floor"], 3))
    for size in LOOKUP_SIZES:
        r = s["lookups"][str(size)]
        blocks = r["p99_blocks_us"]
        for p in ("p50", "p99"):
            rows.add_row(f"lookup {size} entit{'y' if size == 1 else 'ies'}, {p}, us", f"{r['ours_us'][p]:,.0f}",
                         f"{r['floor_us'][p]:,.0f}", f"{r['ratio'][p]:.2f}x",
                         mark(r["target_p99"], f"<={LOOKUP_P99_TARGET[size]}x") if p == "p99" else "",
                         *((spread(blocks["ours"], 0), spread(blocks["floor"], 0)) if p == "p99" else ("", "")))
    console.print(rows)
    runs = inc["runs"]
    console.print(f"  full: floor = DuckDB latest-row query -> CSV -> COPY into a fresh table -> primary key, on the "
                  f"same server; rows/s = {s['rows']:,} source rows / median time.")
    console.print(f"  incremental: {inc['history_rows']:,} rows in part-000 materialized until {inc['history_until']} "
                  f"(backfill median {med['history_backfill']:.3f}s), then part-001 lands; the incremental run "
                  f"read {runs[0]['read']:,} entities' latest rows and wrote {runs[0]['written']:,} "
                  f"({runs[0]['late']:,} late); full = the same data backfilled into an empty schema; floor = the new "
                  "file's latest row per user -> CSV -> COPY into a temporary table -> INSERT ... ON CONFLICT DO "
                  "UPDATE WHERE newer, into a copy of the same table.")
    console.print("  lookups: floor = prepared SELECT ... WHERE user_id = ANY(%s) on one open connection, rows as "
                  "tuples, no TTL, no ordering; ours = store.online() -> polars DataFrame in request order; p99 "
                  f"min-max = the p99 of each of {report['repeat']} blocks of consecutive calls.")
    for check in s["checks"]:
        console.print(f"  check: {check}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="events in the view's source (default 4M)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--lookups", type=int, default=20000,
                        help="timed lookups per size and contender (default 20000; --repeat blocks show the p99's "
                             "spread)")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "featurestore-bench"),
                        help="where data and the benchmark projects are generated (reused when unchanged)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rows < 200 or args.lookups < 1:
        parser.error("--repeat and --lookups must be at least 1, --rows at least 200")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = progress()
    if os.environ.get("FEATURESTORE_POSTGRES_URL"):
        log(f"FEATURESTORE_POSTGRES_URL is set: schemas {ONLINE_SCHEMA} and {FLOOR_SCHEMA} of that database are "
            "dropped and rewritten")
    found_versions = versions("psycopg", "polars")
    workdir = Path(args.workdir).resolve()
    case = make_case(workdir, args.rows, max(args.rows // 8, 1), FEATURES)
    log(f"case: {args.rows:,} events, {FEATURES} features, {args.repeat} rounds, {args.lookups:,} lookups")
    result = run(case, workdir, args.repeat, args.lookups, log)
    report: dict[str, Any] = {
        "command": command(),
        "machine": machine(), "versions": found_versions, "repeat": args.repeat, "lookups": args.lookups,
        "targets": {"full_materialization": f"ours rows/s >= {FULL_TARGET}x floor",
                    "incremental": f"incremental time < {INCREMENTAL_TARGET:.0%} of a full run",
                    "lookup_p99": {f"{size} entities": f"ours p99 <= {target}x floor"
                                   for size, target in LOOKUP_P99_TARGET.items()}},
        "result": summary(result),
    }
    if warning := changed_during_run(found_versions):
        report["warning"] = warning
    emit(report, args.format, print_report)


if __name__ == "__main__":
    main()
