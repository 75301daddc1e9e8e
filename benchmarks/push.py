"""Push benchmark: rows pushed over HTTP and through the SDK, read after write, and compaction, against hand-written
floors, in one run.

    python benchmarks/push.py                                # 200k events, 20k users; the sizes of the targets
    python benchmarks/push.py --quick                        # a smoke run, 1-2 minutes
    python benchmarks/push.py --raw-pushes 1000 --compact-rows 200000 --seconds 5
    python benchmarks/push.py --sections http,raw            # some of the four parts only
    python benchmarks/push.py --format json > result.json

One project: the source `card_events` (user_id, ts, amount, ingested_at; `arrival = "ingested_at"`) holds
`--events` generated events of `--users` users from 20 to 2 hours ago, read by two views that declare
`known_at: ingested_at`: a window view `cards_added` (`windows: 1h, 1d`; count(*), sum(amount)) and a
row-wise snapshot view `last_card`, both materialized into PostgreSQL; a second source, `compact_events`,
takes pushes that no view reads. A push of card_events therefore writes, in one transaction, its landed
rows, the window view's events and the snapshot view's latest rows. The floors are what a careful
engineer writes by hand for exactly these tables (created LIKE ours, holding our rows), on the same
PostgreSQL; each part alternates ours and its floor block by block (the order rotating), so that the
machine's noise falls on both, and reports ratios:

1. One row per push over HTTP: `featurestore serve` (1 worker; POST /v1/push/card_events with a key that
   may push) against a Starlette app under uvicorn (same worker count) whose psycopg pool, in one
   transaction, inserts the row into the landing table and the window view's events table and upserts it
   into the snapshot view's table. Latency percentiles at 1 and 16 requests in flight.
2. Batches of 1,000 rows through the SDK (`store.push` with an Arrow table) against one transaction of
   binary COPY into the landing and events tables and an upsert of each user's latest row: rows/s.
3. Read after write: `--raw-pushes` times, push one row over HTTP, then at once look its user up over
   HTTP (POST /v1/features); a lookup that does not reflect the row is a miss, then polled until it does.
4. Compaction of `--compact-rows` landed rows (`store.compact()`) against one transaction that reads the
   same rows with COPY binary into Arrow, writes a Parquet file per arrival day with pyarrow (synced),
   and deletes them.

Answers are checked before anything is reported: identical rows pushed to both sides leave identical rows
in their tables before any timing; after each part, each side's tables hold exactly the rows it was sent,
and our lookups (HTTP or in process) equal the counts, sums and latest values expected from the generated
events and every row pushed; compaction files equal the floor's. A difference stops the run (RESULTS
DIFFER); failed requests or read-after-write misses make it exit with status 1. It deletes its project
folder under `--workdir` at start; with FEATURESTORE_POSTGRES_URL set, it drops the schemas
featurestore_online, featurestore_push and bench_floor of that database. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    changed_during_run,
    command,
    emit,
    header,
    machine,
    mark,
    median,
    percentiles,
    positive_int,
    progress,
    results_differ,
    rotated,
    spread,
    table,
    timed,
    verdict,
    versions,
)
from services import TICKS_PER_SECOND, Service, free_port, launch, processes, release_handles, server_url, stop, tree

SOURCE, COMPACT_SOURCE = "card_events", "compact_events"
WINDOW_VIEW, SNAPSHOT_VIEW = "cards_added", "last_card"
UPDATED = [WINDOW_VIEW, SNAPSHOT_VIEW]  # the views a push of card_events must report as updated
LOOKUP = [f"{WINDOW_VIEW}.cards_1d", f"{WINDOW_VIEW}.spent_1d", f"{SNAPSHOT_VIEW}.amount"]
EVENT_COLUMNS = ["user_id", "__fs_ts", "__fs_known", "__fs_due", "__fs_a1"]  # our window view's online table
LATEST_COLUMNS = ["user_id", "__fs_ts", "__fs_known", "amount"]              # our snapshot view's online table
HISTORY_HOURS = (20, 2)      # the generated events happened from 20 to 2 hours ago (inside 1d all run long)
CONTENDERS = ("ours", "floor")
SECTIONS = ("http", "sdk", "raw", "compact")
HTTP_P99_TARGET = 1.5        # 1 row over HTTP: ours p99 <= 1.5x the floor's (at each concurrency)
SDK_TARGET = 0.7             # 1,000-row batches: ours rows/s >= 0.7x the floor's
COMPACT_TARGET = 2.0         # compaction: ours <= 2x the floor's time
CHECK_ROWS = 20              # identical rows pushed to both services before timing
CHECK_USERS = 60             # users looked up to check our answers after each part
COMPACT_CHUNK = 100_000      # rows per push when landing the rows to compact
VISIBLE_TIMEOUT = 10.0       # seconds a missed row is polled for
SEED = 20_240_601
FLOOR = "bench_floor"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in µs since 1970
DAY_US = 86_400_000_000
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
HEADER_SQL = "-- entity: user_id\n-- timestamp: ts\n-- owner: bench@example.com\n-- known_at: ingested_at\n"
QUICK = {"events": 20_000, "users": 2_000, "seconds": 3.0, "warmup": 1.0, "rounds": 2, "raw_pushes": 300,
         "batches": 5, "sdk_rounds": 2, "compact_rows": 100_000, "compact_rounds": 2}
DEFAULTS = {"events": 200_000, "users": 20_000, "seconds": 10.0, "warmup": 2.0, "rounds": 3, "raw_pushes": 10_000,
            "batches": 10, "sdk_rounds": 5, "compact_rows": 1_000_000, "compact_rounds": 3}

FLOOR_APP = '''\
"""The floor: what a careful engineer writes by hand to take pushed rows of card_events (benchmarks/push.py).

Checks the key (SHA-256, constant time) and each row's types, stamps the arrival, and in one transaction
inserts the rows into the landing table and the window view's events table and upserts each user's latest
row into the snapshot view's table (newer times win), on a psycopg pool.
"""

import hashlib
import hmac
import os
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

KEY_SHA256 = os.environ["FLOOR_KEY_SHA256"]
SCHEMA = os.environ["FLOOR_SCHEMA"]
LANDING_ONE = (f"INSERT INTO {SCHEMA}.landing (user_id, ts, amount, ingested_at, __fs_batch) "
               f"VALUES (%s, %s, %s, %s, nextval('{SCHEMA}.batches')) RETURNING __fs_batch")
LANDING_MANY = (f"INSERT INTO {SCHEMA}.landing (user_id, ts, amount, ingested_at, __fs_batch) "
                "VALUES (%s, %s, %s, %s, %s)")
EVENT = f"INSERT INTO {SCHEMA}.events (user_id, __fs_ts, __fs_known, __fs_due, __fs_a1) VALUES (%s, %s, %s, %s, %s)"
LATEST = (f"INSERT INTO {SCHEMA}.latest AS t (user_id, __fs_ts, __fs_known, amount) VALUES (%s, %s, %s, %s) "
          "ON CONFLICT (user_id) DO UPDATE SET __fs_ts = EXCLUDED.__fs_ts, __fs_known = EXCLUDED.__fs_known, "
          "amount = EXCLUDED.amount WHERE EXCLUDED.__fs_ts > t.__fs_ts")
POOL_SIZE = int(os.environ["FLOOR_POOL"])
pool = AsyncConnectionPool(os.environ["FLOOR_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE, open=False)


@asynccontextmanager
async def lifespan(app):
    await pool.open(wait=True)
    yield
    await pool.close()


def answer(content, status=200):
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def checked(row, arrived):
    user_id, amount, ts = row["user_id"], row["amount"], datetime.fromisoformat(row["ts"])
    if type(user_id) is not int or type(amount) not in (int, float):
        raise TypeError("user_id must be a whole number and amount a number")
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    return user_id, ts, float(amount), max(ts, arrived)


async def push(request):
    presented = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(hashlib.sha256(presented.encode()).hexdigest(), KEY_SHA256):
        return answer({"error": "the API key is not valid"}, 401)
    arrived = datetime.now(UTC)
    try:
        rows = [checked(row, arrived) for row in orjson.loads(await request.body())["rows"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        return answer({"error": str(exc)}, 422)
    if not rows:
        return answer({"error": "no rows"}, 422)
    async with pool.connection() as connection, connection.transaction():
        cursor = connection.cursor()
        if len(rows) == 1:
            user_id, ts, amount, known = rows[0]
            await cursor.execute(LANDING_ONE, [user_id, ts, amount, arrived])
            batch = (await cursor.fetchone())[0]
            await cursor.execute(EVENT, [user_id, ts, known, ts, amount])
            await cursor.execute(LATEST, [user_id, ts, known, amount])
        else:
            await cursor.execute(f"SELECT nextval('{SCHEMA}.batches')")
            batch = (await cursor.fetchone())[0]
            await cursor.executemany(LANDING_MANY, [(u, ts, a, arrived, batch) for u, ts, a, _ in rows])
            await cursor.executemany(EVENT, [(u, ts, known, ts, a) for u, ts, a, known in rows])
            latest = {}
            for row in rows:
                if row[0] not in latest or row[1] > latest[row[0]][1]:
                    latest[row[0]] = row
            await cursor.executemany(LATEST, [(u, ts, known, a) for u, ts, a, known in latest.values()])
    return answer({"source": "card_events", "rows": len(rows), "arrived": arrived.isoformat(), "batch": batch})


async def readyz(request):
    async with pool.connection() as connection:
        await connection.execute("SELECT 1")
    return answer({"status": "ready"})


app = Starlette(routes=[Route("/push/card_events", push, methods=["POST"]), Route("/readyz", readyz)],
                lifespan=lifespan)


if __name__ == "__main__":  # python floor_app.py HOST PORT WORKERS: served as `featurestore serve` serves
    import sys

    import uvicorn

    from server.workers import run_workers

    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = uvicorn.Config("floor_app:app", host=host, port=port, workers=workers, log_level="warning",
                            access_log=False)
    run_workers(config)
'''


# --------------------------------------------------------------------------- the project and what it holds

Row = tuple[int, int, float]  # (user_id, ts in µs since 1970 UTC, amount): one pushed row


def iso(micros: int) -> str:
    return (UNIX_EPOCH + timedelta(microseconds=int(micros))).isoformat()


def now_us() -> int:
    return time.time_ns() // 1000


class Clock:
    """Event times for pushed rows: strictly increasing across the run (no two rows share a time, so the
    snapshot view never sees a tie), a millisecond before now."""

    def __init__(self) -> None:
        self.last = 0

    def take(self, count: int) -> np.ndarray:
        start = max(self.last + 1, now_us() - 1000 - count)
        self.last = start + count - 1
        return np.arange(start, start + count, dtype=np.int64)


@dataclass
class Expected:
    """What a lookup of each user must answer: the generated events plus every row pushed to ours."""

    count: np.ndarray                    # events inside 1 day
    spent: np.ndarray                    # their sum of amounts
    latest: dict[int, tuple[int, float]]  # the latest event's (time, amount)
    touched: set[int] = field(default_factory=set)

    def add(self, rows: Iterable[Row]) -> None:
        for user, ts, amount in rows:
            self.count[user] += 1
            self.spent[user] += amount
            if user not in self.latest or ts > self.latest[user][0]:
                self.latest[user] = (ts, amount)
            self.touched.add(user)

    def answer(self, user: int) -> tuple[int, float | None, float | None]:
        count = int(self.count[user])
        return count, float(self.spent[user]) if count else None, self.latest.get(user, (0, None))[1]


def matches(got: tuple, want: tuple) -> bool:
    """A lookup's (count, sum, latest amount) against the expected ones (sums to 1e-9, relative)."""
    (count, spent, amount), (w_count, w_spent, w_amount) = got, want
    if count != w_count or amount != w_amount or (spent is None) != (w_spent is None):
        return False
    return spent is None or abs(spent - w_spent) <= 1e-9 * max(1.0, abs(w_spent))


def write_project(project: Path, events: int, users: int, digest: str) -> Expected:
    """The project, its generated events (times relative to now, so written every run) and what lookups
    of them return."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    utc_us = pa.timestamp("us", tz="UTC")
    (project / "definitions").mkdir(parents=True)
    (project / "data").mkdir()
    rng = np.random.default_rng(SEED)
    now = now_us()
    user_id = rng.integers(0, users, events)
    ts = np.sort(rng.integers(now - HISTORY_HOURS[0] * 3_600_000_000, now - HISTORY_HOURS[1] * 3_600_000_000, events))
    ts = np.maximum.accumulate(ts - np.arange(events)) + np.arange(events)  # unique times
    amount = np.round(rng.random(events) * 100, 2)
    arrival = ts + rng.integers(1_000_000, 60_000_000, events)

    def frame(u: Any, t: Any, a: Any, arrived: Any) -> pa.Table:
        return pa.table({"user_id": pa.array(u, pa.int64()), "ts": pa.array(t, pa.int64()).cast(utc_us),
                         "amount": pa.array(a, pa.float64()),
                         "ingested_at": pa.array(arrived, pa.int64()).cast(utc_us)})

    pq.write_table(frame(user_id, ts, amount, arrival), project / "data" / f"{SOURCE}.parquet")
    old = now - 30 * DAY_US
    pq.write_table(frame([0], [old], [1.0], [old]), project / "data" / f"{COMPACT_SOURCE}.parquet")
    (project / "featurestore.toml").write_text(
        'definitions = "definitions"\n\n[sources]\n'
        f'{SOURCE} = {{ path = "data/{SOURCE}.parquet", arrival = "ingested_at" }}\n'
        f'{COMPACT_SOURCE} = {{ path = "data/{COMPACT_SOURCE}.parquet", arrival = "ingested_at" }}\n\n'
        f'[server.keys.ingest]\nsha256 = "{digest}"\npush = true\n')
    (project / "definitions" / f"{WINDOW_VIEW}.sql").write_text(
        HEADER_SQL + "-- windows: 1h, 1d\n"
        f"SELECT user_id, count(*) AS cards, sum(amount) AS spent FROM {SOURCE} GROUP BY user_id\n")
    (project / "definitions" / f"{SNAPSHOT_VIEW}.sql").write_text(
        HEADER_SQL + f"SELECT user_id, ts, ingested_at, amount FROM {SOURCE}\n")
    order = np.lexsort((ts, user_id))
    last = order[np.r_[user_id[order][1:] != user_id[order][:-1], True]] if events else order
    return Expected(np.bincount(user_id, minlength=users).astype(np.int64),
                    np.bincount(user_id, weights=amount, minlength=users),
                    {int(user_id[i]): (int(ts[i]), float(amount[i])) for i in last})


@dataclass(frozen=True)
class Tables:
    landing: str   # card_events' pushed rows
    events: str    # the window view's online events
    latest: str    # the snapshot view's online rows
    compact: str   # compact_events' pushed rows


FLOOR_TABLES = Tables(f"{FLOOR}.landing", f"{FLOOR}.events", f"{FLOOR}.latest", f"{FLOOR}.compact_landing")


@dataclass
class Setup:
    project: Path
    folder: Path
    store: Any
    url: str
    key: str
    tables: dict[str, Tables]
    expected: Expected
    clock: Clock
    users: int
    postgres_pid: int | None
    server_version: str
    materialized: list[dict[str, Any]]
    online_rows: dict[str, int]


def stale_postgres(project: Path) -> int | None:
    """The pid of a PostgreSQL an earlier run left on the project's data folder, if it still runs."""
    pidfile = project / ".featurestore" / "pgdata" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def sql_rows(url: str, statement: str, params: list[Any] | None = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def micros(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def prepare(args: argparse.Namespace, log: Callable[[str], None]) -> Setup:
    """A fresh project, materialized; one push into each source (their landing tables then exist); the
    floor's tables created LIKE ours (same columns, indexes and storage parameters) holding our rows."""
    from featurestore import FeatureStore

    folder = Path(args.workdir).resolve() / f"push_events{args.events}_users{args.users}"
    project = folder / "project"
    if (pid := stale_postgres(project)) is not None:
        raise SystemExit(f"a PostgreSQL (pid {pid}) from an earlier run still runs on {project}/.featurestore/pgdata; "
                         "stop it first (kill -INT that pid)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    key = secrets.token_urlsafe(24)
    expected = write_project(project, args.events, args.users, hashlib.sha256(key.encode()).hexdigest())
    (folder / "floor_app.py").write_text(FLOOR_APP)
    store = FeatureStore(project, consumer="benchmark")
    url = server_url(store)
    if os.environ.get("FEATURESTORE_POSTGRES_URL"):
        sql_rows(url, f"DROP SCHEMA IF EXISTS featurestore_online, featurestore_push, {FLOOR} CASCADE")
    seconds, runs = timed(store.materialize)
    materialized = [{"view": r.view, "mode": r.mode, "written": r.written, "seconds": r.seconds} for r in runs]
    log(f"materialized {', '.join(f'{r.view} ({r.written:,} rows)' for r in runs)} in {seconds:.1f}s")
    clock = Clock()
    [first] = clock.take(1).tolist()
    primer = (0, first, 1.0)
    result = store.push(SOURCE, [{"user_id": 0, "ts": iso(first), "amount": 1.0}])
    if list(result.views_updated) != UPDATED:
        raise SystemExit(f"a push of {SOURCE} updated {result.views_updated}, expected {UPDATED}")
    expected.add([primer])
    store.push(COMPACT_SOURCE, [{"user_id": 0, "ts": iso(first), "amount": 1.0}])
    store.compact([COMPACT_SOURCE])
    online = {name: f'featurestore_online."{name}__{store.views[name].version}"' for name in UPDATED}
    ours = Tables(f'featurestore_push."{SOURCE}"', online[WINDOW_VIEW], online[SNAPSHOT_VIEW],
                  f'featurestore_push."{COMPACT_SOURCE}"')
    for name, want in (("events", EVENT_COLUMNS), ("latest", LATEST_COLUMNS)):
        schema_table = getattr(ours, name).replace('"', "").split(".")
        found = [r[0] for r in sql_rows(url, "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                             "%s AND table_name = %s ORDER BY ordinal_position", schema_table)]
        if found != want:
            raise SystemExit(f"our {name} table {getattr(ours, name)} has columns {found}; the floor writes {want}: "
                             "update benchmarks/push.py")
    statements = [f"DROP SCHEMA IF EXISTS {FLOOR} CASCADE", f"CREATE SCHEMA {FLOOR}",
                  f"CREATE SEQUENCE {FLOOR}.batches", f"CREATE SEQUENCE {FLOOR}.compact_batches"]
    for name in ("landing", "events", "latest", "compact"):
        theirs, mine = getattr(ours, name), getattr(FLOOR_TABLES, name)
        options = sql_rows(url, "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [theirs])[0][0]
        storage = f" WITH ({', '.join(options)})" if options else ""
        statements += [f"CREATE TABLE {mine} (LIKE {theirs} INCLUDING ALL){storage}",
                       f"INSERT INTO {mine} SELECT * FROM {theirs}"]
    statements += [f"SELECT setval('{FLOOR}.{sequence}', (SELECT coalesce(max(__fs_batch), 0) + 1 FROM {table}))"
                   for sequence, table in (("batches", FLOOR_TABLES.landing),
                                           ("compact_batches", FLOOR_TABLES.compact))]
    sql_rows(url, "; ".join(statements))
    for name in ("landing", "events", "latest", "compact"):
        for tables in (ours, FLOOR_TABLES):
            sql_rows(url, f"VACUUM ANALYZE {getattr(tables, name)}")
    online_rows = {name: sql_rows(url, f"SELECT count(*) FROM {getattr(ours, name)}")[0][0]
                   for name in ("events", "latest")}
    postgres_pid = None
    if not store.settings.postgres_url:
        with contextlib.suppress(OSError, ValueError, IndexError):
            postgres_pid = int((store.settings.state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    return Setup(project, folder, store, url, key, {"ours": ours, "floor": FLOOR_TABLES}, expected, clock, args.users,
                 postgres_pid, sql_rows(url, "SHOW server_version")[0][0], materialized, online_rows)


# --------------------------------------------------------------------------- checking the tables and our lookups


def max_batch(url: str, tables: Tables) -> int:
    return int(sql_rows(url, f"SELECT coalesce(max(__fs_batch), 0) FROM {tables.landing}")[0][0])


def verify(url: str, tables: Tables, since_batch: int, since: datetime, sent: list[Row], who: str) -> list[str]:
    """The rows `who` was sent since (`since_batch`, `since`) are exactly its new landed rows and its new window
    events (event time as due time, known at or after it), and each user's snapshot row is the latest sent."""
    landed = Counter(sql_rows(url, f"SELECT user_id, {micros('ts')}, amount FROM {tables.landing} "
                                   "WHERE __fs_batch > %s", [since_batch]))
    events = Counter(sql_rows(url, f"SELECT user_id, {micros('__fs_ts')}, __fs_a1 FROM {tables.events} "
                                   "WHERE __fs_known >= %s", [since]))
    odd = sql_rows(url, f"SELECT count(*) FROM {tables.events} WHERE __fs_known >= %s AND "
                        "(__fs_due <> __fs_ts OR __fs_known < __fs_ts)", [since])[0][0]
    latest: dict[int, tuple[int, float]] = {}
    for user, ts, amount in sent:
        if user not in latest or ts > latest[user][0]:
            latest[user] = (ts, amount)
    stored = {row[0]: (row[1], row[2]) for row in sql_rows(
        url, f"SELECT user_id, {micros('__fs_ts')}, amount FROM {tables.latest} WHERE user_id = ANY(%s)",
        [list(latest)])}
    want = Counter(sent)
    problems = []
    for what, got in (("landed rows", landed), ("window events", events)):
        if got != want:
            missing, extra = want - got, got - want
            problems.append(f"{who}: {what}: {sum(got.values()):,} stored for {len(sent):,} sent; missing "
                            f"{list(missing.elements())[:3]}, unexpected {list(extra.elements())[:3]}")
    if odd:
        problems.append(f"{who}: {odd} new window events with a due time other than their time, or known before it")
    differ = [(user, stored.get(user), row) for user, row in latest.items() if stored.get(user) != row]
    if differ:
        problems.append(f"{who}: {len(differ)} snapshot rows are not the latest sent, e.g. user {differ[0][0]}: "
                        f"stored {differ[0][1]}, latest sent {differ[0][2]}")
    return problems


def sample_users(expected: Expected, users: int, seed: int) -> list[int]:
    """Users to look up: some that got pushed rows, some that did not."""
    rng = np.random.default_rng(seed)
    touched = sorted(expected.touched)
    chosen = ([int(u) for u in rng.choice(touched, min(len(touched), CHECK_USERS - 10), replace=False)]
              if touched else [])
    others = [u for u in rng.choice(users, 40).tolist() if u not in expected.touched][:10]
    return chosen + [int(u) for u in others]


def check_lookups_in_process(store: Any, expected: Expected, users: list[int]) -> list[str]:
    frame = store.online({"user_id": users}, LOOKUP)
    problems = []
    for row in frame.rows():
        got, want = tuple(row[1:]), expected.answer(row[0])
        if not matches(got, want):
            problems.append(f"store.online of user {row[0]}: (cards_1d, spent_1d, amount) = {got}, expected {want}")
    return problems


# --------------------------------------------------------------------------- HTTP


class Raw:
    """A minimal HTTP/1.1 keep-alive client on one connection (as serve.py's): prebuilt requests, each answer read
    as its head and then exactly Content-Length bytes (both services always send one)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """(status, body) of one request; (0, the error's name) when it failed."""
        try:
            await self.connect()
            assert self.reader is not None and self.writer is not None
            self.writer.write(data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("a response without Content-Length")
            body = await self.reader.readexactly(int(lower[at + 17:lower.index(b"\r\n", at + 2)]))
            if b"connection: close" in lower:
                await self.close()
            return int(head[9:12]), body
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            return 0, type(exc).__name__.encode()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Endpoint:
    """A push service: where it listens, its push path, and the key sent with every request."""

    name: str
    port: int
    push_path: str
    key: str

    def post(self, path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: application/json\r\n"
                f"x-api-key: {self.key}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body

    def push(self, row: Row) -> bytes:
        import orjson

        return self.post(self.push_path, orjson.dumps({"rows": [{"user_id": row[0], "ts": iso(row[1]),
                                                                  "amount": row[2]}]}))

    def lookup(self, user: int) -> bytes:
        import orjson

        return self.post("/v1/features", orjson.dumps({"entities": {"user_id": [user]}, "features": LOOKUP}))


def looked_up(body: bytes) -> tuple:
    import orjson

    features = orjson.loads(body)["features"]
    return tuple(features[name][0] for name in LOOKUP)


class Rows:
    """The rows one contender pushes: random users (the same sequence for both contenders), unique times."""

    def __init__(self, clock: Clock, users: int, seed: int) -> None:
        self.clock, self.users = clock, users
        self.rng = np.random.default_rng(seed)

    def next(self) -> Row:
        return (int(self.rng.integers(self.users)), int(self.clock.take(1)[0]), int(self.rng.integers(1, 10**6)) / 100)


def wait_ready(service: Service, deadline_seconds: float = 120) -> None:
    """Until GET /readyz answers 200 (PostgreSQL reached)."""
    import httpx

    deadline = time.monotonic() + deadline_seconds
    with httpx.Client(trust_env=False, timeout=10) as client:
        while True:
            if service.process.poll() is not None:
                raise SystemExit(f"{service.name} exited with status {service.process.returncode} before it answered; "
                                 f"its log {service.log_path}:\n{service.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(service.url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"{service.name} did not answer {service.url} within {deadline_seconds:.0f}s; "
                                 f"its log {service.log_path}:\n{service.log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def start_services(setup: Setup, workers: int, pool: int) -> tuple[dict[str, Service], dict[str, Endpoint]]:
    ours_port, floor_port = free_port(), free_port()
    while floor_port == ours_port:
        floor_port = free_port()
    env = dict(os.environ)
    pythonpath = os.pathsep.join(p for p in (str(setup.folder), env.get("PYTHONPATH", "")) if p)
    floor_env = {**env, "PYTHONPATH": pythonpath, "FLOOR_URL": setup.url, "FLOOR_SCHEMA": FLOOR,
                 "FLOOR_POOL": str(pool), "FLOOR_KEY_SHA256": hashlib.sha256(setup.key.encode()).hexdigest()}
    commands = {
        "ours": ([sys.executable, "-m", "featurestore.cli.main", "--project", str(setup.project), "serve",
                  "--host", "127.0.0.1", "--port", str(ours_port), "--workers", str(workers)], env, ours_port),
        "floor": ([sys.executable, str(setup.folder / "floor_app.py"), "127.0.0.1", str(floor_port), str(workers)],
                  floor_env, floor_port)}
    services: dict[str, Service] = {}
    try:
        for name, (argv, environment, port) in commands.items():
            services[name] = launch(name, argv, environment, f"http://127.0.0.1:{port}/readyz", workers,
                                    setup.folder / f"{name}.log")
        for service in services.values():
            wait_ready(service)
    except BaseException:
        stop_services(setup, services)
        raise
    return services, {"ours": Endpoint("ours", ours_port, f"/v1/push/{SOURCE}", setup.key),
                      "floor": Endpoint("floor", floor_port, f"/push/{SOURCE}", setup.key)}


def stop_services(setup: Setup, services: dict[str, Service]) -> None:
    for service in services.values():
        release_handles(setup.store, stop(service))


def cpu_of(snapshot: dict[int, tuple[int, float]], root: int | None) -> float:
    return sum(snapshot[pid][1] for pid in tree(snapshot, root))


def reaped_cpu(pid: int | None) -> float:
    """CPU seconds of the children `pid` has waited for (/proc cutime + cstime): PostgreSQL's postmaster reaps its
    backends, so the short-lived ones (a connection per push opens one) count too."""
    if pid is None:
        return 0.0
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = data[data.rindex(")") + 2:].split()
    return (int(rest[13]) + int(rest[14])) / TICKS_PER_SECOND


@dataclass
class Block:
    """One contender's measured stretch of requests."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    service_cpu: float = 0.0
    postgres_cpu: float = 0.0


async def drive(endpoint: Endpoint, rows: Rows, concurrency: int, seconds: float, sent: list[Row],
                samples: dict[str, str]) -> Block:
    """Keep `concurrency` one-row pushes in flight for `seconds`; rows answered 200 go to `sent`."""
    block = Block()
    connections = [Raw("127.0.0.1", endpoint.port) for _ in range(concurrency)]
    await asyncio.gather(*(c.connect() for c in connections))

    async def worker(connection: Raw) -> None:
        while time.perf_counter() < deadline:
            row = rows.next()
            payload = endpoint.push(row)
            started = time.perf_counter()
            status, body = await connection.request(payload)
            elapsed = time.perf_counter() - started
            if status == 200:
                block.latencies.append(elapsed)
                sent.append(row)
            else:
                kind = f"HTTP {status}" if status else body.decode()
                block.errors[kind] = block.errors.get(kind, 0) + 1
                samples.setdefault(f"{endpoint.name}: {kind}", body[:300].decode(errors="replace"))
                await asyncio.sleep(0.01)

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker(c) for c in connections))
    block.seconds = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return block


def check_services(setup: Setup, endpoints: dict[str, Endpoint]) -> list[str]:
    """Before timing: the same rows pushed to both services leave the same rows in their tables, our answers
    say both views took them, and our lookups over HTTP equal the expected values."""
    import orjson

    rows = Rows(setup.clock, setup.users, SEED + 1)
    sent = [rows.next() for _ in range(CHECK_ROWS)]
    since = datetime.now(UTC)
    batches = {name: max_batch(setup.url, setup.tables[name]) for name in CONTENDERS}

    async def push_all() -> list[str]:
        problems = []
        for name in CONTENDERS:
            client = Raw("127.0.0.1", endpoints[name].port)
            for row in sent:
                status, body = await client.request(endpoints[name].push(row))
                if status != 200:
                    raise SystemExit(f"{name} answered {status} to a check push: {body[:500]!r}")
                answer = orjson.loads(body)
                if name == "ours" and (answer.get("views_updated") != UPDATED or answer.get("rows") != 1):
                    problems.append(f"ours answered {answer}: expected rows 1 and views_updated {UPDATED}")
            await client.close()
        return problems

    problems = asyncio.run(push_all())
    setup.expected.add(sent)
    for name in CONTENDERS:
        problems += verify(setup.url, setup.tables[name], batches[name], since, sent, name)
    return problems + asyncio.run(check_lookups_http(endpoints["ours"], setup.expected,
                                                     sample_users(setup.expected, setup.users, SEED)))


async def check_lookups_http(endpoint: Endpoint, expected: Expected, users: list[int]) -> list[str]:
    client = Raw("127.0.0.1", endpoint.port)
    problems = []
    for user in users:
        status, body = await client.request(endpoint.lookup(user))
        if status != 200:
            problems.append(f"POST /v1/features for user {user}: HTTP {status} {body[:300]!r}")
            continue
        got, want = looked_up(body), expected.answer(user)
        if not matches(got, want):
            problems.append(f"POST /v1/features of user {user}: (cards_1d, spent_1d, amount) = {got}, expected {want}")
    await client.close()
    return problems


def run_http(setup: Setup, endpoints: dict[str, Endpoint], services: dict[str, Service], args: argparse.Namespace,
             log: Callable[[str], None]) -> dict[str, Any]:
    """Part 1: one-row pushes at each concurrency, ours and the floor alternating blocks of `--seconds`."""
    since = datetime.now(UTC)
    batches = {name: max_batch(setup.url, setup.tables[name]) for name in CONTENDERS}
    sent: dict[str, list[Row]] = {name: [] for name in CONTENDERS}
    samples: dict[str, str] = {}
    cells = []
    gc.collect()
    gc.freeze()
    try:
        for concurrency in args.concurrency:
            rows = {name: Rows(setup.clock, setup.users, SEED + 10 + concurrency) for name in CONTENDERS}
            for name in CONTENDERS:  # connections, pools, prepared statements, caches: outside the measurements
                asyncio.run(drive(endpoints[name], rows[name], concurrency, args.warmup, sent[name], samples))
            blocks: dict[str, list[Block]] = {name: [] for name in CONTENDERS}
            for number in range(args.rounds):
                for name in rotated(CONTENDERS, number):
                    before, reaped = processes(), reaped_cpu(setup.postgres_pid)
                    block = asyncio.run(drive(endpoints[name], rows[name], concurrency, args.seconds, sent[name],
                                              samples))
                    after = processes()
                    root = services[name].process.pid
                    block.service_cpu = cpu_of(after, root) - cpu_of(before, root)
                    block.postgres_cpu = (cpu_of(after, setup.postgres_pid) - cpu_of(before, setup.postgres_pid)
                                          + reaped_cpu(setup.postgres_pid) - reaped)
                    blocks[name].append(block)
                    if services[name].process.poll() is not None:
                        raise SystemExit(f"{name} died during the run; see {services[name].log_path}")
            cell = summarize_cell(concurrency, blocks)
            cells.append(cell)
            o, f = cell["ours"], cell["floor"]
            log(f"HTTP, 1 row x{concurrency}: ours p50 {o['p50_ms']:.2f} p99 {o['p99_ms']:.2f} ms "
                f"({o['requests']:,} requests, {o['errors']} errors); floor p50 {f['p50_ms']:.2f} "
                f"p99 {f['p99_ms']:.2f} ms ({f['requests']:,}, {f['errors']} errors)")
    finally:
        gc.unfreeze()
    setup.expected.add(sent["ours"])
    errors = sum(c[name]["errors"] for c in cells for name in CONTENDERS)
    checks, problems = [], []
    if errors:
        checks.append("tables not compared: some pushes failed (their rows may or may not have landed)")
    else:
        for name in CONTENDERS:
            problems += verify(setup.url, setup.tables[name], batches[name], since, sent[name], name)
        problems += asyncio.run(check_lookups_http(endpoints["ours"], setup.expected,
                                                   sample_users(setup.expected, setup.users, SEED + 3)))
        checks.append(f"after the timed pushes, each side's landing, events and snapshot tables hold exactly the rows "
                      f"it was sent (ours {len(sent['ours']):,}, floor {len(sent['floor']):,}), and {CHECK_USERS} "
                      "lookups over HTTP equal the expected cards_1d, spent_1d and amount")
    if problems:
        raise results_differ("\n  ".join(problems[:10]))
    return {"cells": cells, "errors": errors, "error_samples": samples, "checks": checks,
            "rows_sent": {name: len(rows) for name, rows in sent.items()}}


def summarize_cell(concurrency: int, blocks: dict[str, list[Block]]) -> dict[str, Any]:
    cell: dict[str, Any] = {"concurrency": concurrency}
    for name, found in blocks.items():
        latencies = [x for b in found for x in b.latencies]
        requests, seconds = len(latencies), sum(b.seconds for b in found)
        errors: dict[str, int] = {}
        for b in found:
            for kind, count in b.errors.items():
                errors[kind] = errors.get(kind, 0) + count
        ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
        cell[name] = {"requests": requests, "seconds": seconds, "rps": requests / seconds if seconds else 0.0,
                      **{f"{k}_ms": v for k, v in percentiles(ms, (50, 90, 99)).items()},
                      "p99_blocks_ms": [float(np.percentile(np.array(b.latencies) * 1000, 99)) if b.latencies
                                        else float("nan") for b in found],
                      "errors": sum(errors.values()), "error_kinds": errors,
                      "cpu_us_per_request": {"service": sum(b.service_cpu for b in found) / max(requests, 1) * 1e6,
                                             "postgres": sum(b.postgres_cpu for b in found) / max(requests, 1) * 1e6}}
    cell["p50_ratio"] = cell["ours"]["p50_ms"] / cell["floor"]["p50_ms"]
    cell["p99_ratio"] = cell["ours"]["p99_ms"] / cell["floor"]["p99_ms"]
    cell["verdict"] = verdict(cell["p99_ratio"], HTTP_P99_TARGET)
    return cell


def run_raw(setup: Setup, endpoint: Endpoint, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Part 3: push one row, then look its user up at once; count lookups that do not reflect it."""
    rows = Rows(setup.clock, setup.users, SEED + 4)

    async def loop() -> dict[str, Any]:
        client = Raw("127.0.0.1", endpoint.port)
        push_ms, lookup_ms, late_ms = [], [], []
        misses, never, errors, not_updated = 0, 0, 0, 0
        samples: dict[str, str] = {}
        step = max(args.raw_pushes // 10, 1)
        for number in range(args.raw_pushes):
            if number and number % step == 0:
                log(f"read after write: {number:,}/{args.raw_pushes:,} pushes, {misses} misses")
            row = rows.next()
            user = row[0]
            started = time.perf_counter()
            status, body = await client.request(endpoint.push(row))
            returned = time.perf_counter()
            if status != 200:
                errors += 1
                samples.setdefault(f"push: HTTP {status}", body[:300].decode(errors="replace"))
                continue
            push_ms.append((returned - started) * 1000)
            if _updated(body) != UPDATED:
                not_updated += 1
            setup.expected.add([row])
            want = setup.expected.answer(user)
            status, body = await client.request(endpoint.lookup(user))
            lookup_ms.append((time.perf_counter() - returned) * 1000)
            if status == 200 and matches(looked_up(body), want):
                continue
            if status != 200:
                errors += 1
                samples.setdefault(f"lookup: HTTP {status}", body[:300].decode(errors="replace"))
            misses += 1
            samples.setdefault("miss", f"user {user}: got {looked_up(body) if status == 200 else status}, "
                                       f"expected {want}")
            while time.perf_counter() - returned < VISIBLE_TIMEOUT:  # how long until it shows
                status, body = await client.request(endpoint.lookup(user))
                if status == 200 and matches(looked_up(body), want):
                    late_ms.append((time.perf_counter() - returned) * 1000)
                    break
                await asyncio.sleep(0.001)
            else:
                never += 1
        await client.close()
        return {"pushes": args.raw_pushes, "errors": errors, "misses": misses, "never_visible": never,
                "not_reported_updated": not_updated, "visible_after_ms": late_ms, "samples": samples,
                "push_ms": percentiles(push_ms, (50, 99)) if push_ms else {},
                "lookup_ms": percentiles(lookup_ms, (50, 99)) if lookup_ms else {}}

    gc.collect()
    result = asyncio.run(loop())
    result["visible_at_return"] = result["pushes"] - result["errors"] - result["misses"]
    result["max_visible_after_ms"] = max(result["visible_after_ms"], default=0.0)
    result["verdict"] = "PASS" if result["misses"] == 0 and result["errors"] == 0 else "FAIL"
    log(f"read after write: {result['pushes']:,} pushes, {result['misses']} misses, {result['errors']} errors; push "
        f"p50 {result['push_ms'].get('p50', float('nan')):.1f} ms, lookup p50 "
        f"{result['lookup_ms'].get('p50', float('nan')):.2f} ms")
    return result


def _updated(body: bytes) -> list[str] | None:
    import orjson

    return orjson.loads(body).get("views_updated")


# --------------------------------------------------------------------------- binary COPY, by hand (no NULLs)


def encode_copy(columns: list[tuple[np.ndarray, str]]) -> bytes:
    """Rows as COPY binary ("i8", "f8" or "ts": µs since 1970), no NULL anywhere: one NumPy structured array."""
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, (_, kind) in enumerate(columns):
        fields += [(f"l{i}", ">i4"), (f"v{i}", ">f8" if kind == "f8" else ">i8")]
    out = np.empty(len(columns[0][0]), dtype=np.dtype(fields))
    out["n"] = len(columns)
    for i, (values, kind) in enumerate(columns):
        out[f"l{i}"] = 8
        out[f"v{i}"] = values - PG_EPOCH_US if kind == "ts" else values
    return COPY_HEADER + out.tobytes() + b"\xff\xff"


def decode_copy(data: bytes | bytearray, kinds: list[str]) -> list[np.ndarray]:
    """COPY binary output of fixed-width columns without NULLs back into NumPy (times in µs since 1970)."""
    if data[:11] != COPY_HEADER[:11]:
        raise SystemExit("floor: not COPY binary output")
    start = 19 + int.from_bytes(data[15:19], "big")
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"l{i}", ">i4"), (f"v{i}", ">f8" if kind == "f8" else ">i8")]
    dtype = np.dtype(fields)
    body = len(data) - 2 - start
    if body % dtype.itemsize or data[-2:] != b"\xff\xff":
        raise SystemExit("floor: rows of unexpected width (a NULL?); the floor assumes the generated data has none")
    rows = np.frombuffer(data, dtype, count=body // dtype.itemsize, offset=start)
    if (rows["n"] != len(kinds)).any() or any((rows[f"l{i}"] != 8).any() for i in range(len(kinds))):
        raise SystemExit("floor: a NULL or a field of unexpected width in the COPY output")
    out = []
    for i, kind in enumerate(kinds):
        values = rows[f"v{i}"].astype("<f8" if kind == "f8" else "<i8")
        out.append(values + PG_EPOCH_US if kind == "ts" else values)
    return out


# --------------------------------------------------------------------------- part 2: batches through the SDK

UPSERT_LATEST = (f"INSERT INTO {FLOOR}.latest AS t (user_id, __fs_ts, __fs_known, amount) "
                 "SELECT u.user_id, timestamptz 'epoch' + u.ts * interval '1 microsecond', "
                 "timestamptz 'epoch' + u.known * interval '1 microsecond', u.amount "
                 "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::float8[]) AS u(user_id, ts, known, amount) "
                 "ON CONFLICT (user_id) DO UPDATE SET __fs_ts = EXCLUDED.__fs_ts, __fs_known = EXCLUDED.__fs_known, "
                 "amount = EXCLUDED.amount WHERE EXCLUDED.__fs_ts > t.__fs_ts")


def floor_batch(connection: Any, batch: Any) -> int:
    """The floor of a batch push: in one transaction, a batch number, binary COPY of the rows into the landing
    table and the window view's events table, and each user's latest row upserted (newer times win)."""
    import pyarrow as pa

    arrived = now_us()
    user_id = batch.column("user_id").to_numpy()
    ts = batch.column("ts").cast(pa.int64()).to_numpy()
    amount = batch.column("amount").to_numpy()
    known = np.maximum(ts, arrived)
    rows = len(user_id)
    order = np.lexsort((ts, user_id))
    last = order[np.r_[user_id[order][1:] != user_id[order][:-1], True]]
    with connection.transaction():
        cursor = connection.cursor()
        number = cursor.execute(f"SELECT nextval('{FLOOR}.batches')").fetchone()[0]
        with cursor.copy(f"COPY {FLOOR}.landing (user_id, ts, amount, ingested_at, __fs_batch) "
                         "FROM STDIN (FORMAT binary)") as copy:
            copy.write(encode_copy([(user_id, "i8"), (ts, "ts"), (amount, "f8"),
                                    (np.full(rows, arrived, dtype=np.int64), "ts"),
                                    (np.full(rows, number, dtype=np.int64), "i8")]))
        with cursor.copy(f"COPY {FLOOR}.events ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(encode_copy([(user_id, "i8"), (ts, "ts"), (known, "ts"), (ts, "ts"), (amount, "f8")]))
        cursor.execute(UPSERT_LATEST, [user_id[last].tolist(), ts[last].tolist(), known[last].tolist(),
                                       amount[last].tolist()])
    return rows


def make_batches(setup: Setup, rng: np.random.Generator, count: int, rows: int) -> list[Any]:
    """`count` Arrow tables of `rows` rows in the source's columns but the arrival (stamped by the push)."""
    import pyarrow as pa

    times = setup.clock.take(count * rows)
    out = []
    for number in range(count):
        ts = pa.array(times[number * rows:(number + 1) * rows]).cast(pa.timestamp("us", tz="UTC"))
        out.append(pa.table({"user_id": pa.array(rng.integers(0, setup.users, rows), pa.int64()), "ts": ts,
                             "amount": pa.array(np.round(rng.random(rows) * 100, 2))}))
    return out


def as_rows(batch: Any) -> list[Row]:
    import pyarrow as pa

    return list(zip(batch.column("user_id").to_pylist(), batch.column("ts").cast(pa.int64()).to_pylist(),
                    batch.column("amount").to_pylist()))


def run_sdk(setup: Setup, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Part 2: `--batches` pushes of `--batch-rows` rows per block, ours (store.push) and the floor (COPY)
    alternating blocks for `--sdk-rounds` rounds; both push the same batches."""
    import psycopg

    store, url = setup.store, setup.url
    rng = np.random.default_rng(SEED + 5)
    sent: dict[str, list[Row]] = {name: [] for name in CONTENDERS}
    problems: list[str] = []
    with psycopg.connect(url) as connection:
        def push(name: str, batch: Any) -> None:
            if name == "floor":
                floor_batch(connection, batch)
                return
            result = store.push(SOURCE, batch)
            if result.rows != batch.num_rows or list(result.views_updated) != UPDATED:
                problems.append(f"store.push answered rows={result.rows}, views_updated={result.views_updated}")

        # Before timing: one batch to each, then both sides' tables hold the same new rows.
        since = datetime.now(UTC)
        batches = {name: max_batch(url, setup.tables[name]) for name in CONTENDERS}
        [first] = make_batches(setup, rng, 1, args.batch_rows)
        for name in CONTENDERS:
            push(name, first)
        rows = as_rows(first)
        for name in CONTENDERS:
            problems += verify(url, setup.tables[name], batches[name], since, rows, name)
        setup.expected.add(rows)
        if problems:
            raise results_differ("\n  ".join(problems[:10]))

        since = datetime.now(UTC)
        batches = {name: max_batch(url, setup.tables[name]) for name in CONTENDERS}
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}  # seconds per block
        per_batch: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for number in range(args.sdk_rounds):
            round_batches = make_batches(setup, rng, args.batches, args.batch_rows)
            for name in rotated(CONTENDERS, number):
                gc.collect()
                spent = 0.0
                for batch in round_batches:
                    seconds, _ = timed(lambda name=name, batch=batch: push(name, batch))
                    spent += seconds
                    per_batch[name].append(seconds)
                    sent[name].extend(as_rows(batch))
                times[name].append(spent)
            rows_per_block = args.batches * args.batch_rows
            log(f"SDK batches, round {number + 1}/{args.sdk_rounds}: ours {rows_per_block / times['ours'][-1]:,.0f} "
                f"rows/s, floor {rows_per_block / times['floor'][-1]:,.0f} rows/s")
    if problems:
        raise results_differ("\n  ".join(problems[:10]))
    for name in CONTENDERS:
        problems += verify(url, setup.tables[name], batches[name], since, sent[name], name)
    setup.expected.add(sent["ours"])
    problems += check_lookups_in_process(store, setup.expected, sample_users(setup.expected, setup.users, SEED + 6))
    if problems:
        raise results_differ("\n  ".join(problems[:10]))
    rows_per_block = args.batches * args.batch_rows
    rps = {name: [rows_per_block / t for t in times[name]] for name in CONTENDERS}
    med = {name: median(values) for name, values in rps.items()}
    ratio = med["ours"] / med["floor"] if med["floor"] else None
    return {"batch_rows": args.batch_rows, "batches_per_block": args.batches, "rounds": args.sdk_rounds,
            "rows_per_second": rps, "median_rows_per_second": med, "ratio": ratio,
            "batch_ms": {name: percentiles(np.array(values) * 1000, (50, 99)) for name, values in per_batch.items()},
            "verdict": None if ratio is None else "PASS" if ratio >= SDK_TARGET else "FAIL",
            "checks": [f"a first batch pushed to both left the same rows in both sides' tables; after the timed "
                       f"batches each side's tables hold exactly the rows it was sent ({len(sent['ours']):,} each) and "
                       f"{CHECK_USERS} store.online lookups equal the expected cards_1d, spent_1d and amount"]}


# --------------------------------------------------------------------------- part 4: compaction


def compact_rows(rng: np.random.Generator, rows: int, users: int) -> Any:
    """Rows that carry their own arrivals (a backfill) over the last 3 days, so compaction writes several days."""
    import pyarrow as pa

    utc_us = pa.timestamp("us", tz="UTC")
    arrival = now_us() - rng.integers(0, 3 * DAY_US, rows)
    ts = arrival - rng.integers(0, 600_000_000, rows)
    return pa.table({"user_id": pa.array(rng.integers(0, users, rows), pa.int64()),
                     "ts": pa.array(ts).cast(utc_us), "amount": pa.array(np.round(rng.random(rows) * 100, 2)),
                     "ingested_at": pa.array(arrival).cast(utc_us)})


def land_floor(url: str, rows: Any) -> None:
    """The same rows into the floor's landing table, in the same chunks (one batch number each)."""
    import psycopg
    import pyarrow as pa

    with psycopg.connect(url) as connection, connection.transaction():
        cursor = connection.cursor()
        for start in range(0, rows.num_rows, COMPACT_CHUNK):
            chunk = rows.slice(start, COMPACT_CHUNK)
            number = cursor.execute(f"SELECT nextval('{FLOOR}.compact_batches')").fetchone()[0]
            columns = [(chunk.column("user_id").to_numpy(), "i8"),
                       (chunk.column("ts").cast(pa.int64()).to_numpy(), "ts"),
                       (chunk.column("amount").to_numpy(), "f8"),
                       (chunk.column("ingested_at").cast(pa.int64()).to_numpy(), "ts"),
                       (np.full(chunk.num_rows, number, dtype=np.int64), "i8")]
            with cursor.copy(f"COPY {FLOOR}.compact_landing (user_id, ts, amount, ingested_at, __fs_batch) "
                             "FROM STDIN (FORMAT binary)") as copy:
                copy.write(encode_copy(columns))


def floor_compact(url: str, out: Path, schema: Any) -> int:
    """The floor of a compaction: in one transaction, the landed rows read with COPY binary into Arrow, one Parquet
    file per arrival day (UTC) written with pyarrow, synced and renamed into place, and the rows deleted."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    with psycopg.connect(url) as connection, connection.transaction():
        cursor = connection.cursor()
        last = cursor.execute(f"SELECT last_value FROM {FLOOR}.compact_batches").fetchone()[0]
        data = bytearray()
        with cursor.copy(f"COPY (SELECT user_id, ts, amount, ingested_at FROM {FLOOR}.compact_landing "
                         f"WHERE __fs_batch <= {int(last)}) TO STDOUT (FORMAT binary)") as copy:
            for chunk in copy:
                data += chunk
        user_id, ts, amount, arrival = decode_copy(data, ["i8", "ts", "f8", "ts"])
        frame = pa.table([pa.array(user_id), pa.array(ts).cast(schema.field("ts").type), pa.array(amount),
                          pa.array(arrival).cast(schema.field("ingested_at").type)], schema=schema)
        days = arrival // DAY_US
        for day in np.unique(days):
            target = out / f"ingested_at_date={np.datetime64(int(day), 'D')}" / "part.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            pq.write_table(frame.take(np.flatnonzero(days == day)), partial)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, target)
        cursor.execute(f"DELETE FROM {FLOOR}.compact_landing WHERE __fs_batch <= %s", [last])
    return len(user_id)


def sorted_columns(frame: Any) -> list[np.ndarray]:
    import pyarrow as pa

    columns = [frame.column(n).cast(pa.int64()).to_numpy() if n in ("ts", "ingested_at") else frame.column(n).to_numpy()
               for n in ("user_id", "ts", "amount", "ingested_at")]
    order = np.lexsort(columns[::-1])
    return [c[order] for c in columns]


def compare_compacted(ours: Any, floor: Any, pushed: Any) -> list[str]:
    problems = []
    if not ours.schema.equals(floor.schema):
        problems.append(f"our compacted files' schema {ours.schema} differs from the floor's {floor.schema}")
    want = sorted_columns(pushed)
    for who, frame in (("ours", ours), ("floor", floor)):
        if frame.num_rows != pushed.num_rows:
            problems.append(f"{who}: {frame.num_rows:,} rows in the compacted files, {pushed.num_rows:,} pushed")
            continue
        got = sorted_columns(frame)
        if not all(np.array_equal(g, w) for g, w in zip(got, want)):
            problems.append(f"{who}: the compacted files' rows differ from the pushed rows")
    return problems


def run_compact(setup: Setup, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Part 4: each round lands the same rows for ours (store.push, chunks of 100k) and the floor (COPY), then
    times store.compact() and the floor in alternating order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store, url = setup.store, setup.url
    rng = np.random.default_rng(SEED + 7)
    schema = pq.read_schema(setup.project / "data" / f"{COMPACT_SOURCE}.parquet")
    out = setup.folder / "floor_pushed"
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    checks: list[str] = []
    files: list[int] = []
    for number in range(args.compact_rounds):
        rows = compact_rows(rng, args.compact_rows, setup.users)
        first_batch = int(sql_rows(url, "SELECT coalesce(max(id), 0) FROM featurestore_push.batches")[0][0])
        landing, _ = timed(lambda rows=rows: [store.push(COMPACT_SOURCE, rows.slice(s, COMPACT_CHUNK))
                                              for s in range(0, rows.num_rows, COMPACT_CHUNK)])
        land_floor(url, rows)
        for statement in (f"VACUUM ANALYZE {setup.tables['ours'].compact}", f"VACUUM ANALYZE {FLOOR_TABLES.compact}",
                          "VACUUM ANALYZE featurestore_push.batches", "CHECKPOINT"):
            with contextlib.suppress(Exception):
                sql_rows(url, statement)
        shutil.rmtree(out, ignore_errors=True)
        compaction = None
        for name in rotated(CONTENDERS, number):
            if name == "ours":
                seconds, done = timed(lambda: store.compact([COMPACT_SOURCE]), collect=True)
                [compaction] = done
            else:
                seconds, moved = timed(lambda: floor_compact(url, out, schema), collect=True)
                if moved != rows.num_rows:
                    raise results_differ(f"the floor compacted {moved:,} rows, {rows.num_rows:,} were landed")
            times[name].append(seconds)
        assert compaction is not None
        files.append(compaction.files)
        left = {name: sql_rows(url, f"SELECT count(*) FROM {setup.tables[name].compact}")[0][0] for name in CONTENDERS}
        problems = [f"{name}: {count:,} rows left in the landing table after compaction"
                    for name, count in left.items() if count]
        if compaction.rows != rows.num_rows:
            problems.append(f"store.compact() moved {compaction.rows:,} rows, {rows.num_rows:,} were landed")
        if number == 0:
            paths = [r[0] for r in sql_rows(url, "SELECT path FROM featurestore_push.files WHERE source = %s AND "
                                                 "first_batch > %s ORDER BY path", [COMPACT_SOURCE, first_batch])]
            ours = pa.concat_tables([pq.read_table(store.settings.state_dir / p) for p in paths])
            floor_files = sorted(out.rglob("*.parquet"))
            floor = pa.concat_tables([pq.read_table(p) for p in floor_files])
            problems += compare_compacted(ours, floor, rows)
            ours_days = sorted(Path(p).parent.name for p in paths)
            floor_days = sorted(p.parent.name for p in floor_files)
            if ours_days != floor_days:
                problems.append(f"ours wrote files for {ours_days}, the floor for {floor_days}")
            checks.append(f"round 1: our {len(paths)} compacted files (one per arrival day) and the floor's hold the "
                          f"same {rows.num_rows:,} rows as pushed, with the same schema; every round: both landing "
                          "tables empty afterwards, store.compact() reports every row moved")
        if problems:
            raise results_differ("\n  ".join(problems))
        log(f"compaction, round {number + 1}/{args.compact_rounds}: ours {times['ours'][-1]:.2f}s "
            f"({compaction.files} files), floor {times['floor'][-1]:.2f}s; landing by store.push took {landing:.1f}s")
    shutil.rmtree(out, ignore_errors=True)
    med = {name: median(values) for name, values in times.items()}
    ratio = med["ours"] / med["floor"] if med["floor"] else None
    return {"rows": args.compact_rows, "rounds": args.compact_rounds, "seconds": times, "median_seconds": med,
            "ratio": ratio, "files": files, "verdict": verdict(ratio, COMPACT_TARGET), "checks": checks}


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    setup = prepare(args, log)
    result: dict[str, Any] = {"postgres_server_version": setup.server_version, "materialized": setup.materialized,
                              "online_rows_at_start": setup.online_rows, "project": str(setup.project), "checks": []}
    try:
        if "http" in args.sections or "raw" in args.sections:
            services, endpoints = start_services(setup, 1, args.floor_pool)
            result["logs"] = {name: str(service.log_path) for name, service in services.items()}
            try:
                problems = check_services(setup, endpoints)
                if problems:
                    raise results_differ("\n  ".join(problems[:10]))
                result["checks"].append(f"before timing: {CHECK_ROWS} identical one-row pushes to both services left "
                                        "the same landed rows, window events and snapshot rows in both sides' tables; "
                                        f"ours answered views_updated {UPDATED}; {CHECK_USERS} lookups over HTTP "
                                        "equal the expected values")
                if "http" in args.sections:
                    log(f"HTTP: 1-row pushes, {args.rounds} blocks of {args.seconds:g}s per contender at "
                        f"{', '.join(map(str, args.concurrency))} in flight")
                    result["http"] = run_http(setup, endpoints, services, args, log)
                    result["checks"] += result["http"].pop("checks")
                if "raw" in args.sections:
                    log(f"read after write: {args.raw_pushes:,} pushes each followed by a lookup")
                    result["raw"] = run_raw(setup, endpoints["ours"], args, log)
            finally:
                stop_services(setup, services)
        if "sdk" in args.sections:
            log(f"SDK: {args.sdk_rounds} rounds of {args.batches} batches of {args.batch_rows:,} rows per contender")
            result["sdk"] = run_sdk(setup, args, log)
            result["checks"] += result["sdk"].pop("checks")
        if "compact" in args.sections:
            log(f"compaction: {args.compact_rounds} rounds of {args.compact_rows:,} landed rows per contender")
            result["compact"] = run_compact(setup, args, log)
            result["checks"] += result["compact"].pop("checks")
        ours = setup.tables["ours"]
        result["online_rows_at_end"] = {name: sql_rows(setup.url, f"SELECT count(*) FROM {getattr(ours, name)}")[0][0]
                                        for name in ("events", "latest")}
    finally:
        setup.store.close()
    return result


def judge(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    targets = []
    for cell in result.get("http", {}).get("cells", []):
        targets.append({"target": f"1 row over HTTP, {cell['concurrency']} in flight: ours p99 <= {HTTP_P99_TARGET}x "
                                  "the floor's", "ours": cell["ours"]["p99_ms"], "floor": cell["floor"]["p99_ms"],
                        "ratio": cell["p99_ratio"], "unit": "ms", "verdict": cell["verdict"]})
    if "sdk" in result:
        s = result["sdk"]
        targets.append({"target": f"{s['batch_rows']:,}-row batches via the SDK: ours rows/s >= {SDK_TARGET}x the "
                                  "floor's", "ours": s["median_rows_per_second"]["ours"],
                        "floor": s["median_rows_per_second"]["floor"], "ratio": s["ratio"], "unit": "rows/s",
                        "verdict": s["verdict"]})
    if "raw" in result:
        r = result["raw"]
        targets.append({"target": f"read after write over HTTP: 0 misses in {r['pushes']:,}", "ours": r["misses"],
                        "floor": None, "ratio": None, "unit": "misses", "verdict": r["verdict"]})
    if "compact" in result:
        c = result["compact"]
        targets.append({"target": f"compaction of {c['rows']:,} landed rows: ours <= {COMPACT_TARGET}x the floor's "
                                  "time",
                        "ours": c["median_seconds"]["ours"], "floor": c["median_seconds"]["floor"],
                        "ratio": c["ratio"], "unit": "s", "verdict": c["verdict"]})
    return targets


# --------------------------------------------------------------------------- reporting


def print_report(report: dict[str, Any]) -> None:
    s, settings = report["result"], report["settings"]
    console = header(report, "Push benchmark", 150, versions_note=f", PostgreSQL {s['postgres_server_version']}")
    start, end = s["online_rows_at_start"], s.get("online_rows_at_end", {})
    console.print(f"data: {settings['events']:,} generated events of {settings['users']:,} users; online at start "
                  f"{start['events']:,} window events and {start['latest']:,} snapshot rows"
                  + (f", at the end {end['events']:,} and {end['latest']:,}" if end else ""))
    if "http" in s:
        cells = table(f"1. One row per push over HTTP (1 worker each); {settings['rounds']} alternating blocks of "
                      f"{settings['seconds']:g}s per contender and concurrency after {settings['warmup']:g}s of "
                      "warm-up; latency in ms as the client sees it",
                      ("in flight", "contender", "requests", "req/s", "p50", "p90", "p99", "max", "p99 per block",
                       "service CPU µs/req", "PostgreSQL CPU µs/req", "errors"), left=("contender",))
        for cell in s["http"]["cells"]:
            for name in CONTENDERS:
                c = cell[name]
                cpu = c["cpu_us_per_request"]
                errors = str(c["errors"]) if not c["errors"] else f"[bold red]{c['errors']}[/bold red]"
                cells.add_row(str(cell["concurrency"]), name, f"{c['requests']:,}", f"{c['rps']:,.1f}",
                              f"{c['p50_ms']:.2f}", f"{c['p90_ms']:.2f}", f"{c['p99_ms']:.2f}", f"{c['max_ms']:.2f}",
                              spread(c["p99_blocks_ms"]), f"{cpu['service']:,.0f}",
                              f"{cpu['postgres']:,.0f}" if report["postgres_cpu_measured"] else "-", errors)
            cells.add_row("", "ours / floor", "", f"{cell['ours']['rps'] / cell['floor']['rps']:.2f}x",
                          f"{cell['p50_ratio']:.2f}x", "", f"{cell['p99_ratio']:.2f}x", "", "", "", "", "")
        console.print(cells)
    if "sdk" in s:
        d = s["sdk"]
        sdk = table(f"2. Batches of {d['batch_rows']:,} rows via the SDK (Arrow table); {d['rounds']} alternating "
                    f"blocks of {d['batches_per_block']} batches per contender",
                    ("contender", "rows/s (median)", "min-max", "ms per batch p50", "p99"), left=("contender",))
        for name in CONTENDERS:
            sdk.add_row(name, f"{d['median_rows_per_second'][name]:,.0f}", spread(d["rows_per_second"][name], 0),
                        f"{d['batch_ms'][name]['p50']:.1f}", f"{d['batch_ms'][name]['p99']:.1f}")
        sdk.add_row("ours / floor", f"{d['ratio']:.2f}x", "", "", "")
        console.print(sdk)
    if "raw" in s:
        r = s["raw"]
        raw = table("3. Read after write over HTTP: push one row, then look its user up at once",
                    ("pushes", "visible at return", "misses", "never visible (10 s)", "max ms until visible",
                     "push p50 / p99 ms", "lookup p50 / p99 ms", "errors"), left=())
        push, look = r["push_ms"], r["lookup_ms"]
        raw.add_row(f"{r['pushes']:,}", f"{r['visible_at_return']:,}", str(r["misses"]), str(r["never_visible"]),
                    f"{r['max_visible_after_ms']:.1f}", f"{push.get('p50', 0):.1f} / {push.get('p99', 0):.1f}",
                    f"{look.get('p50', 0):.2f} / {look.get('p99', 0):.2f}", str(r["errors"]))
        console.print(raw)
        for kind, sample in r["samples"].items():
            console.print(f"  [red]{kind}[/red]: {sample}")
    if "compact" in s:
        c = s["compact"]
        compact = table(f"4. Compaction of {c['rows']:,} landed rows (3 arrival days); {c['rounds']} rounds, order "
                        "alternating", ("contender", "median s", "min-max", "rows/s"), left=("contender",))
        for name in CONTENDERS:
            compact.add_row(name, f"{c['median_seconds'][name]:.2f}", spread(c["seconds"][name]),
                            f"{c['rows'] / c['median_seconds'][name]:,.0f}")
        compact.add_row("ours / floor", f"{c['ratio']:.2f}x", "", "")
        console.print(compact)
    targets = table("Targets", ("target", "ours", "floor", "ratio", "verdict"), left=("target",))
    for t in report["targets"]:
        fmt = {"ms": "{:.2f} ms", "rows/s": "{:,.0f}", "s": "{:.2f} s", "misses": "{:,}"}[t["unit"]]
        targets.add_row(t["target"], fmt.format(t["ours"]), "-" if t["floor"] is None else fmt.format(t["floor"]),
                        "-" if t["ratio"] is None else f"{t['ratio']:.2f}x", mark(t["verdict"], "", "-"))
    console.print(targets)
    console.print("  ours: featurestore serve / store.push / store.compact. floors: 1. Starlette + orjson + psycopg "
                  f"AsyncConnectionPool of {settings['floor_pool']}: INSERT landing (batch from a sequence), INSERT "
                  "event, INSERT ... ON CONFLICT DO UPDATE WHERE newer, one transaction; 2. one connection, one "
                  "transaction: nextval, COPY binary (NumPy-encoded) into landing and events, upsert of each user's "
                  "latest row from arrays; 4. COPY binary out into NumPy/Arrow, pyarrow Parquet per arrival day, "
                  "fsync, rename, DELETE, one transaction. Floor tables: LIKE ours INCLUDING ALL, same storage "
                  "parameters, same PostgreSQL. The floors keep no idempotency record and prune no old events.")
    for check in s["checks"]:
        console.print(f"  check: {check}")
    if report["errors_total"]:
        console.print(f"[bold red]ERRORS: {report['errors_total']} failed requests[/bold red] "
                      f"{s.get('http', {}).get('error_samples', {})}; the run fails. Logs: {s.get('logs')}")
    if s.get("raw", {}).get("misses"):
        console.print(f"[bold red]READ AFTER WRITE: {s['raw']['misses']} misses[/bold red]; the run fails.")


# --------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def _sections(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in values if x not in SECTIONS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got {text!r}")
    return values



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of 1-2 minutes: {QUICK['events']:,} events, {QUICK['seconds']:g}s blocks, "
                             f"{QUICK['raw_pushes']} read-after-write pushes, {QUICK['compact_rows']:,} rows compacted")
    parser.add_argument("--events", type=positive_int,
                        help=f"generated events in card_events (default {DEFAULTS['events']:,})")
    parser.add_argument("--users", type=positive_int, help=f"users (default {DEFAULTS['users']:,})")
    parser.add_argument("--seconds", type=float, help="1. measured seconds per HTTP block and contender (default 10)")
    parser.add_argument("--warmup", type=float, help="1. warm-up seconds per contender and concurrency (default 2)")
    parser.add_argument("--rounds", type=positive_int,
                        help="1. alternating HTTP blocks per contender and concurrency (3)")
    parser.add_argument("--concurrency", type=_int_list, default=[1, 16],
                        help="1. requests in flight, comma-separated (default 1,16)")
    parser.add_argument("--floor-pool", type=positive_int, default=8,
                        help="1. the HTTP floor's connections (default 8, the SDK's lookup pool size)")
    parser.add_argument("--raw-pushes", type=positive_int, help="3. read-after-write pushes (default 10,000)")
    parser.add_argument("--batch-rows", type=positive_int, default=1000, help="2. rows per SDK batch (default 1,000)")
    parser.add_argument("--batches", type=positive_int, help="2. batches per block (default 10)")
    parser.add_argument("--sdk-rounds", type=positive_int, help="2. alternating blocks per contender (default 5)")
    parser.add_argument("--compact-rows", type=positive_int, help="4. landed rows per compaction (default 1,000,000)")
    parser.add_argument("--compact-rounds", type=positive_int, help="4. compactions per contender (default 3)")
    parser.add_argument("--sections", type=_sections, default=list(SECTIONS),
                        help=f"the parts to run, comma-separated (default {','.join(SECTIONS)})")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "featurestore-bench"),
                        help="where the benchmark project goes (deleted and written again every run)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = progress()
    if os.environ.get("FEATURESTORE_POSTGRES_URL"):
        log("FEATURESTORE_POSTGRES_URL is set: schemas featurestore_online, featurestore_push and bench_floor of that "
            "database are dropped and rewritten; PostgreSQL's CPU is not measured")
    found_versions = versions("fastapi", "starlette", "uvicorn", "orjson", "psycopg", "psycopg-pool", "polars")
    found_machine = machine()  # the load at the start
    result = run(args, log)
    errors = result.get("http", {}).get("errors", 0) + result.get("raw", {}).get("errors", 0)
    settings = {name: getattr(args, name) for name in ("events", "users", "seconds", "warmup", "rounds", "concurrency",
                                                        "floor_pool", "raw_pushes", "batch_rows", "batches",
                                                        "sdk_rounds", "compact_rows", "compact_rounds", "sections",
                                                        "quick")}
    report: dict[str, Any] = {"command": command(), "machine": found_machine, "versions": found_versions,
                              "settings": settings, "result": result, "targets": judge(result, args),
                              "errors_total": errors,
                              "postgres_cpu_measured": not os.environ.get("FEATURESTORE_POSTGRES_URL")}
    if warning := changed_during_run(found_versions):
        report["warning"] = warning
    emit(report, args.format, print_report)
    if errors or result.get("raw", {}).get("misses"):
        sys.exit(1)


if __name__ == "__main__":
    main()
