"""Cache refresh benchmark: a view's cached rows after its source gains one file, incremental vs rebuilt.

    python benchmarks/cache_refresh.py                       # 4M events in 20 daily-ish files, then 1 more
    python benchmarks/cache_refresh.py --rows 400000 --parts 10

The events of `snapshot_data.py` (training_frame.py's) are split by time into
`--parts` Parquet files under `data/events/`, the view reads `data/events/*.parquet`,
and the cache is filled. Then the next slice of events lands as one new file, and the
cache is brought up to date twice, each timed `--repeat` times: incrementally (what
featurestore does: read the new file, recompute the keys it touches) and by a full
rebuild (what it did before, and still does when a file changes). Both must leave
identical cached rows. Prints a table (or `--format json`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import console, emit, medians, progress, table, timed
from snapshot_data import Case, ensure_data, make_case


def build_project(case: Case, folder: Path, parts: int) -> tuple[Path, Any]:
    """A project whose events are `parts` files; returns it and the held-back last slice."""
    events = pq.read_table(case.events)
    size = events.num_rows // (parts + 1)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "data" / "events").mkdir(parents=True)
    (folder / "definitions").mkdir()
    for number in range(parts):
        pq.write_table(events.slice(number * size, size), folder / "data" / "events" / f"part-{number:03}.parquet")
    (folder / "featurestore.toml").write_text('definitions = "definitions"\n\n[sources]\n'
                                              'events = "data/events/*.parquet"\n')
    snap = (case.project / "definitions" / "snap.sql").read_text()
    (folder / "definitions" / "snap.sql").write_text(snap)
    return folder, events.slice(parts * size)


def refresh(folder: Path, incremental: bool) -> tuple[float, str, int]:
    """Time one cache refresh of `snap` after the last file landed; returns seconds, kind, rows read."""
    from featurestore import FeatureStore
    from featurestore.engines import duckdb as duck
    from featurestore.offline import cache
    from featurestore.offline.sources import register_sources

    store = FeatureStore(folder)
    project = store.project
    view = project.views["snap"]
    with duck.offline(store.settings.offline_database, store.settings.temp_directory) as connection:
        if not incremental:  # forget what was cached: the next fill rebuilds
            connection.execute(f"DROP SCHEMA IF EXISTS {cache.SCHEMA} CASCADE")
        seconds, kind = timed(lambda: cache.fill(
            connection, project, view,
            lambda: register_sources(connection, project, [view], every_source=False, loaded=set())))
        read = connection.execute(f"SELECT read_rows FROM {cache.SCHEMA}.catalog").fetchall()[0][0]
    store.close()
    return seconds, kind, read


def cached_checksum(folder: Path) -> tuple[int, int]:
    from featurestore import FeatureStore
    from featurestore.engines import duckdb as duck

    store = FeatureStore(folder)
    version = store.views["snap"].version
    try:
        with duck.offline(store.settings.offline_database, store.settings.temp_directory, read_only=True) as connection:
            return duck.table_checksum(connection, f"featurestore_cache.snap__{version}")  # type: ignore[return-value]
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="events (default 4M)")
    parser.add_argument("--parts", type=int, default=20, help="files the history is split into (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="timed refreshes of each kind (default 3)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/featurestore-bench"))
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    log = progress()
    case = make_case(args.workdir, args.rows, args.rows // 8, 10)
    ensure_data(case, log)
    folder, latest = build_project(case, args.workdir / f"refresh_rows{args.rows}_parts{args.parts}", args.parts)
    log(f"filling the cache from {args.parts} files")
    refresh(folder, incremental=False)
    history = folder / ".featurestore" / "offline.duckdb"
    before = folder / "before.duckdb"
    shutil.copy(history, before)
    pq.write_table(latest, folder / "data" / "events" / f"part-{args.parts:03}.parquet")
    times: dict[str, list[float]] = {"incremental": [], "full": []}
    checksums = {}
    read: dict[str, int] = {}
    for _ in range(args.repeat):
        for kind in ("incremental", "full"):
            shutil.copy(before, history)  # the cache as it was before the new file
            seconds, done, read[kind] = refresh(folder, incremental=kind == "incremental")
            if done != kind:
                raise SystemExit(f"expected a {kind} refresh, featurestore did a {done} one")
            times[kind].append(seconds)
            checksums[kind] = cached_checksum(folder)
            log(f"{kind}: {seconds:.3f}s, {read[kind]:,} rows read")
    if checksums["incremental"] != checksums["full"]:
        raise SystemExit("CACHED ROWS DIFFER between the incremental refresh and the rebuild")
    result: dict[str, Any] = {"rows": args.rows, "parts": args.parts, "new_file_rows": latest.num_rows,
                              "median_seconds": medians(times), "seconds": times, "rows_read": read}
    result["speedup"] = result["median_seconds"]["full"] / result["median_seconds"]["incremental"]
    emit(result, args.format, print_report)


def print_report(result: dict[str, Any]) -> None:
    out = console(110)
    out.print(f"{result['rows']:,} events in {result['parts']} files, then one more of {result['new_file_rows']:,} "
              f"rows; medians of {len(result['seconds']['full'])}; cached rows identical either way")
    rows = table(None, ("refresh", "time (s)", "rows read"), left=("refresh",))
    for kind in ("incremental", "full"):
        rows.add_row(kind, f"{result['median_seconds'][kind]:.3f}", f"{result['rows_read'][kind]:,}")
    out.print(rows)
    out.print(f"incremental is {result['speedup']:.1f}x faster")


if __name__ == "__main__":
    main()
