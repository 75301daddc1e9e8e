"""The `featurestore` command line: every subcommand, its options and its help, and the function it runs.

    build_parser().parse_args(["frame", "spine.parquet", "user_daily_stats.*"])   # → args.handler is commands.frame
"""

from __future__ import annotations

import argparse

from featurestore.cli import commands
from featurestore.compiler import DIALECTS
from featurestore.engines import ENGINES
from featurestore.governance import CONSUMER_DAYS

__all__ = ["FORMATS", "build_parser"]

FORMATS = ("text", "json")


_CONSUMER_HELP = "who reads, recorded with the read (default $FEATURESTORE_CONSUMER, else 'unknown')"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS,
                        help="project folder (default: the nearest folder above the current one with "
                             "featurestore.toml)")
    parser = argparse.ArgumentParser(
        prog="featurestore", parents=[common],
        description="Features written as SQL: validate definitions, build point-in-time training frames, "
                    "serve fresh values online.",
        epilog="Run `featurestore COMMAND --help` for a command's options.")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = subcommands.add_parser("validate", parents=[common], help="check every definition; exit 1 on any error",
                                   description="Check the whole project and report every problem with its file, "
                                               "line and a fix. Exits 1 when there is an error.")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text",
                          help="text (default), json, or github (workflow annotations for pull requests)")
    validate.add_argument("--data", action="store_true",
                          help="also run the views over the sources to find data errors (duplicate rows)")
    validate.set_defaults(handler=commands.validate)

    compile_ = subcommands.add_parser("compile", parents=[common], help="print the SQL a view or a frame compiles to",
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
    compile_.set_defaults(handler=commands.compile_)

    views = subcommands.add_parser("views", parents=[common], help="list the views and their features",
                                description="List every view with its kind, entity, owner, version and features: "
                                            "the working tree's, or with --applied the registry's.")
    views.add_argument("--applied", action="store_true",
                       help="the views as last applied to the registry (with when and at which commit)")
    views.add_argument("--format", choices=FORMATS, default="text")
    views.set_defaults(handler=commands.views)

    frame = subcommands.add_parser("frame", parents=[common], help="build a point-in-time training frame",
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
                       help="print how each view was joined (its join, and the estimated time of each way "
                            "considered, from the shape of the data) and the SQL that ran, instead of rows")
    frame.add_argument("--format", choices=FORMATS, default="text")
    frame.add_argument("--consumer", help=_CONSUMER_HELP)
    frame.add_argument("--engine", choices=ENGINES, default="duckdb",
                       help="where the join runs: duckdb (default), or spark, a local Apache Spark session "
                            "(pip install 'featurestore[spark]'; Java 17+); same values and types")
    frame.add_argument("--spark-master", metavar="URL",
                       help="with --engine spark: the Spark master (default local[*], every core of this machine)")
    frame.set_defaults(handler=commands.frame)

    cache = subcommands.add_parser("cache", parents=[common], help="show or clear the cache of view rows",
                                description="Training frames keep each view's rows in the offline database and "
                                            "reuse them while the view's version and sources are unchanged.")
    cache.add_argument("action", choices=("status", "clear"))
    cache.add_argument("views", nargs="*", help="limit `clear` to these views")
    cache.add_argument("--format", choices=FORMATS, default="text")
    cache.set_defaults(handler=commands.cache)

    materialize = subcommands.add_parser(
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
    materialize.add_argument("--every", metavar="DURATION",
                             help="run again every DURATION (e.g. 1m) until stopped: SIGTERM or Ctrl-C ends it after "
                                  "the current run; one line per run (with --format json, one JSON object per line); "
                                  "each run reads the project anew, so a deployed change is picked up")
    materialize.add_argument("--format", choices=FORMATS, default="text")
    materialize.set_defaults(handler=commands.materialize)

    push = subcommands.add_parser(
        "push", parents=[common], help="add the rows of a file to a source, served at once",
        description="Add the rows of a Parquet, CSV or JSON-lines file to a source that names its arrival column "
                    "([sources.NAME] with path and arrival in featurestore.toml). All or nothing: a bad row is "
                    "named with its column and nothing is written. The store stamps each row's arrival with the "
                    "instant it accepted the batch unless the row has one. When it returns, the views row-wise "
                    "over the source serve the rows, frames read them, and the other views take them at the next "
                    "materialize.")
    push.add_argument("source", help="the source to push to")
    push.add_argument("file", help="a .parquet, .csv or .jsonl/.ndjson file of rows with the source's columns")
    push.add_argument("--idempotency-key", metavar="KEY",
                      help="a batch sent again with the same key is applied once and answered as the first time")
    push.add_argument("--format", choices=FORMATS, default="text")
    push.set_defaults(handler=commands.push)

    compact = subcommands.add_parser(
        "compact", parents=[common], help="move pushed rows into Parquet files in the store's space",
        description="Move the rows pushed to SOURCES (default: every source that takes pushes) from the landing "
                    "table in PostgreSQL into Parquet files under .featurestore/pushed/, partitioned by arrival "
                    "day. Safe to kill at any point: nothing is lost or read twice. Frames and materialize give "
                    "the same answers before and after.")
    compact.add_argument("sources", nargs="*", help="only these sources")
    compact.add_argument("--format", choices=FORMATS, default="text")
    compact.set_defaults(handler=commands.compact)

    online = subcommands.add_parser("online", parents=[common], help="look entities up in the online store",
                                 description="Print the online features of some entities, as a lookup service "
                                             "would serve them: --entity user_id=1,2 (repeat for composite keys).")
    online.add_argument("--entity", action="append", required=True, metavar="KEY=V1,V2",
                        help="a key column and its values, comma-separated; repeat for composite keys")
    online.add_argument("--features", required=True, help="comma-separated: view.feature or view.*")
    online.add_argument("--at", help="an ISO 8601 instant to apply TTLs at (default now)")
    online.add_argument("--format", choices=FORMATS, default="text")
    online.add_argument("--consumer", help=_CONSUMER_HELP)
    online.set_defaults(handler=commands.online)

    serve = subcommands.add_parser("serve", parents=[common], help="run the HTTP lookup service",
                                description="Serve online features over HTTP (FastAPI on uvicorn) for the project, "
                                            "on the PostgreSQL the SDK uses. OpenAPI docs at /docs.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=commands.serve)

    apply = subcommands.add_parser("apply", parents=[common], help="record the definitions in the registry",
                                description="Record the working tree's definitions (versions, annotations, compiled "
                                            "SQL, the git commit) in the registry in PostgreSQL, and say which views "
                                            "need `featurestore materialize` (or run it with --materialize).")
    apply.add_argument("--materialize", action="store_true", help="then backfill the views that need it")
    apply.add_argument("--format", choices=FORMATS, default="text")
    apply.set_defaults(handler=commands.apply)

    plan = subcommands.add_parser("plan", parents=[common], help="what the working tree changes, for a pull request",
                               description="Compare the working tree's definitions with the registry (default) or a "
                                           "git ref: views added, removed, changed in logic or only in form, features "
                                           "added and removed, backfills, consumers affected, deprecations and owner "
                                           "changes. Markdown for a pull-request comment by default.")
    plan.add_argument("--against", metavar="REF", help="a git ref (e.g. origin/main) instead of the registry; "
                                                       "needs no database")
    plan.add_argument("--format", choices=("markdown", "json"), default="markdown")
    plan.add_argument("--fail-on", choices=("breaking",), help="exit 3 when a removed or changed view has consumers")
    plan.set_defaults(handler=commands.plan)

    unused = subcommands.add_parser("unused", parents=[common], help="features no consumer read lately",
                                 description="List features no consumer read in the last --days days (never-read "
                                             "ones included), with owner, version, last read and online storage; "
                                             "then sources no view reads.")
    unused.add_argument("--days", type=int, default=CONSUMER_DAYS,
                        help=f"the window, in days (default {CONSUMER_DAYS})")
    unused.add_argument("--format", choices=FORMATS, default="text")
    unused.set_defaults(handler=commands.unused)

    lineage = subcommands.add_parser("lineage", parents=[common], help="the source columns a feature comes from",
                                  description="Print the source columns (and views in between) feature VIEW.FEATURE "
                                              "is computed from, or with --source SRC.COL the features computed "
                                              "from that column.")
    lineage.add_argument("feature", nargs="?", help="view.feature")
    lineage.add_argument("--source", metavar="SRC.COL", help="the reverse: features that depend on this column")
    lineage.add_argument("--format", choices=FORMATS, default="text")
    lineage.set_defaults(handler=commands.lineage)

    describe = subcommands.add_parser("describe", parents=[common], help="a view's annotations, data span, freshness",
                                   description="Show a view's annotations, the span of time its data covers, invalid "
                                               "periods, online freshness (watermark and lag) and its consumers.")
    describe.add_argument("view")
    describe.add_argument("--format", choices=FORMATS, default="text")
    describe.set_defaults(handler=commands.describe)

    stats = subcommands.add_parser("stats", parents=[common], help="a view's feature statistics, and drift",
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
    stats.set_defaults(handler=commands.stats)

    docs = subcommands.add_parser("docs", parents=[common], help="write the feature catalog as a static HTML page",
                               description="Write the browsable feature catalog (views, features, owners, tags, "
                                           "versions, annotations, deprecation, lineage from sources to features, "
                                           "consumers and last reads, unused features, freshness, search) to "
                                           "OUT/index.html; `featurestore serve` serves the same page at /.")
    docs.add_argument("--out", default="site", help="the folder to write (default site/)")
    docs.add_argument("--snapshot", metavar="DIR",
                      help="a training snapshot: show each feature's drift (PSI) against it")
    docs.set_defaults(handler=commands.docs)

    key = subcommands.add_parser("key", help="create an API key for the lookup service",
                              description="Print a new random API key for CONSUMER, and the lines to add to "
                                          "featurestore.toml (which stores only its SHA-256).")
    key.add_argument("action", choices=("new",))
    key.add_argument("consumer", help="who will use the key (e.g. fraud_model_v3)")
    key.add_argument("--tags", help="comma-separated tags of the views the key may read (default: all views)")
    key.add_argument("--push", action="store_true",
                     help="the key may also push rows into sources (POST /v1/push/SOURCE); keys read only otherwise")
    key.set_defaults(handler=commands.key)

    init = subcommands.add_parser("init", help="create a starter project in DIR",
                               description="Create a working starter project: config, sample data and two views.")
    init.add_argument("dir", help="folder to create (may exist but must not hold a featurestore.toml)")
    init.set_defaults(handler=commands.init)

    demo = subcommands.add_parser("demo-data", parents=[common], help="write the fraud example's source data",
                               description="Write the example fraud project's sources: Parquet files, a PostgreSQL "
                                           "table and a DuckDB table. Deterministic for a seed.")
    demo.add_argument("--transactions", type=int, default=1_000_000, help="number of transactions (default 1,000,000)")
    demo.add_argument("--users", type=int, default=20_000, help="number of users (default 20,000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--format", choices=FORMATS, default="text")
    demo.set_defaults(handler=commands.demo_data)
    return parser
