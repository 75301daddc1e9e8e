"""HTTP lookup service benchmark: `featurestore serve` under load against a minimal hand-written service, in one run.

    python benchmarks/serve.py                          # 4M events (~100k users), 10 s per cell, 1 and 2 workers
    python benchmarks/serve.py --duration 3 --workers 1 # a quicker look
    python benchmarks/serve.py --format json > result.json

The events of `snapshot_data.py` (same generator, seed and `--workdir`) feed one snapshot
view, `snap` (user_id, ts, f0..f9, no TTL, so every looked-up value is the stored one),
materialized into PostgreSQL. Two services, each a separate uvicorn process on 127.0.0.1
with the same number of workers, answer the same requests on the same PostgreSQL:

- ours: `featurestore serve` (POST /v1/features, FastAPI);
- the floor: a minimal Starlette app written by this script (POST /lookup: orjson, one
  psycopg AsyncConnectionPool, `SELECT ... WHERE user_id = ANY(%s)`, the same JSON answer).

Before any timing both must give the same answers for the same requests (else the run stops
with RESULTS DIFFER). Then this process keeps a fixed number of requests in flight (1, 16, 64),
each on its own HTTP/1.1 keep-alive connection and for random known users (1 or 100 entities,
all 10 features): 2 s of warm-up, then `--duration` seconds measured, ours and the floor
alternating cell by cell. The load generator is asyncio with a minimal HTTP/1.1 client
(`--client raw`, ~0.1 ms of CPU per request) or httpx.AsyncClient (`--client httpx`, 1-2 ms per
request: on a small machine it is then the bottleneck). It shares the machine with both services
and PostgreSQL. It reports requests/s, latency percentiles, errors (any non-200 or failed request
fails the run, exit status 1) and the CPU each side used per request, and PASS/FAIL against the
targets. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from harness import (
    changed_during_run,
    command,
    emit,
    header,
    machine,
    percentiles,
    progress,
    rotated,
    table,
    timed,
    verdict,
    versions,
)
from services import (
    HEADERS,
    TICKS_PER_SECOND,
    Service,
    free_port,
    launch,
    processes,
    release_handles,
    server_url,
    stop,
    tree,
    wait_ready,
)
from snapshot_data import Case, ensure_data, last_event, make_case

FEATURES = 10
SIZES = (1, 100)                 # entities per request
CONCURRENCY = (1, 16, 64)        # requests in flight
TARGET_CELL = 16                 # the targets are judged at this concurrency
RPS_TARGET = 0.9                 # 1 entity: ours req/s >= 0.9x the floor's
P99_TARGET_1 = 1.5               # 1 entity: ours p99 <= 1.5x the floor's
P99_TARGET_100 = 2.0             # 100 entities: ours p99 <= 2x the floor's
BODIES = 2048                    # distinct request bodies per size, cycled in the same order for both sides
CHECKED_REQUESTS = 25            # requests per size compared between the two services before timing
CONTENDERS = ("ours", "floor")

FLOOR_APP = '''\
"""The floor: what a careful engineer writes by hand to serve one view's online rows (benchmarks/serve.py)."""

import os
from contextlib import asynccontextmanager

import orjson
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

FEATURES = [f"f{i}" for i in range(int(os.environ["FLOOR_FEATURES"]))]
NAMES = ["snap." + f for f in FEATURES]
STATEMENT = f"SELECT user_id, {', '.join(FEATURES)} FROM {os.environ['FLOOR_TABLE']} WHERE user_id = ANY(%s)"
MISSING = (None,) * (len(FEATURES) + 1)
POOL_SIZE = int(os.environ["FLOOR_POOL"])
pool = AsyncConnectionPool(os.environ["FLOOR_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
                           kwargs={"autocommit": True, "prepare_threshold": 0})


@asynccontextmanager
async def lifespan(app):
    await pool.open(wait=True)
    yield
    await pool.close()


async def lookup(request):
    body = orjson.loads(await request.body())
    ids = body["entities"]["user_id"]
    async with pool.connection() as connection:
        cursor = await connection.execute(STATEMENT, [ids])
        rows = await cursor.fetchall()
    found = {row[0]: row for row in rows}  # ANY() returns rows in no order: request order, NULLs for unknown ids
    ordered = [found.get(key, MISSING) for key in ids]
    columns = list(zip(*ordered)) if ordered else [()] * (len(FEATURES) + 1)
    return Response(orjson.dumps({"entities": {"user_id": ids},
                                  "features": {name: list(column) for name, column in zip(NAMES, columns[1:])},
                                  "warnings": []}), media_type="application/json")


app = Starlette(routes=[Route("/lookup", lookup, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":  # python floor_app.py HOST PORT WORKERS: served as `featurestore serve` serves
    import sys

    import uvicorn

    from server.workers import run_workers

    host, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = uvicorn.Config("floor_app:app", host=host, port=port, workers=workers, log_level="warning",
                            access_log=False)
    run_workers(config)  # listening as featurestore serve does: a socket per worker (SO_REUSEPORT), TCP_NODELAY
'''


# --------------------------------------------------------------------------- the project


def write_project(folder: Path, case: Case) -> Path:
    """The benchmark's `snap` view, like snapshot_data.py's but without a TTL: lookups at the current time see
    every stored value (the data is from 2024), so the answers carry real numbers to compare."""
    (folder / "definitions").mkdir(parents=True, exist_ok=True)
    (folder / "featurestore.toml").write_text(
        f'definitions = "definitions"\n\n[sources]\nevents = {json.dumps(str(case.events))}\n')
    (folder / "definitions" / "snap.sql").write_text(
        "-- entity: user_id\n-- timestamp: ts\n-- owner: bench@example.com\n"
        "-- description: benchmark snapshot view (no TTL)\n"
        f"SELECT user_id, ts, {', '.join(case.feature_names)} FROM events\n")
    return folder


def our_pool_size() -> int:
    """The SDK's lookup pool size per worker process (the asynchronous pool if there is one), for the floor's."""
    from featurestore.engines import postgres

    for name in ("async_pool", "pool"):
        function = getattr(postgres, name, None)
        if function is not None:
            default = inspect.signature(function).parameters.get("max_size")
            if default is not None and isinstance(default.default, int):
                return default.default
    return 8


# --------------------------------------------------------------------------- CPU accounting (Linux /proc)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    total = sum(fields[:8])
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (total - idle) / TICKS_PER_SECOND, total / TICKS_PER_SECOND


@dataclass
class CpuSnapshot:
    at: float
    client: float
    per_pid: dict[int, tuple[int, float]]
    busy: tuple[float, float]


def cpu_snapshot() -> CpuSnapshot:
    return CpuSnapshot(time.perf_counter(), time.process_time(), processes(), machine_busy())


def cpu_used(before: CpuSnapshot, after: CpuSnapshot, root: int | None) -> float:
    """CPU seconds the process tree at `root` used between the snapshots (processes that exited in between are lost)."""
    members = tree(after.per_pid, root)
    return sum(after.per_pid[pid][1] - before.per_pid.get(pid, (0, 0.0))[1] for pid in members)


def postgres_root(store: Any) -> int | None:
    """The embedded PostgreSQL's postmaster (None for a server named by FEATURESTORE_POSTGRES_URL)."""
    if store.settings.postgres_url:
        return None
    try:
        return int((store.settings.state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- the services


def service_commands(project: Path, folder: Path, workers: int, floor_env: dict[str, str]) -> dict[str, Any]:
    ours_port, floor_port = free_port(), free_port()
    while floor_port == ours_port:
        floor_port = free_port()
    env = dict(os.environ)
    return {
        "ours": ([sys.executable, "-m", "featurestore.cli.main", "--project", str(project), "serve",
                  "--host", "127.0.0.1", "--port", str(ours_port), "--workers", str(workers)], env,
                 f"http://127.0.0.1:{ours_port}/v1/features"),
        "floor": ([sys.executable, str(folder / "floor_app.py"), "127.0.0.1", str(floor_port), str(workers)],
                  {**env, **floor_env, "PYTHONPATH": str(folder)}, f"http://127.0.0.1:{floor_port}/lookup"),
    }


# --------------------------------------------------------------------------- load


def bodies(user_ids: list[int], size: int, count: int, seed: int) -> list[bytes]:
    import orjson

    rng = random.Random(seed * 1000 + size)
    return [orjson.dumps({"entities": {"user_id": rng.sample(user_ids, size)}, "features": ["snap.*"]})
            for _ in range(count)]


async def compare(services: dict[str, Service], requests: list[bytes]) -> int:
    """Send each request to both services; their parsed answers must be equal. Returns the number compared."""
    import httpx
    import orjson

    values = 0
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        for body in requests:
            answers = {}
            for name, service in services.items():
                response = await client.post(service.url, content=body, headers=HEADERS)
                if response.status_code != 200:
                    raise SystemExit(f"{name} answered {response.status_code} to a check request {body[:200]!r}: "
                                     f"{response.text[:500]}")
                answers[name] = orjson.loads(response.content)
            if answers["ours"] != answers["floor"]:
                ids = orjson.loads(body)["entities"]["user_id"]
                ours, floor = answers["ours"], answers["floor"]
                detail = next((f"{key}: ours {ours.get('features', {}).get(key)!r}, floor {value!r}"
                               for key, value in floor["features"].items()
                               if ours.get("features", {}).get(key) != value),
                              f"ours {json.dumps(ours)[:300]}, floor {json.dumps(floor)[:300]}")
                raise SystemExit("RESULTS DIFFER, benchmark aborted (a benchmark of a wrong answer is worthless):\n"
                                 f"  {len(ids)} entities {ids[:5]}...: {detail}")
            if len(answers["ours"]["features"]) != FEATURES:
                raise SystemExit(f"unexpected answer: {json.dumps(answers['ours'])[:500]}")
            values += sum(v is not None for column in answers["ours"]["features"].values() for v in column)
    if not values:
        raise SystemExit("every looked-up value is NULL: the benchmark view should have no TTL")
    return len(requests)


class _Raw:
    """A minimal HTTP/1.1 keep-alive client on one connection (asyncio streams, TCP_NODELAY as asyncio sets it).

    Requests are prebuilt bytes; a response is read as its head and then exactly Content-Length bytes
    (both services always send one). About 80 µs of CPU per request here, against 1-2 ms for httpx.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> str | None:
        """Send one request; None when the answer is a complete 200, else what went wrong."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("a response without Content-Length")
            length = int(lower[at + 17:lower.index(b"\r\n", at + 2)])
            await self.reader.readexactly(length)
            if b"connection: close" in lower:
                await self.close()
            return None if status == b"200" else f"HTTP {status.decode(errors='replace')}"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            return type(exc).__name__

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class _Httpx:
    """httpx.AsyncClient holding one keep-alive connection (one per request in flight: a client shared by all
    of them, with limits sized to the concurrency, cost 2-8 ms of CPU per request here at 16-64 in flight)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.client = httpx.AsyncClient(trust_env=False, timeout=30, http1=True, http2=False,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def request(self, body: bytes) -> str | None:
        import httpx

        try:
            response = await self.client.post(self.url, content=body, headers=HEADERS)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if response.status_code == 200 else f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self.client.aclose()


def raw_requests(url: str, requests: list[bytes]) -> list[bytes]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = (f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()))
    return [f"{head}content-length: {len(body)}\r\n\r\n".encode() + body for body in requests]


async def drive(url: str, requests: list[bytes], concurrency: int, warmup: float, duration: float,
                client: str) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for warmup + duration seconds; measure the last `duration` seconds.

    Each request in flight has its own keep-alive connection; each sends the next body of `requests` (one
    shared cycle). Throughput counts responses completed in the measured window, and latencies are theirs.
    """
    from urllib.parse import urlsplit

    latencies: list[float] = []
    errors: dict[str, int] = {}
    warmup_errors = 0
    counter = itertools.count()
    state = {"recording": False, "stop": False}
    if client == "raw":
        parts = urlsplit(url)
        payloads = raw_requests(url, requests)
        connections: list[Any] = [_Raw(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(concurrency)]
    else:
        payloads = requests
        connections = [_Httpx(url) for _ in range(concurrency)]

    async def worker(connection: Any) -> None:
        nonlocal warmup_errors
        while not state["stop"]:
            payload = payloads[next(counter) % len(payloads)]
            started = time.perf_counter()
            try:
                problem = await connection.request(payload)
            except OSError as exc:  # e.g. the connection was refused
                problem = type(exc).__name__
            elapsed = time.perf_counter() - started
            if problem is not None:
                errors[problem] = errors.get(problem, 0) + 1
                if not state["recording"]:
                    warmup_errors += 1
                await asyncio.sleep(0.01)
            elif state["recording"]:
                latencies.append(elapsed)

    tasks = [asyncio.create_task(worker(c)) for c in connections]
    await asyncio.sleep(warmup)
    gc.collect()
    before = cpu_snapshot()
    state["recording"] = True
    await asyncio.sleep(duration)
    state["recording"] = False
    after = cpu_snapshot()
    state["stop"] = True
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:  # a request that never got its answer
        task.cancel()
        errors["no answer within 30s"] = errors.get("no answer within 30s", 0) + 1
    for connection in connections:
        await connection.close()
    seconds = after.at - before.at
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {"requests": len(latencies), "seconds": seconds, "rps": len(latencies) / seconds,
            **{f"{name}_ms": value for name, value in percentiles(ms, (50, 90, 99)).items()},
            "errors": sum(errors.values()), "errors_during_warmup": warmup_errors, "error_kinds": errors,
            "_cpu": (before, after)}


def account(cell: dict[str, Any], service: Service, postgres_pid: int | None) -> None:
    """CPU per request of the service's processes, PostgreSQL's, and this load generator's; machine busy share."""
    before, after = cell.pop("_cpu")
    requests = max(cell["requests"], 1)
    busy = (after.busy[0] - before.busy[0]) / max(after.busy[1] - before.busy[1], 1e-9)
    cell["cpu_us_per_request"] = {
        "service": cpu_used(before, after, service.process.pid) / requests * 1e6,
        "postgres": (cpu_used(before, after, postgres_pid) / requests * 1e6) if postgres_pid else None,
        "client": (after.client - before.client) / requests * 1e6,
    }
    cell["machine_busy"] = busy


# --------------------------------------------------------------------------- the run


def run(case: Case, workdir: Path, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    import psycopg

    from featurestore import FeatureStore

    ensure_data(case, log)
    folder = workdir / f"serve_rows{case.rows}_features{case.features}"
    project = write_project(folder / "project", case)
    (folder / "floor_app.py").write_text(FLOOR_APP)
    until = last_event(case) + timedelta(seconds=1)
    store = FeatureStore(project)
    seconds, runs = timed(lambda: store.materialize(until=until))
    log("materialized: " + ", ".join(f"{r.view} {r.mode} ({r.written:,} rows written)" for r in runs)
        + f" in {seconds:.1f}s")
    url = server_url(store)
    version = store.views["snap"].version
    table = f'featurestore_online."snap__{version}"'
    with psycopg.connect(url, autocommit=True) as connection:
        server_version = connection.execute("SHOW server_version").fetchone()[0]
        user_ids = [row[0] for row in connection.execute(f"SELECT user_id FROM {table} ORDER BY user_id")]
        connection.execute("DROP SCHEMA IF EXISTS featurestore_registry CASCADE")  # count this run's reads only
    if len(user_ids) < max(SIZES):
        raise SystemExit(f"only {len(user_ids)} users online; use more --rows")
    postgres_pid = postgres_root(store)
    ours_pool = our_pool_size()
    floor_pool = args.floor_pool or ours_pool
    floor_env = {"FLOOR_URL": url, "FLOOR_TABLE": table, "FLOOR_POOL": str(floor_pool),
                 "FLOOR_FEATURES": str(FEATURES)}
    load = {size: bodies(user_ids, size, BODIES, case.rows) for size in SIZES}
    unknown = max(user_ids) + 1000
    checks = {size: load[size][:CHECKED_REQUESTS - 1] for size in SIZES}
    import orjson

    for size in SIZES:  # unknown ids (NULLs) and a repeated id, in request order
        ids = orjson.loads(load[size][0])["entities"]["user_id"]
        odd = ([unknown] if size == 1 else [ids[0], unknown, *ids[1:size - 2], ids[0]])
        checks[size].append(orjson.dumps({"entities": {"user_id": odd}, "features": ["snap.*"]}))

    result: dict[str, Any] = {"users": len(user_ids), "table": table, "postgres_server_version": server_version,
                              "pool_size": {"ours": ours_pool, "floor": floor_pool}, "cells": [], "checks": [],
                              "logs": {}}
    idle_before = cpu_snapshot()
    time.sleep(1.0)
    idle_after = cpu_snapshot()
    result["machine_busy_before"] = ((idle_after.busy[0] - idle_before.busy[0])
                                     / max(idle_after.busy[1] - idle_before.busy[1], 1e-9))
    if result["machine_busy_before"] > 0.1:
        log(f"[bold red]warning:[/bold red] the machine was {result['machine_busy_before']:.0%} busy before the run")

    # This process imported DuckDB, pyarrow and the SDK: move what it holds out of the garbage collector's
    # reach, so a full collection (tens of ms over that heap) does not stall the load generator mid-run.
    gc.collect()
    gc.freeze()
    for workers in args.workers:
        commands = service_commands(project, folder, workers, floor_env)
        services: dict[str, Service] = {}
        try:
            for name in CONTENDERS:
                command, env, address = commands[name]
                log_path = folder / f"{name}-workers{workers}.log"
                services[name] = launch(name, command, env, address, workers, log_path)
                result["logs"][f"{name}-workers{workers}"] = str(log_path)
            for service in services.values():
                wait_ready(service, load[1][0])
            log(f"workers={workers}: ours pid {services['ours'].process.pid} at {services['ours'].url}, floor pid "
                f"{services['floor'].process.pid} at {services['floor'].url}")
            compared = sum(asyncio.run(compare(services, checks[size])) for size in SIZES)
            result["checks"].append(f"workers={workers}: {compared} requests ({CHECKED_REQUESTS} per size, with "
                                    "unknown and repeated ids) got equal answers from ours and the floor")
            cell_number = 0
            for size in SIZES:
                for concurrency in args.concurrency:
                    cell: dict[str, Any] = {"workers": workers, "entities": size, "concurrency": concurrency}
                    order = rotated(CONTENDERS, cell_number)
                    cell_number += 1
                    for name in order:
                        measured = asyncio.run(drive(services[name].url, load[size], concurrency, args.warmup,
                                                     args.duration, args.client))
                        account(measured, services[name], postgres_pid)
                        cell[name] = measured
                        if services[name].process.poll() is not None:
                            raise SystemExit(f"{name} (workers={workers}) died during the run; see "
                                             f"{services[name].log_path}")
                    cell["rps_ratio"] = cell["ours"]["rps"] / cell["floor"]["rps"] if cell["floor"]["rps"] else 0.0
                    cell["p99_ratio"] = cell["ours"]["p99_ms"] / cell["floor"]["p99_ms"]
                    cell["p50_ratio"] = cell["ours"]["p50_ms"] / cell["floor"]["p50_ms"]
                    result["cells"].append(cell)
                    o, f = cell["ours"], cell["floor"]
                    log(f"workers={workers} {size} entit{'y' if size == 1 else 'ies'} x{concurrency}: ours "
                        f"{o['rps']:,.0f} req/s p50 {o['p50_ms']:.2f} p99 {o['p99_ms']:.2f} ms ({o['errors']} errors); "
                        f"floor {f['rps']:,.0f} req/s p50 {f['p50_ms']:.2f} p99 {f['p99_ms']:.2f} ms "
                        f"({f['errors']} errors)")
        finally:
            for service in services.values():
                release_handles(store, stop(service))
    result["usage"] = usage_cost(store, url, version)
    result["checks"].append(f"usage: the services recorded {result['usage']['recorded_reads']:,} reads of snap "
                            "features in featurestore_registry.usage (written in the background and at shutdown)")
    store.close()
    return result


def usage_cost(store: Any, url: str, version: str) -> dict[str, Any]:
    """What recording a lookup's usage costs the request path (in process), and that the services recorded it."""
    import psycopg

    from featurestore.governance.usage import UsageRecorder

    recorder = UsageRecorder(store.settings, interval=3600.0)
    keys = tuple(("snap", f"f{i}", version) for i in range(FEATURES))
    calls = 200_000
    started = time.perf_counter()
    for _ in range(calls):
        recorder.record(keys, "unknown", "online", 1)
    per_call = (time.perf_counter() - started) / calls * 1e6
    recorder.close()
    with psycopg.connect(url, autocommit=True) as connection:
        recorded = connection.execute("SELECT coalesce(sum(reads), 0) FROM featurestore_registry.usage WHERE view = "
                                      "'snap' AND feature = 'f0'").fetchone()[0]
    return {"record_us_per_request": per_call, "calls_timed": calls, "recorded_reads": int(recorded) - calls}


def judge(result: dict[str, Any], workers: list[int]) -> dict[str, Any]:
    """The targets, for each worker count; the verdict is the one of the worker count where ours serves more."""
    def cell(w: int, size: int) -> dict[str, Any]:
        return next(c for c in result["cells"] if c["workers"] == w and c["entities"] == size
                    and c["concurrency"] == TARGET_CELL)

    by_workers = {}
    for w in workers:
        one, hundred = cell(w, 1), cell(w, 100)
        by_workers[str(w)] = [
            {"target": f"1 entity x{TARGET_CELL}: ours req/s >= {RPS_TARGET}x the floor's", "ours": one["ours"]["rps"],
             "floor": one["floor"]["rps"], "ratio": one["rps_ratio"], "unit": "req/s",
             "verdict": "PASS" if one["rps_ratio"] >= RPS_TARGET else "FAIL"},
            {"target": f"1 entity x{TARGET_CELL}: ours p99 <= {P99_TARGET_1}x the floor's",
             "ours": one["ours"]["p99_ms"], "floor": one["floor"]["p99_ms"], "ratio": one["p99_ratio"], "unit": "ms",
             "verdict": verdict(one["p99_ratio"], P99_TARGET_1)},
            {"target": f"100 entities x{TARGET_CELL}: ours p99 <= {P99_TARGET_100}x the floor's",
             "ours": hundred["ours"]["p99_ms"], "floor": hundred["floor"]["p99_ms"], "ratio": hundred["p99_ratio"],
             "unit": "ms", "verdict": verdict(hundred["p99_ratio"], P99_TARGET_100)},
        ]
    chosen = max(workers, key=lambda w: cell(w, 1)["ours"]["rps"])
    return {"chosen_workers": chosen,
            "why": f"ours served the most 1-entity requests/s at concurrency {TARGET_CELL} with {chosen} worker"
                   f"{'s' if chosen > 1 else ''} (the floor compared has as many)",
            "by_workers": by_workers, "targets": by_workers[str(chosen)]}


# --------------------------------------------------------------------------- reporting


def print_report(report: dict[str, Any]) -> None:
    s = report["result"]
    console = header(report, "HTTP lookup service benchmark", 150,
                     machine_note=f"; {s['machine_busy_before']:.0%} busy just before the run",
                     versions_note=f", PostgreSQL {s['postgres_server_version']}")
    settings = report["settings"]
    cells = table(f"{report['rows']:,} events, {s['users']:,} users, {FEATURES} features; loopback, "
                  f"{settings['warmup']:g}s warm-up + {settings['duration']:g}s per cell and contender; "
                  "latency in ms as the load generator sees it",
                  ("workers", "entities", "in flight", "ours req/s", "floor req/s", "ratio", "ours p50", "floor p50",
                   "ours p99", "floor p99", "p99 ratio", "errors ours/floor"), left=())
    targeted = {(report["judgement"]["chosen_workers"], 1, TARGET_CELL), (report["judgement"]["chosen_workers"], 100,
                                                                           TARGET_CELL)}
    for c in s["cells"]:
        o, f = c["ours"], c["floor"]
        errors = f"{o['errors']}/{f['errors']}"
        if o["errors"] or f["errors"]:
            errors = f"[bold red]{errors}[/bold red]"
        mark = " *" if (c["workers"], c["entities"], c["concurrency"]) in targeted else ""
        cells.add_row(str(c["workers"]), str(c["entities"]), f"{c['concurrency']}{mark}", f"{o['rps']:,.0f}",
                      f"{f['rps']:,.0f}", f"{c['rps_ratio']:.2f}x", f"{o['p50_ms']:.2f}", f"{f['p50_ms']:.2f}",
                      f"{o['p99_ms']:.2f}", f"{f['p99_ms']:.2f}", f"{c['p99_ratio']:.2f}x", errors)
    console.print(cells)

    cpu = table("CPU per request (µs; this load generator shares the machine) and machine busy share",
                ("workers", "entities", "in flight", "service ours", "service floor", "PostgreSQL ours",
                 "PostgreSQL floor", "client ours", "client floor", "busy ours", "busy floor"), left=())

    def us(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    for c in s["cells"]:
        o, f = c["ours"]["cpu_us_per_request"], c["floor"]["cpu_us_per_request"]
        cpu.add_row(str(c["workers"]), str(c["entities"]), str(c["concurrency"]), us(o["service"]), us(f["service"]),
                    us(o["postgres"]), us(f["postgres"]), us(o["client"]), us(f["client"]),
                    f"{c['ours']['machine_busy']:.0%}", f"{c['floor']['machine_busy']:.0%}")
    console.print(cpu)

    judgement = report["judgement"]
    targets = table(f"Targets (ours with {judgement['chosen_workers']} worker"
                    f"{'s' if judgement['chosen_workers'] > 1 else ''}: {judgement['why']})",
                    ("target", "workers", "ours", "floor", "ratio", "verdict"), left=("target",))
    for workers, rows in judgement["by_workers"].items():
        chosen = int(workers) == judgement["chosen_workers"]
        for t in rows:
            colour = "green" if t["verdict"] == "PASS" else "red"
            shown = f"[{colour}]{t['verdict']}[/{colour}]" if chosen else f"({t['verdict']})"
            fmt = "{:,.0f}" if t["unit"] == "req/s" else "{:.2f} ms"
            targets.add_row(t["target"], workers + ("" if chosen else " (info)"), fmt.format(t["ours"]),
                            fmt.format(t["floor"]), f"{t['ratio']:.2f}x", shown)
    console.print(targets)
    pools = s["pool_size"]
    console.print(f"  ours = `featurestore serve --workers N` (POST /v1/features, FastAPI, SDK lookup pool of "
                  f"{pools['ours']} per worker); floor = Starlette + orjson + psycopg AsyncConnectionPool of "
                  f"{pools['floor']} per worker, prepared SELECT ... WHERE user_id = ANY(%s), the same JSON answer. "
                  "Both: uvicorn, same workers, same PostgreSQL; * = the cells the targets read.")
    client = ("a minimal asyncio HTTP/1.1 client" if settings["client"] == "raw"
              else "httpx.AsyncClient (one per request in flight)")
    console.print(f"  load: {client} in this process, one keep-alive connection per request in flight, "
                  f"{BODIES:,} bodies of random known users per size cycled in the same order for both; "
                  "req/s = responses completed in the measured window / its length.")
    usage = s["usage"]
    service = next((c["ours"]["cpu_us_per_request"]["service"] for c in s["cells"]
                    if c["entities"] == 1 and c["ours"]["cpu_us_per_request"]["service"]), None)
    share = f", {usage['record_us_per_request'] / service:.2%} of ours' service CPU per 1-entity request" \
        if service else ""
    console.print(f"  usage tracking: recording a request's reads costs {usage['record_us_per_request']:.2f} µs in "
                  f"process ({usage['calls_timed']:,} calls timed){share}; the write is batched in a background "
                  "thread every 5 s.")
    for check in s["checks"]:
        console.print(f"  check: {check}")
    slow = [c["workers"] for c in s["cells"] if c["workers"] > 1 and c["concurrency"] == 1
            and min(c["ours"]["p50_ms"], c["floor"]["p50_ms"]) >= 35]
    if slow:
        console.print(f"  note: with {', '.join(map(str, sorted(set(slow))))} workers both services take ~40 ms per "
                      "request at 1 in flight: uvicorn's --workers path binds a listening socket whose accepted "
                      "connections do not get TCP_NODELAY, so a response's second write waits for the client's "
                      "delayed ACK (the same for both contenders; 1 worker is not affected).")
    errors = report["errors_total"]
    if errors:
        kinds: dict[str, int] = {}
        for c in s["cells"]:
            for name in CONTENDERS:
                for kind, count in c[name]["error_kinds"].items():
                    kinds[f"{name}: {kind}"] = kinds.get(f"{name}: {kind}", 0) + count
        console.print(f"[bold red]ERRORS: {errors} failed requests[/bold red] ({kinds}); the run fails. Service logs: "
                      + ", ".join(s["logs"].values()))


# --------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="events in the view's source (default 4M)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell and contender (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measurement (2)")
    parser.add_argument("--workers", type=_int_list, default=[1, 2],
                        help="uvicorn worker counts to compare, comma-separated (default 1,2)")
    parser.add_argument("--concurrency", type=_int_list, default=list(CONCURRENCY),
                        help="requests in flight, comma-separated (default 1,16,64; 16 is needed for the targets)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: raw (a minimal asyncio HTTP/1.1 client, default) or httpx")
    parser.add_argument("--floor-pool", type=int, default=0,
                        help="the floor's connections per worker (default: the SDK's lookup pool size)")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "featurestore-bench"),
                        help="where data and the benchmark project are generated (reused when unchanged)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.rows < 4000:
        parser.error("--duration must be positive, --warmup not negative, --rows at least 4000")
    if TARGET_CELL not in args.concurrency:
        parser.error(f"--concurrency must include {TARGET_CELL}: the targets are judged there")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = progress()
    if os.environ.get("FEATURESTORE_POSTGRES_URL"):
        log("FEATURESTORE_POSTGRES_URL is set: the view is materialized into schema featurestore_online of that "
            "database; PostgreSQL's CPU is not measured")
    found_versions = versions("fastapi", "starlette", "uvicorn", "httpx", "orjson", "psycopg", "psycopg-pool",
                              "pydantic")
    workdir = Path(args.workdir).resolve()
    case = make_case(workdir, args.rows, max(args.rows // 8, 1), FEATURES)
    cells = len(SIZES) * len(args.concurrency) * len(args.workers) * 2
    log(f"case: {args.rows:,} events, {FEATURES} features; {cells} measurements of {args.warmup:g}+{args.duration:g}s "
        f"(~{cells * (args.warmup + args.duration) / 60:.1f} min)")
    result = run(case, workdir, args, log)
    errors = sum(c[name]["errors"] for c in result["cells"] for name in CONTENDERS)
    report: dict[str, Any] = {
        "command": command(),
        "machine": machine(), "versions": found_versions, "rows": args.rows,
        "settings": {"duration": args.duration, "warmup": args.warmup, "workers": args.workers, "client": args.client,
                     "concurrency": args.concurrency, "entities": list(SIZES), "features": FEATURES},
        "result": result, "judgement": judge(result, args.workers), "errors_total": errors,
    }
    if warning := changed_during_run(found_versions):
        report["warning"] = warning
    emit(report, args.format, print_report)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
