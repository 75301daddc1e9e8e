"""Who reads which features: every training frame and online lookup, counted in PostgreSQL.

    recorder = UsageRecorder(settings)
    recorder.record(keys, "fraud_model_v3", "online", rows=3)   # a dict update under a lock
    recorder.flush()    # also every few seconds in a background thread, on close and at exit

Reads are counted per (view, feature, version, consumer, offline|online) with the number of
reads, the rows they returned, and when the first and last were seen, in
`featurestore_registry.usage`. Nothing is written on the read's path: a background thread
writes batches. When PostgreSQL is not at hand (the embedded server is not running in this
process, or the server is down), a batch is kept in `.featurestore/usage/` and sent by the
next flush that reaches PostgreSQL, exactly once (the file's name is recorded with its rows).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import uuid
import warnings
import weakref
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurestore.config import Settings
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError
from featurestore.registry import SCHEMA, ensure_schema

__all__ = ["FLUSH_SECONDS", "UNKNOWN", "UsageRecorder", "ingest_spool", "readers"]

FLUSH_SECONDS = 5.0
UNKNOWN = "unknown"  # the consumer of a read that names none

FeatureKey = tuple[str, str, str]  # (view, feature, version)
_live: "weakref.WeakSet[UsageRecorder]" = weakref.WeakSet()
_exit_hook = False


class UsageRecorder:
    """Counts reads in memory and writes them to PostgreSQL in the background."""

    def __init__(self, settings: Settings, interval: float | None = None) -> None:
        global _exit_hook
        self._settings = settings
        self._interval = interval or FLUSH_SECONDS
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[tuple[tuple[FeatureKey, ...], str, str], list[Any]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._schema_ready: set[str] = set()
        self._warned = False
        _live.add(self)
        if not _exit_hook:
            atexit.register(_flush_all)
            postgres.before_release(_flush_all)
            _exit_hook = True

    def record(self, keys: tuple[FeatureKey, ...], consumer: str | None, mode: str, rows: int) -> None:
        """Count one read of `keys` (a tuple the caller may reuse) by `consumer`, returning `rows`."""
        now = time.time()
        slot = (keys, consumer or UNKNOWN, mode)
        with self._lock:
            entry = self._pending.get(slot)
            if entry is None:
                self._pending[slot] = [1, rows, now, now]
            else:
                entry[0] += 1
                entry[1] += rows
                entry[3] = now
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="featurestore-usage", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Write what was counted so far (and any kept batches) to PostgreSQL, or keep it on disk."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            rows = _rows(pending)
            spool = _spool_dir(self._settings)
            if not rows and not (spool.is_dir() and any(spool.glob("*.json"))):
                return
            url = postgres.running_url(self._settings.postgres_url, self._settings.state_dir)
            if url is None:
                _keep(spool, rows)
                return
            try:
                with postgres.connect(url, retries=()) as connection:
                    if url not in self._schema_ready:
                        ensure_schema(connection)
                        self._schema_ready.add(url)
                    with connection.transaction():
                        _write(connection, rows)
                    ingest_spool(connection, spool)
            except FeatureStoreError as exc:
                _keep(spool, rows)
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"feature usage could not be recorded ({exc}); it is kept in {spool} and sent "
                                  "when PostgreSQL answers again", RuntimeWarning, stacklevel=2)

    def close(self) -> None:
        """Stop the background writer and write what is left."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive one bad batch; close() retries
                pass


def _flush_all() -> None:
    for recorder in list(_live):
        try:
            recorder.flush()
        except Exception:  # noqa: BLE001 - at exit, never turn a finished program into a failed one
            pass


def _rows(pending: dict[tuple[tuple[FeatureKey, ...], str, str], list[Any]]) -> list[tuple]:
    """One row per (view, feature, version, consumer, mode): reads, rows, first and last seen."""
    merged: dict[tuple[str, str, str, str, str], list[Any]] = {}
    for (keys, consumer, mode), (reads, rows, first, last) in pending.items():
        for view, feature, version in keys:
            slot = (view, feature, version, consumer, mode)
            entry = merged.get(slot)
            if entry is None:
                merged[slot] = [reads, rows, first, last]
            else:
                entry[0] += reads
                entry[1] += rows
                entry[2] = min(entry[2], first)
                entry[3] = max(entry[3], last)
    return [(*slot, reads, rows, _instant(first), _instant(last))
            for slot, (reads, rows, first, last) in merged.items()]


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _write(connection: Any, rows: list[tuple]) -> None:
    if not rows:
        return
    columns = list(zip(*rows))
    connection.execute(
        f"INSERT INTO {SCHEMA}.usage AS u (view, feature, version, consumer, mode, reads, rows, first_seen, last_seen) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], "
        "%s::timestamptz[], %s::timestamptz[]) "
        "ON CONFLICT (view, feature, version, consumer, mode) DO UPDATE SET reads = u.reads + EXCLUDED.reads, "
        "rows = u.rows + EXCLUDED.rows, first_seen = least(u.first_seen, EXCLUDED.first_seen), "
        "last_seen = greatest(u.last_seen, EXCLUDED.last_seen)", [list(c) for c in columns])


def _spool_dir(settings: Settings) -> Path:
    return settings.state_dir / "usage"


def _keep(spool: Path, rows: list[tuple]) -> None:
    """Write a batch to its own file, atomically (a reader never sees half of it)."""
    if not rows:
        return
    spool.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    partial = spool / f".{name}.partial"
    partial.write_text(json.dumps([[*row[:7], row[7].isoformat(), row[8].isoformat()] for row in rows]))
    os.replace(partial, spool / name)


def ingest_spool(connection: Any, spool: Path) -> int:
    """Send kept batches; each file counts once even if a crash leaves it behind. Returns files sent."""
    if not spool.is_dir():
        return 0
    sent = 0
    for path in sorted(spool.glob("*.json")):
        try:
            rows = [(*r[:7], datetime.fromisoformat(r[7]), datetime.fromisoformat(r[8]))
                    for r in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError, IndexError):
            continue  # another process took it, or it is not ours: leave it
        with connection.transaction():
            new = connection.execute(f"INSERT INTO {SCHEMA}.usage_files (file) VALUES (%s) ON CONFLICT DO NOTHING "
                                     "RETURNING file", [path.name]).fetchone()
            if new:
                _write(connection, rows)
                sent += 1
        path.unlink(missing_ok=True)
    return sent


def readers(settings: Settings, url: str, since: datetime | None = None
            ) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """Per (view, feature): each consumer that read it (since `since`) with reads, rows and last read.

    Batches this project kept on disk are sent first, so they count.
    """
    query = (f"SELECT view, feature, consumer, sum(reads), sum(rows), max(last_seen), min(first_seen) "
             f"FROM {SCHEMA}.usage {'WHERE last_seen >= %s ' if since else ''}GROUP BY 1, 2, 3")
    with postgres.connect(url) as connection:
        ensure_schema(connection)
        ingest_spool(connection, _spool_dir(settings))
        rows = connection.execute(query, [since] if since else []).fetchall()
    found: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for view, feature, consumer, reads, count, last, first in rows:
        found.setdefault((view, feature), {})[consumer] = {"reads": int(reads), "rows": int(count),
                                                           "last_read": last, "first_read": first}
    return found
