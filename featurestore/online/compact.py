"""Compaction: pushed rows move from the landing table in PostgreSQL to Parquet files in the store's space.

    compact(project)                  # → [Compaction(source="card_events", rows=120_000, files=2, …)]

Files are time-partitioned by the arrival column's day, under `.featurestore/pushed/<source>/
<arrival>_date=YYYY-MM-DD/batches-<first>-<last>.parquet`, and listed in the manifest table
`featurestore_push.files`. A compaction takes the batches landed so far (later pushes are left
for the next one), writes their files completely (to a temporary name, synced, then renamed),
and then, in one transaction, lists the files and deletes the batches' landed rows. Readers take
the landing table and the manifest in one snapshot (`offline.pushed`), so a row is read exactly
once whenever they look. A crash before the commit leaves files that no manifest lists: the next
compaction deletes them and writes them again; after it, the move is done. Frames and
materialize give the same answers before and after.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError, UnknownNameError, did_you_mean
from featurestore.offline.pushed import SCHEMA, landed_rows, landed_table, pushable, schema_exists
from featurestore.project import Project

__all__ = ["Compaction", "compact"]


@dataclass(frozen=True)
class Compaction:
    """What compacting one source did."""

    source: str
    rows: int  # landed rows moved into files
    batches: int
    files: int
    seconds: float


def compact(project: Project, sources: list[str] | None = None) -> list[Compaction]:
    """Move every landed row of the sources (default: all that accept pushes) into Parquet files."""
    names = sources if sources is not None else [n for n in project.settings.sources if pushable(project, n)]
    for name in names:
        if name not in project.settings.sources:
            raise UnknownNameError(f"unknown source '{name}'; {did_you_mean(name, project.settings.sources)}")
        if not pushable(project, name):
            raise FeatureStoreError(f"source '{name}' takes no pushes (it names no arrival column): "
                                    "there is nothing to compact")
    url = postgres.resolve_url(project.settings.postgres_url, project.settings.state_dir)
    return [_compact(project, url, name) for name in names]


def _compact(project: Project, url: str, name: str) -> Compaction:
    from psycopg import sql

    started = time.perf_counter()
    state_dir = project.settings.state_dir
    folder = Path("pushed") / name
    with postgres.connect(url) as pg:
        if not schema_exists(pg):
            return Compaction(name, 0, 0, 0, time.perf_counter() - started)
        with pg.transaction():
            pg.execute("SET TIME ZONE 'UTC'")
            # One compaction of a source at a time; pushes go on (they add batches this one leaves).
            pg.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(f"compact:{name}")])
            listed = {row[0] for row in pg.execute(f"SELECT path FROM {SCHEMA}.files WHERE source = %s",
                                                   [name]).fetchall()}
            _remove_unlisted(state_dir, folder, listed)
            batches = [row[0] for row in pg.execute(
                f"SELECT id FROM {SCHEMA}.batches WHERE source = %s AND compacted IS NULL ORDER BY id",
                [name]).fetchall()]
            if not batches:
                return Compaction(name, 0, 0, 0, time.perf_counter() - started)
            first, last = batches[0], batches[-1]
            arrival = project.settings.sources[name].arrival  # type: ignore[union-attr]
            # By number, not range: a batch numbered lower may commit after this read (it is left for later).
            rows = landed_rows(pg, project, name, batches)
            written = _write_files(project, name, folder, arrival, rows, first, last)
            pg.cursor().executemany(f"INSERT INTO {SCHEMA}.files (source, path, rows, first_batch, last_batch) "
                                    "VALUES (%s, %s, %s, %s, %s)",
                                    [(name, path, count, first, last) for path, count in written])
            pg.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                sql.Identifier(*landed_table(name)), sql.Identifier("__fs_batch")), [batches])
            pg.execute(f"UPDATE {SCHEMA}.batches SET compacted = now() WHERE id = ANY(%s)", [batches])
    return Compaction(name, rows.num_rows, len(batches), len(written), time.perf_counter() - started)


def _write_files(project: Project, name: str, folder: Path, arrival: str, rows: Any, first: int,
                 last: int) -> list[tuple[str, int]]:
    """One Parquet file per arrival day (UTC), complete on disk before this returns: (path under the
    state folder, rows) each."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    days = rows.column(arrival).cast(pa.date32())
    written = []
    for day in sorted(pc.unique(days).to_pylist(), key=str):
        part = rows.filter(pc.equal(days, day))
        relative = folder / f"{arrival}_date={day}" / f"batches-{first}-{last}.parquet"
        target = project.settings.state_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        pq.write_table(part, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
        written.append((relative.as_posix(), part.num_rows))
    return written


def _remove_unlisted(state_dir: Path, folder: Path, listed: set[str]) -> None:
    """Files a crashed compaction left (written, never listed): gone, so they are written once again."""
    root = state_dir / folder
    if not root.exists():
        return
    for path in root.rglob("*"):
        if path.is_file() and path.relative_to(state_dir).as_posix() not in listed:
            path.unlink()
