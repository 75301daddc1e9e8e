"""Processes the benchmarks start, and the PostgreSQL they use: HTTP services on loopback and /proc helpers.

    port = free_port()
    service = launch("featurestore serve", [sys.executable, "-m", "featurestore.cli.main", ..., "--port", str(port)],
                     dict(os.environ), f"http://127.0.0.1:{port}/v1/features", 1, folder / "serve.log")
    try:
        wait_ready(service, probe)          # until it answers the probe request with 200
        ...
    finally:
        release_handles(store, stop(service))   # stopped as Ctrl-C would stop it

Used by serve.py and windows.py (services), online.py and serve.py (`server_url`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_SECONDS = 120
HEADERS = {"content-type": "application/json", "x-consumer": "benchmark"}
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far), for every process visible in /proc."""
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_text()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        found[int(entry.name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / TICKS_PER_SECOND)
    return found


def tree(snapshot: dict[int, tuple[int, float]], root: int | None) -> set[int]:
    """`root` and its descendants in a `processes()` snapshot (empty when `root` is None or gone)."""
    if root is None or root not in snapshot:
        return set()
    members, frontier = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in snapshot.items():
        children.setdefault(parent, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in members:
                members.add(child)
                frontier.append(child)
    return members


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    workers: int
    url: str
    process: subprocess.Popen
    log_path: Path


def launch(name: str, command: list[str], env: dict[str, str], url: str, workers: int, log_path: Path) -> Service:
    with open(log_path, "wb") as log_file:  # in a session of its own: stopped as a group, like Ctrl-C would
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(name, workers, url, process, log_path)


def wait_ready(service: Service, probe: bytes) -> None:
    """Until the service answers a lookup with 200 (its first one also opens its connections)."""
    import httpx

    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(trust_env=False, timeout=10) as client:
        while True:
            if service.process.poll() is not None:
                raise SystemExit(f"{service.name} (workers={service.workers}) exited with status "
                                 f"{service.process.returncode} before it answered; its log {service.log_path}:\n"
                                 f"{service.log_path.read_text()[-3000:]}")
            try:
                if client.post(service.url, content=probe, headers=HEADERS).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{service.name} (workers={service.workers}) did not answer {service.url} within "
                                 f"{READY_SECONDS}s; its log {service.log_path}:\n"
                                 f"{service.log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def stop(service: Service) -> set[int]:
    """Stop a service this script started, as Ctrl-C would: SIGINT to its process group (its own session), so
    uvicorn and its workers shut down cleanly; SIGKILL what is left after 20 s. Returns the pids it had."""
    members = tree(processes(), service.process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, signal.SIGINT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in members):
        service.process.poll()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, signal.SIGKILL)
    service.process.wait()
    return members


def release_handles(store: Any, pids: set[int]) -> None:
    """Forget the embedded PostgreSQL's handles of stopped service processes.

    The embedded server (pgserver) stops when the last process that opened it exits, and each process
    removes itself from `.handle_pids.json` at exit, but uvicorn's worker processes (multiprocessing
    children) skip atexit handlers: without this the server would run on after the benchmark.
    """
    path = store.settings.state_dir / "pgdata" / ".handle_pids.json"
    if store.settings.postgres_url or not path.is_file():
        return
    listed = json.loads(path.read_text())
    kept = [pid for pid in listed if pid not in pids or Path(f"/proc/{pid}").exists()]
    if kept != listed:
        path.write_text(json.dumps(kept))


def server_url(store: Any) -> str:
    from featurestore.engines import postgres

    return postgres.resolve_url(store.settings.postgres_url, store.settings.state_dir)
