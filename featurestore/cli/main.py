"""The `featurestore` command. Thin: every command calls the SDK and formats its answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featurestore.compiler import DIALECTS
from featurestore.engines import ENGINES
from featurestore.errors import FeatureStoreError, InvalidProjectError, Problem

__all__ = ["main"]

FORMATS = ("text", "json")
_CONSUMER_HELP = "who reads, recorded with the read (default $FEATURESTORE_CONSUMER, else 'unknown')"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except InvalidProjectError as exc:
        _print_problems(list(exc.problems), getattr(args, "format", "text"), _root(args))
        return 1
    except FeatureStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS,
                        help="project folder (default: the nearest folder above the current one with featurestore.toml)")
    parser = argparse.ArgumentParser(
        prog="featurestore", parents=[common],
        description="Features written as SQL: validate definitions, build point-in-time training frames, "
                    "serve fresh values online.",
        epilog="Run `featurestore COMMAND --help` for a command's options.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = commands.add_parser("validate", parents=[common], help="check every definition; exit 1 on any error",
                                   description="Check the whole project and report every problem with its file, "
                                               "line and a fix. Exits 1 when there is an error.")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text",
                          help="text (default), json, or github (workflow annotations for pull requests)")
    validate.add_argument("--data", action="store_true",
                          help="also run the views over the sources to find data errors (duplicate rows)")
    validate.set_defaults(handler=_validate)

    compile_ = commands.add_parser("compile", parents=[common], help="print the SQL a view or a frame compiles to",
                                   description="Print the runnable SQL that yields a view's rows, or with --frame "
                                               "a training frame's features for every row of a spine table.")
    compile_.add_argument("view", nargs="?", help="the view's name (its file name without .sql)")
    compile_.add_argument("--frame", metavar="FEATURES",
                          help="instead of a view: a frame of these features (comma-separated view.feature or view.*) "
                               "over the spine table --spine; prints its keys, time, then the features")
    compile_.add_argument("--spine", default="spine", metavar="TABLE",
                          help="with --frame: the table holding the spine's entity keys and UTC time (default spine)")
    compile_.add_argument("--timestamp", default="ts", help="with --frame: the spine's time column (default ts)")
    compile_.add_argument("--full-names", action="store_true", help="with --frame: name features view__feature")
    compile_.add_argument("--dialect", choices=DIALECTS, default="duckdb",
                          help="SQL dialect (default duckdb); see README, \"Other engines\"")
    compile_.add_argument("--format", choices=("sql", "json"), default="sql",
                          help="sql (default), or json with the view's version and kind")
    compile_.set_defaults(handler=_compile)

    views = commands.add_parser("views", parents=[common], help="list the views and their features",
                                description="List every view with its kind, entity, owner, version and features: "
                                            "the working tree's, or with --applied the registry's.")
    views.add_argument("--applied", action="store_true",
                       help="the views as last applied to the registry (with when and at which commit)")
    views.add_argument("--format", choices=FORMATS, default="text")
    views.set_defaults(handler=_views)

    frame = commands.add_parser("frame", parents=[common], help="build a point-in-time training frame",
                                description="Join a spine (entity keys + a timestamp per row) with features as of "
                                            "each row's time, and write the frame as Parquet or print its head.")
    frame.add_argument("--spine", required=True,
                       help="a Parquet file, or SQL over the sources (e.g. \"SELECT user_id, ts FROM transactions\")")
    frame.add_argument("--features", required=True, help="comma-separated: view.feature or view.*")
    frame.add_argument("--timestamp", default="ts", help="the spine's time column (default ts)")
    frame.add_argument("--full-names", action="store_true", help="name features view__feature")
    frame.add_argument("--out", metavar="FILE", help="write the frame to this Parquet file")
    frame.add_argument("--head", type=int, default=10, help="rows to print when not writing a file (default 10)")
    frame.add_argument("--explain", action="store_true",
                       help="print how each view was joined (its plan, and the estimated time of each plan "
                            "considered, from the shape of the data) and the SQL that ran, instead of rows")
    frame.add_argument("--format", choices=FORMATS, default="text")
    frame.add_argument("--consumer", help=_CONSUMER_HELP)
    frame.add_argument("--engine", choices=ENGINES, default="duckdb",
                       help="where the join runs: duckdb (default), or spark, a local Apache Spark session "
                            "(pip install 'featurestore[spark]'; Java 17+); same values and types")
    frame.add_argument("--spark-master", metavar="URL",
                       help="with --engine spark: the Spark master (default local[*], every core of this machine)")
    frame.set_defaults(handler=_frame)

    cache = commands.add_parser("cache", parents=[common], help="show or clear the cache of view rows",
                                description="Training frames keep each view's rows in the offline database and "
                                            "reuse them while the view's version and sources are unchanged.")
    cache.add_argument("action", choices=("status", "clear"))
    cache.add_argument("views", nargs="*", help="limit `clear` to these views")
    cache.add_argument("--format", choices=FORMATS, default="text")
    cache.set_defaults(handler=_cache)

    materialize = commands.add_parser(
        "materialize", parents=[common], help="write the views' latest values to the online store",
        description="Bring each view's online table in PostgreSQL up to date with all source data known "
                    "by --until (default now): a snapshot view's latest row per entity, a window view's events "
                    "within its longest window. Incremental: a view reads only rows known after its watermark and the "
                    "files its source gained since, late rows included. A changed view is backfilled into a new "
                    "table and switched to atomically; a killed run leaves nothing half-written.")
    materialize.add_argument("views", nargs="*", help="only these views (default: every view)")
    materialize.add_argument("--until", help="an ISO 8601 instant (default now); naive times are UTC")
    materialize.add_argument("--lookback", help="how far before the watermark to look again for late rows when "
                                                "a database table changed (default [online] lookback, 1d)")
    materialize.add_argument("--full", action="store_true",
                             help="rebuild from all source rows (after old rows of a database table changed; "
                                  "rewritten files are noticed without it)")
    materialize.add_argument("--keep-old-versions", action="store_true",
                             help="keep the tables of a changed view's previous versions")
    materialize.add_argument("--format", choices=FORMATS, default="text")
    materialize.set_defaults(handler=_materialize)

    online = commands.add_parser("online", parents=[common], help="look entities up in the online store",
                                 description="Print the online features of some entities, as a lookup service "
                                             "would serve them: --entity user_id=1,2 (repeat for composite keys).")
    online.add_argument("--entity", action="append", required=True, metavar="KEY=V1,V2",
                        help="a key column and its values, comma-separated; repeat for composite keys")
    online.add_argument("--features", required=True, help="comma-separated: view.feature or view.*")
    online.add_argument("--at", help="an ISO 8601 instant to apply TTLs at (default now)")
    online.add_argument("--format", choices=FORMATS, default="text")
    online.add_argument("--consumer", help=_CONSUMER_HELP)
    online.set_defaults(handler=_online)

    serve = commands.add_parser("serve", parents=[common], help="run the HTTP lookup service",
                                description="Serve online features over HTTP (FastAPI on uvicorn) for the project, "
                                            "on the PostgreSQL the SDK uses. OpenAPI docs at /docs.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=_serve)

    apply = commands.add_parser("apply", parents=[common], help="record the definitions in the registry",
                                description="Record the working tree's definitions (versions, annotations, compiled "
                                            "SQL, the git commit) in the registry in PostgreSQL, and say which views "
                                            "need `featurestore materialize` (or run it with --materialize).")
    apply.add_argument("--materialize", action="store_true", help="then backfill the views that need it")
    apply.add_argument("--format", choices=FORMATS, default="text")
    apply.set_defaults(handler=_apply)

    plan = commands.add_parser("plan", parents=[common], help="what the working tree changes, for a pull request",
                               description="Compare the working tree's definitions with the registry (default) or a "
                                           "git ref: views added, removed, changed in logic or only in form, features "
                                           "added and removed, backfills, consumers affected, deprecations and owner "
                                           "changes. Markdown for a pull-request comment by default.")
    plan.add_argument("--against", metavar="REF", help="a git ref (e.g. origin/main) instead of the registry; "
                                                       "needs no database")
    plan.add_argument("--format", choices=("markdown", "json"), default="markdown")
    plan.add_argument("--fail-on", choices=("breaking",), help="exit 3 when a removed or changed view has consumers")
    plan.set_defaults(handler=_plan)

    unused = commands.add_parser("unused", parents=[common], help="features no consumer read lately",
                                 description="List features no consumer read in the last --days days (never-read "
                                             "ones included), with owner, version, last read and online storage; "
                                             "then sources no view reads.")
    unused.add_argument("--days", type=int, default=30, help="the window, in days (default 30)")
    unused.add_argument("--format", choices=FORMATS, default="text")
    unused.set_defaults(handler=_unused)

    lineage = commands.add_parser("lineage", parents=[common], help="the source columns a feature comes from",
                                  description="Print the source columns (and views in between) feature VIEW.FEATURE "
                                              "is computed from, or with --source SRC.COL the features computed "
                                              "from that column.")
    lineage.add_argument("feature", nargs="?", help="view.feature")
    lineage.add_argument("--source", metavar="SRC.COL", help="the reverse: features that depend on this column")
    lineage.add_argument("--format", choices=FORMATS, default="text")
    lineage.set_defaults(handler=_lineage)

    describe = commands.add_parser("describe", parents=[common], help="a view's annotations, data span, freshness",
                                   description="Show a view's annotations, the span of time its data covers, invalid "
                                               "periods, online freshness (watermark and lag) and its consumers.")
    describe.add_argument("view")
    describe.add_argument("--format", choices=FORMATS, default="text")
    describe.set_defaults(handler=_describe)

    stats = commands.add_parser("stats", parents=[common], help="a view's feature statistics, and drift",
                                description="Per feature of VIEW over the offline data: rows, NULLs, distinct values, "
                                            "range, mean, quantiles and a histogram (top values for text). With "
                                            "--snapshot, also drift: the population stability index (PSI) of the "
                                            "online store's values against the snapshot's (< 0.1 stable, 0.1-0.25 "
                                            "moderate, >= 0.25 shifted).")
    stats.add_argument("view")
    stats.add_argument("--since", help="only rows (a window view: entities with events) from this instant, e.g. "
                                       "2026-10-01")
    stats.add_argument("--snapshot", metavar="DIR", help="a training snapshot to compare the online values with")
    stats.add_argument("--format", choices=FORMATS, default="text")
    stats.set_defaults(handler=_stats)

    docs = commands.add_parser("docs", parents=[common], help="write the feature catalog as a static HTML page",
                               description="Write the browsable feature catalog (views, features, owners, tags, "
                                           "versions, annotations, deprecation, lineage from sources to features, "
                                           "consumers and last reads, unused features, freshness, search) to "
                                           "OUT/index.html; `featurestore serve` serves the same page at /.")
    docs.add_argument("--out", default="site", help="the folder to write (default site/)")
    docs.add_argument("--snapshot", metavar="DIR", help="a training snapshot: show each feature's drift (PSI) against it")
    docs.set_defaults(handler=_docs)

    key = commands.add_parser("key", help="create an API key for the lookup service",
                              description="Print a new random API key for CONSUMER, and the lines to add to "
                                          "featurestore.toml (which stores only its SHA-256).")
    key.add_argument("action", choices=("new",))
    key.add_argument("consumer", help="who will use the key (e.g. fraud_model_v3)")
    key.add_argument("--tags", help="comma-separated tags of the views the key may read (default: all views)")
    key.set_defaults(handler=_key)

    init = commands.add_parser("init", help="create a starter project in DIR",
                               description="Create a working starter project: config, sample data and two views.")
    init.add_argument("dir", help="folder to create (may exist but must not hold a featurestore.toml)")
    init.set_defaults(handler=_init)

    demo = commands.add_parser("demo-data", parents=[common], help="write the fraud example's source data",
                               description="Write the example fraud project's sources: Parquet files, a PostgreSQL "
                                           "table and a DuckDB table. Deterministic for a seed.")
    demo.add_argument("--transactions", type=int, default=1_000_000, help="number of transactions (default 1,000,000)")
    demo.add_argument("--users", type=int, default=20_000, help="number of users (default 20,000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--format", choices=FORMATS, default="text")
    demo.set_defaults(handler=_demo_data)
    return parser


def _root(args: argparse.Namespace) -> Path | None:
    try:
        from featurestore.config import find_root

        return find_root(getattr(args, "project", None))
    except FeatureStoreError:
        return None


def _store(args: argparse.Namespace) -> Any:
    from featurestore.store import FeatureStore

    return FeatureStore(getattr(args, "project", "."), consumer=getattr(args, "consumer", None))


def _validate(args: argparse.Namespace) -> int:
    from featurestore.config import load_settings
    from featurestore.project import validate

    settings = load_settings(getattr(args, "project", None))
    project = validate(settings)
    problems = list(project.problems)
    if args.data:
        from featurestore.offline.frames import data_problems

        problems = sorted(problems + data_problems(project), key=lambda p: (str(p.path), p.line, p.column))
    _print_problems(problems, args.format, settings.root, checked=len(project.views))
    return 1 if any(p.severity == "error" for p in problems) else 0


def _print_problems(problems: list[Problem], fmt: str, root: Path | None, checked: int | None = None) -> None:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if fmt == "json":
        print(json.dumps({"errors": errors, "warnings": warnings,
                          "problems": [p.to_dict(root) for p in problems]}, indent=2))
        return
    if fmt == "github":
        for p in problems:
            title = _escape(p.code, prop=True)
            body = _escape(p.message + (f" — fix: {p.hint}" if p.hint else ""))
            print(f"::{p.severity} file={_escape(str(p.to_dict(root)['path']), prop=True)},line={p.line},"
                  f"col={p.column},title={title}::{body}")
        print(f"{errors} error(s), {warnings} warning(s)")
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        console.print(f"[bold]{escape(p.location(root))}[/]: [{colour}]{p.severity}[/][dim]\\[{p.code}][/] {escape(p.message)}")
        if p.hint:
            console.print(f"    [green]fix:[/] {escape(p.hint)}")
    if errors:
        console.print(f"[red]{errors} error(s)[/], {warnings} warning(s)")
    else:
        what = f"{checked} view(s) valid" if checked is not None else "valid"
        console.print(f"[green]✓ {what}[/]" + (f", {warnings} warning(s)" if warnings else ""))


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _compile(args: argparse.Namespace) -> int:
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


def _views(args: argparse.Namespace) -> int:
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


def _frame(args: argparse.Namespace) -> int:
    import time

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
        summary |= {"plans": frame.info["plans"], "sql": frame.sql}
    elif args.explain:
        from featurestore.offline.planner import explain

        print(explain(frame.info["plans"]))
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



def _cache(args: argparse.Namespace) -> int:
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


def _materialize(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from featurestore.config import parse_duration

    store = _store(args)
    until = _instant(args.until, "--until") if args.until else None
    try:
        lookback = parse_duration(args.lookback) if args.lookback else None
    except ValueError as exc:
        raise FeatureStoreError(f"--lookback: {exc}; write e.g. 6h or 1d") from None
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
        print(json.dumps([{**run.__dict__, "until": run.until.isoformat()} for run in runs]))
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


def _online(args: argparse.Namespace) -> int:
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


def _apply(args: argparse.Namespace) -> int:
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


def _plan(args: argparse.Namespace) -> int:
    from featurestore.governance.plan import render_plan_markdown

    store = _store(args)
    result = store.plan(against=args.against)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(render_plan_markdown(result, result["against"]), end="")
    for problem in result["problems_at_base"]:
        print(f"warning: at {args.against}, {problem} (left out of the comparison)", file=sys.stderr)
    if args.fail_on == "breaking" and result["breaking"]:
        print("error: the plan removes or changes views that have consumers (--fail-on breaking)", file=sys.stderr)
        return 3
    return 0


def _unused(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise FeatureStoreError(f"--days {args.days}: give a number of days, 1 or more")
    store = _store(args)
    found = store.unused(days=args.days)
    store.close()
    if args.format == "json":
        print(json.dumps(found, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    features = [f for f in found if f["kind"] == "feature"]
    table = Table("feature", "owner", "version", "last read", "online bytes",
                  title=f"{len(features)} features no consumer read in the last {args.days} days")
    for item in features:
        size = item["online_bytes"]
        table.add_row(item["feature"], item["owner"], item["version"], item["last_read"] or "never",
                      f"{size:,}" if size is not None else "-")
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    sources = [f["source"] for f in found if f["kind"] == "source"]
    if sources:
        console.print(f"sources no view reads: {', '.join(sources)}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
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


def _docs(args: argparse.Namespace) -> int:
    from rich.console import Console

    from featurestore.catalog.page import build_site

    store = _store(args)
    with Console(stderr=True).status("writing the catalog…"):
        page = build_site(store, args.out, snapshot=args.snapshot)
    store.close()
    print(f"wrote {page} (open it in a browser; `featurestore serve` serves it at /)")
    return 0


def _stats(args: argparse.Namespace) -> int:
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


def _describe(args: argparse.Namespace) -> int:
    store = _store(args)
    found = store.describe(args.view)
    store.close()
    if args.format == "json":
        print(json.dumps(found, indent=2, default=str))
        return 0
    lines = [f"{found['view']} ({found['kind']}, version {found['version']})", f"  owner: {found['owner']}"]
    if found["description"]:
        lines.append(f"  description: {found['description']}")
    lines.append(f"  entity: {', '.join(found['entity'])}; timestamp: {found['timestamp']}")
    for key in ("available_after", "available_since", "ttl", "created", "windows", "tags", "consumers"):
        if found.get(key) and found[key] != "0s":
            value = found[key]
            lines.append(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    for start, end in found["invalid"]:
        lines.append(f"  invalid: {start} .. {end}")
    if found["deprecated"]:
        lines.append(f"  deprecated: sunset {found['deprecated']['sunset']} {found['deprecated']['hint']}".rstrip())
    data = found["data"]
    count = data.get("rows", data.get("events"))
    lines.append(f"  data: {count:,} {'rows' if 'rows' in data else 'events'}, from {data['first']} to {data['last']}")
    for source in data["sources"]:
        lines.append(f"    source {source['column']}: {source['rows']:,} rows, from {source['first']} to {source['last']}")
    online = found["online"]
    if online:
        lines.append(f"  online: data known by {online['watermark']} (lag {_lag(online['lag_seconds'])}), "
                     f"materialized at {online['materialized_at']}")
    else:
        lines.append("  online: not materialized in this version; run `featurestore materialize`")
    consumers = found["recorded_consumers"] or []
    lines.append("  read in the last 30 days by: " + (", ".join(
        f"{c['consumer']} ({c['reads']:,} reads, last {c['last_read'][:19]})" for c in consumers) or "nobody"))
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


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    store = _store(args)
    store.project  # a broken project stops here with its problems, before the server starts
    os.environ["FEATURESTORE_PROJECT"] = str(store.root)
    config = uvicorn.Config("server.app:from_environment", factory=True, host=args.host, port=args.port,
                            workers=args.workers, log_level="warning", access_log=False)
    from server.workers import run_workers

    try:
        run_workers(config)
    except OSError as exc:
        raise FeatureStoreError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; choose another "
                                "--port") from None
    return 0


def _key(args: argparse.Namespace) -> int:
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
    return 0


def _init(args: argparse.Namespace) -> int:
    from featurestore.scaffold import init_project

    root = init_project(Path(args.dir))
    print(f"created a starter project in {root}\n  cd {args.dir} && featurestore validate")
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    import time

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


if __name__ == "__main__":
    sys.exit(main())
