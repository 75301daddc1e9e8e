"""The `featurestore` subcommands: each calls the SDK (`FeatureStore`) and prints its answer, as text or
`--format json`. Thin: no logic here that the SDK lacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from featurestore.cli.render import print_problems
from featurestore.errors import FeatureStoreError
from featurestore.governance import CONSUMER_DAYS


def _store(args: argparse.Namespace) -> Any:
    from featurestore.store import FeatureStore

    return FeatureStore(getattr(args, "project", "."), consumer=getattr(args, "consumer", None))


def validate(args: argparse.Namespace) -> int:
    with _store(args) as store:
        problems = store.validate(data=args.data)
        failed = any(p.severity == "error" for p in problems)
        print_problems(problems, args.format, store.root, checked=None if failed else len(store.views))
    return 1 if failed else 0


def compile_(args: argparse.Namespace) -> int:
    if (args.view is None) == (args.frame is None):
        raise FeatureStoreError("compile takes a view's name, or --frame FEATURES, and not both "
                                "(e.g. `featurestore compile user_daily_stats` or `--frame 'user_daily_stats.*'`)")
    store = _store(args)
    if args.frame is not None:
        features = [f for f in args.frame.split(",") if f.strip()]
        sql = store.compile_frame(features, dialect=args.dialect, spine=args.spine, timestamp=args.timestamp,
                                  full_names=args.full_names)
        if args.format == "json":
            print(json.dumps({"frame": features, "spine": args.spine, "timestamp": args.timestamp,
                              "dialect": args.dialect, "sql": sql}, indent=2))
        else:
            print(sql)
        return 0
    sql = store.compile(args.view, dialect=args.dialect)
    if args.format == "json":
        view = store.view(args.view)
        print(json.dumps({"view": view.name, "version": view.version, "kind": view.kind, "dialect": args.dialect,
                          "sql": sql}, indent=2))
    else:
        print(sql)
    return 0


def views(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.applied() if args.applied else store.catalog()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("view", "kind", "entity", "owner", "version", "features")
    for row in rows:
        table.add_row(row["view"], row["kind"], ", ".join(row["entity"]), row["owner"], row["version"],
                      ", ".join(f["name"] for f in row["features"]))
    # Piped output (CI logs, files) gets room instead of truncated cells.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0


def frame(args: argparse.Namespace) -> int:
    from rich.console import Console

    store = _store(args)
    features = [f for f in args.features.split(",") if f.strip()]
    if args.spark_master and args.engine != "spark":
        raise FeatureStoreError("--spark-master applies only with --engine spark")
    started = time.perf_counter()
    spark = None
    with Console(stderr=True).status("building the training frame…" if args.engine == "duckdb" else
                                     "building the training frame on Spark (starting it takes a few seconds)…"):
        if args.engine == "spark" and args.spark_master:
            from featurestore.engines.spark import local_session

            spark = local_session(args.spark_master)
        frame = store.training_frame(args.spine, features, timestamp=args.timestamp, full_names=args.full_names,
                                     engine=args.engine, spark=spark)
    elapsed = time.perf_counter() - started
    summary = {"rows": len(frame), "columns": frame.columns, "seconds": round(elapsed, 3),
               "view_versions": frame.info["view_versions"], "engine": args.engine}
    if args.explain and args.format == "json":
        summary |= {"joins": frame.info["joins"], "sql": frame.sql}
    elif args.explain:
        from featurestore.offline.joins import explain

        print(explain(frame.info["joins"]))
        print(f"\n{len(frame):,} rows in {elapsed:.2f}s; the SQL that ran:\n")
        print(frame.sql)
    if args.out:
        import pyarrow.parquet as pq

        pq.write_table(frame.to_arrow(), args.out)
        summary["out"] = args.out
        if args.format == "json":
            print(json.dumps(summary))
        else:
            print(f"wrote {len(frame):,} rows × {len(frame.columns)} columns to {args.out} in {elapsed:.2f}s")
        return 0
    if args.explain:  # instead of rows
        if args.format == "json":
            print(json.dumps(summary, default=str))
        return 0
    head = frame.to_arrow().slice(0, args.head)
    if args.format == "json":
        print(json.dumps({**summary, "head": head.to_pylist()}, default=str))
    else:
        import polars as pl

        with pl.Config(tbl_cols=-1, tbl_width_chars=200):
            print(pl.from_arrow(head))
        print(f"{len(frame):,} rows in {elapsed:.2f}s")
    return 0


def cache(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "clear":
        dropped = store.clear_cache(args.views or None)
        print(json.dumps({"dropped": dropped}) if args.format == "json" else f"dropped {dropped} cached view(s)")
        return 0
    entries = store.cache_status()
    if args.format == "json":
        print(json.dumps(entries, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("view", "version", "rows", "current", "fresh", "written", "last refresh")
    for e in entries:
        refresh = e["refresh"] if e["read_rows"] is None else f"{e['refresh']} ({e['read_rows']:,} rows read)"
        table.add_row(e["view"], e["version"], f"{e['rows']:,}", "yes" if e["current"] else "no",
                      "yes" if e["fresh"] else "no", e["created_at"], refresh)
    Console(width=None if sys.stdout.isatty() else 200).print(table if entries else "the cache is empty")
    return 0


def materialize(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from featurestore.config import parse_duration

    try:
        lookback = parse_duration(args.lookback) if args.lookback else None
    except ValueError as exc:
        raise FeatureStoreError(f"--lookback: {exc}; write e.g. 6h or 1d") from None
    if args.every:
        return _materialize_every(args, lookback)
    store = _store(args)
    until = _instant(args.until, "--until") if args.until else None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    views = args.views or list(store.views)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("materializing", total=len(views))

        def started(view: Any) -> None:
            progress.update(task, completed=views.index(view.name), description=f"materializing {view.name}")

        runs = store.materialize(until, args.views or None, lookback=lookback,
                                 keep_old_versions=args.keep_old_versions, full=args.full, on_view=started)
    if args.format == "json":
        print(json.dumps([_run_json(run) for run in runs]))
        return 0
    table = Table("view", "version", "run", "entities read", "rows written", "late rows", "seconds", "rows/s")
    for run in runs:
        rate = f"{run.read / run.seconds:,.0f}" if run.read and run.seconds else "-"
        table.add_row(run.view, run.version, run.mode, f"{run.read:,}", f"{run.written:,}",
                      f"[yellow]{run.late:,}[/yellow]" if run.late else "0", f"{run.seconds:.2f}", rate)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    for run in runs:
        if run.quarantined:
            what = "entities" if store.views[run.view].windows else "rows"
            print(f"{run.view}: {run.quarantined:,} {what} failed its expectations and were set aside in "
                  "featurestore_online.quarantine")
    if runs:
        print(f"online store up to date with data known by {runs[0].until.isoformat()}")
    return 0


def push(args: argparse.Namespace) -> int:
    rows = _rows_of(Path(args.file))
    with _store(args) as store:
        result = store.push(args.source, rows, idempotency_key=args.idempotency_key)
    if args.format == "json":
        print(json.dumps(result.as_dict()))
        return 0
    print(f"{result.rows:,} rows pushed to {result.source} (batch {result.batch}, arrived "
          f"{result.arrived.isoformat()}){' already, under this idempotency key' if result.replayed else ''}")
    if result.views_updated:
        print(f"served now by: {', '.join(result.views_updated)}")
    if result.views_pending:
        print(f"at the next materialize: {', '.join(result.views_pending)}")
    return 0


def compact(args: argparse.Namespace) -> int:
    with _store(args) as store:
        done = store.compact(args.sources or None)
    if args.format == "json":
        print(json.dumps([c.__dict__ for c in done]))
        return 0
    for c in done:
        print(f"{c.source}: {c.rows:,} rows of {c.batches:,} batches moved into {c.files} files "
              f"in {c.seconds:.2f}s" if c.rows else f"{c.source}: nothing landed to move")
    return 0


def _rows_of(path: Path) -> Any:
    """A file's rows as an Arrow table: Parquet, CSV (types inferred, dates parsed) or JSON lines."""
    import polars as pl

    if not path.is_file():
        raise FeatureStoreError(f"{path}: no such file; give a .parquet, .csv or .jsonl file of rows")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path).to_arrow()
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(path, try_parse_dates=True, separator="\t" if suffix == ".tsv" else ",").to_arrow()
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pl.read_ndjson(path).to_arrow()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise FeatureStoreError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    raise FeatureStoreError(f"{path}: unknown file type '{suffix}'; give a .parquet, .csv or .jsonl file")


def _run_json(run: Any) -> dict[str, Any]:
    """One view's materialization run as JSON data."""
    return {**run.__dict__, "until": run.until.isoformat()}


def _materialize_every(args: argparse.Namespace, lookback: Any) -> int:
    """`materialize --every`: one run per period, up to now, until SIGTERM or Ctrl-C, which end it once
    the current run is done (a run is never cut short). A failed run (PostgreSQL down, a broken
    definition) is reported and the next one tried. Exit status 1 if the last run failed."""
    import signal
    import threading

    from featurestore.config import parse_duration

    if args.until:
        raise FeatureStoreError("--every runs up to now each time: drop --until")
    if args.full:
        raise FeatureStoreError("--full rebuilds every view, and with --every it would at every run: run "
                                "`featurestore materialize --full` once, then --every")
    try:
        period = parse_duration(args.every).total_seconds()
    except ValueError as exc:
        raise FeatureStoreError(f"--every: {exc}; write e.g. 30s, 1m or 1h") from None
    if period <= 0:
        raise FeatureStoreError("--every must be longer than 0: write e.g. 30s, 1m or 1h")
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        due = time.monotonic()
        while not stop.is_set():
            failed = not _materialize_once(args, lookback)
            now = time.monotonic()
            due += period
            if due < now:  # the run took longer than the period: the next one starts at the next whole period
                due = now + period - (now - due) % period
            stop.wait(due - now)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    print(f"stopped after {'a failed' if failed else 'the last'} run", file=sys.stderr)
    return 1 if failed else 0


def _materialize_once(args: argparse.Namespace, lookback: Any) -> bool:
    """One run of `materialize --every`, on the project as it is now, as one line; False if it failed."""
    started = time.perf_counter()
    try:
        with _store(args) as store:
            runs = store.materialize(None, args.views or None, lookback=lookback,
                                     keep_old_versions=args.keep_old_versions)
    except FeatureStoreError as exc:
        print("error: " + " ".join(line.strip() for line in str(exc).splitlines() if line.strip()), file=sys.stderr,
              flush=True)  # one line, as every run has
        return False
    seconds = time.perf_counter() - started
    until = runs[0].until.isoformat() if runs else None
    if args.format == "json":
        print(json.dumps({"until": until, "seconds": round(seconds, 3), "views": [_run_json(run) for run in runs]}),
              flush=True)
        return True
    news = [run for run in runs if run.written or run.quarantined or run.mode in ("backfill", "rebuild")]
    print(f"{until}  {len(runs)} views: {sum(r.written for r in runs):,} rows written, {sum(r.late for r in runs):,} "
          f"late, {sum(r.quarantined for r in runs):,} quarantined  {seconds:.2f} s"
          + "".join(f"\n  {run.view}: {run.mode}, {run.written:,} written" for run in news), flush=True)
    return True


def online(args: argparse.Namespace) -> int:
    store = _store(args)
    entities: dict[str, list[Any]] = {}
    for item in args.entity:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise FeatureStoreError(f"--entity {item!r}: write KEY=V1,V2 (e.g. user_id=1,2)")
        entities[name.strip()] = [_key_value(v.strip()) for v in values.split(",")]
    features = [f for f in args.features.split(",") if f.strip()]
    frame = store.online(entities, features, at=_instant(args.at, "--at") if args.at else None)
    if args.format == "json":
        print(json.dumps(frame.to_dicts(), default=str))
    else:
        import polars as pl

        with pl.Config(tbl_cols=-1, tbl_width_chars=200):
            print(frame)
    store.close()
    return 0


def apply(args: argparse.Namespace) -> int:
    store = _store(args)
    summary = store.apply()
    runs = store.materialize(views=summary["to_materialize"]) if args.materialize and summary["to_materialize"] else []
    if args.format == "json":
        print(json.dumps({**summary, "materialized": [run.view for run in runs]}))
        return 0
    print(f"applied {len(store.views)} views (commit {summary['commit'] or 'none: not a git checkout'}): "
          f"{len(summary['added'])} added, {len(summary['removed'])} removed, {len(summary['changed'])} new "
          f"versions, {len(summary['updated'])} updated in form or annotations")
    for key, label in (("added", "added"), ("removed", "removed"), ("changed", "new version"),
                       ("updated", "updated")):
        for name in summary[key]:
            print(f"  {label}: {name}")
    if runs:
        print(f"materialized: {', '.join(run.view for run in runs)}")
    elif summary["to_materialize"]:
        print(f"not yet online: {', '.join(summary['to_materialize'])}; run `featurestore materialize`")
    store.close()
    return 0


def plan(args: argparse.Namespace) -> int:
    from featurestore.governance.plan import render_plan_markdown

    store = _store(args)
    result = store.plan(against=args.against)
    if args.format == "json":
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        print(render_plan_markdown(result, result.against), end="")
    for problem in result.problems_at_base:
        print(f"warning: at {args.against}, {problem} (left out of the comparison)", file=sys.stderr)
    if args.fail_on == "breaking" and result.breaking:
        print("error: the plan removes or changes views that have consumers (--fail-on breaking)", file=sys.stderr)
        return 3
    return 0


def unused(args: argparse.Namespace) -> int:
    from featurestore.governance.unused import UnusedFeature, UnusedSource

    if args.days < 1:
        raise FeatureStoreError(f"--days {args.days}: give a number of days, 1 or more")
    store = _store(args)
    found = store.unused(days=args.days)
    store.close()
    if args.format == "json":
        print(json.dumps([item.model_dump(mode="json") for item in found], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    features = [f for f in found if isinstance(f, UnusedFeature)]
    table = Table("feature", "owner", "version", "last read", "online bytes",
                  title=f"{len(features)} features no consumer read in the last {args.days} days")
    for item in features:
        size = item.online_bytes
        table.add_row(item.feature, item.owner, item.version, item.last_read or "never",
                      f"{size:,}" if size is not None else "-")
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    sources = [f.source for f in found if isinstance(f, UnusedSource)]
    if sources:
        console.print(f"sources no view reads: {', '.join(sources)}")
    return 0


def lineage(args: argparse.Namespace) -> int:
    if bool(args.feature) == bool(args.source):
        raise FeatureStoreError("give either a feature (view.feature) or --source source.column")
    store = _store(args)
    if args.source:
        found = store.dependents(args.source)
        if args.format == "json":
            print(json.dumps({"column": args.source, "features": found}))
        else:
            print(f"{args.source} feeds {len(found)} feature(s)" + "".join(f"\n  {f}" for f in found))
        return 0
    lineage = store.lineage(args.feature)
    if args.format == "json":
        print(json.dumps({"feature": lineage.feature, "sources": lineage.sources, "views": lineage.views,
                          "graph": [list(edge) for edge in lineage.graph]}))
        return 0
    print(lineage.feature)
    print("  computed from: " + (", ".join(lineage.sources) or "no column (a constant)"))
    if lineage.views:
        print("  through views: " + ", ".join(lineage.views))
    for source, target in lineage.graph:
        print(f"    {source} -> {target}")
    return 0


def docs(args: argparse.Namespace) -> int:
    from rich.console import Console

    from featurestore.catalog.page import build_site

    store = _store(args)
    with Console(stderr=True).status("writing the catalog…"):
        page = build_site(store, args.out, snapshot=args.snapshot)
    store.close()
    print(f"wrote {page} (open it in a browser; `featurestore serve` serves it at /)")
    return 0


def stats(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    store = _store(args)
    with Console(stderr=True).status(f"computing statistics of {args.view}…"):
        found = store.stats(args.view, since=_instant(args.since, "--since") if args.since else None)
        shifted = store.drift(args.view, args.snapshot) if args.snapshot else None
    store.close()
    if args.format == "json":
        print(json.dumps({"view": args.view, "features": found, **({"drift": shifted} if shifted else {})},
                         indent=2, default=str))
        return 0

    def number(value: Any) -> str:
        return "" if value is None else f"{value:,.4g}" if isinstance(value, float) else str(value)

    table = Table("feature", "type", "rows", "NULL", "distinct", "min", "p25", "median", "p75", "max", "mean / top")
    for item in found:
        quantiles = item.get("quantiles", {})
        top = ", ".join(f"{t['value']} ({t['count']:,})" for t in item.get("top", [])[:3])
        table.add_row(item["feature"], item["type"], f"{item['rows']:,}",
                      "" if item["null_fraction"] is None else f"{item['null_fraction']:.1%}", f"{item['distinct']:,}",
                      number(item.get("min")), number(quantiles.get("0.25")), number(quantiles.get("0.5")),
                      number(quantiles.get("0.75")), number(item.get("max")), number(item.get("mean")) or top)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    if shifted:
        drift_table = Table("feature", "PSI", "verdict", "snapshot rows", "online entities",
                            title=f"drift: online values against {args.snapshot}")
        for item in shifted:
            drift_table.add_row(item["feature"], f"{item['psi']:.4f}", item["verdict"], f"{item['snapshot_rows']:,}",
                                f"{item['online_entities']:,}")
        console.print(drift_table)
    return 0


def describe(args: argparse.Namespace) -> int:
    store = _store(args)
    found = store.describe(args.view)
    store.close()
    if args.format == "json":
        print(json.dumps(found.model_dump(mode="json"), indent=2))
        return 0
    lines = [f"{found.view} ({found.kind}, version {found.version})", f"  owner: {found.owner}"]
    if found.description:
        lines.append(f"  description: {found.description}")
    lines.append(f"  entity: {', '.join(found.entity)}; timestamp: {found.timestamp}")
    for key in ("available_after", "available_since", "ttl", "created", "windows", "tags", "consumers"):
        value = getattr(found, key)
        if value and value != "0s":
            lines.append(f"  {key}: {', '.join(value) if isinstance(value, tuple) else value}")
    for start, end in found.invalid:
        lines.append(f"  invalid: {start} .. {end}")
    if found.deprecated:
        lines.append(f"  deprecated: sunset {found.deprecated.sunset} {found.deprecated.hint}".rstrip())
    data = found.data
    if data is not None:  # always, from describe
        lines.append(f"  data: {data.count:,} {data.unit}, from {data.first} to {data.last}")
        for source in data.sources:
            lines.append(f"    source {source.column}: {source.rows:,} rows, from {source.first} to {source.last}")
    online = found.online
    if online:
        lines.append(f"  online: data known by {online.watermark} (lag {_lag(online.lag_seconds)}), "
                     f"materialized at {online.materialized_at}")
    else:
        lines.append("  online: not materialized in this version; run `featurestore materialize`")
    consumers = found.recorded_consumers or ()
    lines.append(f"  read in the last {CONSUMER_DAYS} days by: " + (", ".join(
        f"{c.consumer} ({c.reads:,} reads, last {c.last_read[:19]})" for c in consumers) or "nobody"))
    print("\n".join(lines))
    return 0


def _lag(seconds: float) -> str:
    from datetime import timedelta

    from featurestore.definitions.spec import format_duration

    return format_duration(timedelta(seconds=int(seconds))) if seconds >= 1 else f"{seconds:.3f}s"


def _key_value(text: str) -> Any:
    """An integer when it reads as one (integer keys are the common case), else the text."""
    try:
        return int(text)
    except ValueError:
        return text


def _instant(text: str, option: str) -> Any:
    from featurestore.definitions.spec import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        raise FeatureStoreError(f"{option} {text!r}: {exc}; write e.g. 2026-10-15 or 2026-10-15T06:00:00Z") from None


def serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    store = _store(args)
    _ = store.project  # a broken project stops here with its problems, before the server starts
    os.environ["FEATURESTORE_PROJECT"] = str(store.root)
    from server.metrics import prepare_multiprocess

    prepare_multiprocess(store.settings.state_dir / "metrics")  # the workers' counts, added up by every scrape
    config = uvicorn.Config("server.app:from_environment", factory=True, host=args.host, port=args.port,
                            workers=args.workers, log_level="warning", access_log=False)
    from server.workers import run_workers

    try:
        run_workers(config)
    except OSError as exc:
        raise FeatureStoreError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; choose another "
                                "--port") from None
    return 0


def key(args: argparse.Namespace) -> int:
    import hashlib
    import re
    import secrets

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.consumer):
        raise FeatureStoreError(f"consumer '{args.consumer}': use letters, digits, '_', '.' and '-'")
    secret = "fs_" + secrets.token_urlsafe(32)
    tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
    print(f"API key for {args.consumer} (shown once; give it to the consumer, keep it out of the repository):")
    print(f"    {secret}")
    print("\nAdd to featurestore.toml:\n")
    print(f"[server.keys.{args.consumer}]")
    print(f'sha256 = "{hashlib.sha256(secret.encode()).hexdigest()}"')
    if tags:
        print("tags = [" + ", ".join(f'"{t}"' for t in tags) + "]")
    if args.push:
        print("push = true")
    return 0


def init(args: argparse.Namespace) -> int:
    from featurestore.scaffold import init_project

    root = init_project(Path(args.dir))
    print(f"created a starter project in {root}\n  cd {args.dir} && featurestore validate")
    return 0


def demo_data(args: argparse.Namespace) -> int:
    from featurestore.config import load_settings
    from featurestore.demo import write_demo_data
    from featurestore.engines.postgres import resolve_url

    settings = load_settings(getattr(args, "project", None))
    started = time.perf_counter()
    counts = write_demo_data(settings.root, conninfo=resolve_url(settings.postgres_url, settings.state_dir),
                             offline_database=settings.offline_database, users=args.users,
                             transactions=args.transactions, seed=args.seed)
    if args.format == "json":
        print(json.dumps(counts))
    else:
        elapsed = time.perf_counter() - started
        print(f"wrote {', '.join(f'{n:,} {name}' for name, n in counts.items())} in {elapsed:.1f}s")
    return 0

