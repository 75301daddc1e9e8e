"""Who reads which features: every training frame and online lookup, counted in PostgreSQL.

    recorder = UsageRecorder(settings)      # one per store; the counts live in the process's recorder
    recorder.record(keys, "fraud_model_v3", "online", rows=3)   # a dict update under a lock
    recorder.close()    # this project's counts written now; the last one closed stops the writer thread

Reads are counted per (view, feature, version, consumer, offline|online) with the number of
reads, the rows they returned, and when the first and last were seen, in
`featurestore_registry.usage`. Nothing is written on the read's path: counts wait in memory, per
project (its state dir), in one recorder for the whole process.

- One background thread per process writes them every few seconds, to PostgreSQL only, when it
  is at hand (configured, or the embedded server running in this process). It runs while a store
  that recorded is open; the last `close()` stops and joins it.
- Otherwise (or when PostgreSQL does not answer) counts stay in memory, merged, until `close()`,
  `flush()` or the interpreter's exit write them synchronously: to PostgreSQL, or else as a batch
  file in `.featurestore/usage/`. So nothing lands in the project folder after a call returns
  unless asked.
- A kept batch is sent by the next synchronous flush (or `readers`) that reaches PostgreSQL, in
  this process or another, exactly once: the file's name is recorded with its rows.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
import uuid
import warnings
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.config import Settings
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError
from featurestore.governance import CONSUMER_DAYS
from featurestore.governance.registry import SCHEMA, ensure_schema

__all__ = ["CONSUMER_DAYS", "FLUSH_SECONDS", "UNKNOWN", "Readers", "UsageRecorder", "ingest_spool", "readers"]

Readers = dict[tuple[str, str], dict[str, dict[str, Any]]]  # (view, feature) → consumer → reads, rows, last read

FLUSH_SECONDS = 5.0
UNKNOWN = "unknown"  # the consumer of a read that names none

FeatureKey = tuple[str, str, str]  # (view, feature, version)
Pending = dict[tuple[tuple[FeatureKey, ...], str, str], list[Any]]  # (keys, consumer, mode) -> reads, rows, first, last


class UsageRecorder:
    """One store's handle on the process's recorder: its reads are counted with its project's.

        recorder = UsageRecorder(store.settings)
        recorder.record((("spend", "amount", "v1"),), "fraud_model", "offline", 4)   # registers it
        recorder.close()   # this project's counts written now; the writer thread stops with the last one

    `interval`: how often the writer thread runs while this recorder is registered (the
    shortest interval of the registered recorders wins); FLUSH_SECONDS by default.
    """

    def __init__(self, settings: Settings, interval: float | None = None) -> None:
        self.settings = settings
        self.key = settings.state_dir  # stores of one project share its counts
        self.interval = interval or FLUSH_SECONDS
        self._project: _Project | None = None  # while registered
        self._lock = _recorder.lock  # the process's: a read costs one dict update under it

    def record(self, keys: tuple[FeatureKey, ...], consumer: str | None, mode: str, rows: int) -> None:
        """Count one read of `keys` (a tuple the caller may reuse) by `consumer`, returning `rows`."""
        now = time.time()
        slot = (keys, consumer or UNKNOWN, mode)
        with self._lock:
            project = self._project
            if project is None:
                project = self._project = _recorder.register(self)
            entry = project.pending.get(slot)
            if entry is None:
                project.pending[slot] = [1, rows, now, now]
            else:
                entry[0] += 1
                entry[1] += rows
                entry[3] = now

    def flush(self) -> None:
        """Write this project's counts (and any kept batches) to PostgreSQL, or keep them on disk."""
        with _recorder.lock:
            project = self._project or _recorder.projects.get(self.key)
        _flush_now(project or _Project(self.settings), self.settings)

    def close(self) -> None:
        """Write this project's counts now and unregister; the last recorder closed stops the writer."""
        with _recorder.lock:
            project, self._project = self._project, None
            if project is not None:
                project.recorders.discard(self)
            thread = _recorder.stop_if_idle()
        if thread is not None:
            thread.join()  # after it, no write of this process's can land behind the caller's back
        self.flush()
        _recorder.forget_if_idle(self.key)


class _Project:
    """One project's counts not yet written, and the recorders (stores) registered for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pending: Pending = {}
        self.recorders: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()  # a store dropped unclosed leaves
        self.flushing = threading.Lock()  # one write at a time: a batch put back is never overtaken
        self.schema_ready: set[str] = set()
        self.warned = False


class _Recorder:
    """The process's recorder: every project's counts, keyed by its state dir, and one writer thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards everything below and every project's `pending` and `recorders`
        self.projects: dict[Path, _Project] = {}
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def register(self, recorder: UsageRecorder) -> _Project:
        """(Under `lock`.) The recorder's project, with it registered; starts the writer if none runs."""
        project = self.projects.get(recorder.key)
        if project is None:
            project = self.projects[recorder.key] = _Project(recorder.settings)
        project.settings = recorder.settings  # the latest store's: $FEATURESTORE_POSTGRES_URL may have changed
        project.recorders.add(recorder)
        if self.thread is None:
            self.stop = threading.Event()  # each thread its own: a stopping one may still be finishing a write
            self.thread = threading.Thread(target=self._run, args=(self.stop,), name="featurestore-usage",
                                           daemon=True)
            self.thread.start()
        return project

    def stop_if_idle(self) -> threading.Thread | None:
        """(Under `lock`.) When no recorder is registered, stop the writer; returns it, to be joined."""
        if self.thread is None or any(p.recorders for p in self.projects.values()):
            return None
        thread, self.thread = self.thread, None
        self.stop.set()
        return thread

    def forget_if_idle(self, key: Path) -> None:
        """Drop a project nobody records for and nothing waits in (its schema is checked again next time)."""
        with self.lock:
            project = self.projects.get(key)
        if project is None:
            return
        with project.flushing, self.lock:  # not while the writer holds a batch it may put back
            if not project.recorders and not project.pending:
                self.projects.pop(key, None)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval()):
            with self.lock:
                projects = list(self.projects.values())
            for project in projects:
                if stop.is_set():
                    return
                with contextlib.suppress(Exception):
                    _write_behind(project)
            with self.lock:
                if not stop.is_set() and not any(p.recorders for p in self.projects.values()):
                    self.thread = None  # every store was dropped unclosed: what is left waits for exit
                    return

    def _interval(self) -> float:
        with self.lock:
            return min((r.interval for p in self.projects.values() for r in p.recorders), default=FLUSH_SECONDS)


_recorder = _Recorder()


def _flush_all() -> None:
    """Write every project's counts now (at exit, and before the embedded PostgreSQL is let go)."""
    with _recorder.lock:
        projects = list(_recorder.projects.values())
    for project in projects:
        with contextlib.suppress(Exception):
            _flush_now(project, project.settings)


atexit.register(_flush_all)
postgres.before_release(_flush_all)


def _write_behind(project: _Project) -> None:
    """The writer thread's flush: to PostgreSQL only. Without it at hand the counts wait in memory."""
    with project.flushing:
        with _recorder.lock:
            pending, project.pending = project.pending, {}
        if not pending:
            return
        settings = project.settings
        url = postgres.running_url(settings.postgres_url, settings.state_dir)
        try:
            if url is not None:
                _send(project, url, pending, None)
        except Exception:
            project.schema_ready.discard(url)  # a dropped schema is made again on the next try
            raise
        finally:
            _put_back(project, pending)  # what was not written (nothing, when it was)


def _flush_now(project: _Project, settings: Settings) -> None:
    """A synchronous flush: to PostgreSQL with the kept batches, or else into the spool."""
    with project.flushing:
        with _recorder.lock:
            pending, project.pending = project.pending, {}
        spool = _spool_dir(settings)
        if not pending and not (spool.is_dir() and any(spool.glob("*.json"))):
            return
        url = postgres.running_url(settings.postgres_url, settings.state_dir)
        try:
            if url is not None:
                _send(project, url, pending, spool)
        except FeatureStoreError as exc:
            if not project.warned:
                project.warned = True
                warnings.warn(f"feature usage could not be recorded ({exc}); it is kept in {spool} and sent "
                              "when PostgreSQL answers again", RuntimeWarning, stacklevel=3)
        finally:
            _keep(spool, _rows(pending))  # what was not written (nothing, when it was)


def _send(project: _Project, url: str, pending: Pending, spool: Path | None) -> None:
    """Write `pending` to PostgreSQL and empty it; then send the batches kept in `spool`, if given."""
    with postgres.connect(url, retries=()) as connection:
        if url not in project.schema_ready:
            ensure_schema(connection)
            project.schema_ready.add(url)
        with connection.transaction():
            _write(connection, _rows(pending))
        pending.clear()  # committed: neither kept nor put back
        if spool is not None:
            ingest_spool(connection, spool)


def _put_back(project: _Project, pending: Pending) -> None:
    """Merge counts not written into the ones recorded since."""
    if not pending:
        return
    with _recorder.lock:
        for slot, counts in pending.items():
            _add(project.pending, slot, counts)


def _rows(pending: Pending) -> list[tuple]:
    """One row per (view, feature, version, consumer, mode): reads, rows, first and last seen."""
    merged: dict[Any, list[Any]] = {}
    for (keys, consumer, mode), counts in pending.items():
        for view, feature, version in keys:
            _add(merged, (view, feature, version, consumer, mode), counts)
    return [(*slot, reads, rows, _instant(first), _instant(last))
            for slot, (reads, rows, first, last) in merged.items()]


def _add(into: dict[Any, list[Any]], slot: Any, counts: list[Any]) -> None:
    """Add [reads, rows, first seen, last seen] to `into[slot]`."""
    reads, rows, first, last = counts
    entry = into.get(slot)
    if entry is None:
        into[slot] = [reads, rows, first, last]
    else:
        entry[0] += reads
        entry[1] += rows
        entry[2] = min(entry[2], first)
        entry[3] = max(entry[3], last)


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


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
