"""The same training frame on DuckDB and on Apache Spark (local), with a hand-written Spark floor, in one run.

    python benchmarks/spark.py                        # 1M events x 100k spine rows, 3 rounds
    python benchmarks/spark.py --rows 200000 --spine 20000 --repeat 1
    python benchmarks/spark.py --master local[4] --format json > result.json

The data and the snapshot view `snap` (TTL 7 days, 10 features) are snapshot_data.py's; a
window view `win` over the same events adds count(*) and sum(f0) over 1 and 7 days. Two frames:

- `snap.*`: ours on DuckDB, ours on Spark, and a floor on Spark: the range join ranked by
  row_number() that one writes by hand on Spark (no ASOF join there).
- `snap.*` + `win.*`: ours on DuckDB and on Spark (no hand-written floor: that is the point).

All results must be equal (ours on both engines, and the floor's features), or the run stops.
Spark runs in one local session, started and warmed up before timing (its start-up is reported
apart); DuckDB without the
cache of view rows (cold), like Spark, which does not use it. Times are medians of `--repeat`
rounds. Needs `pip install 'featurestore[spark]'` and Java 17+.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from harness import command, emit, header, machine, medians, progress, table, timed, versions
from snapshot_data import TTL_DAYS, ensure_data, make_case

WINDOW_VIEW = ("-- entity: user_id\n-- timestamp: ts\n-- owner: bench@example.com\n"
               "-- description: benchmark window view\n-- windows: 1d, 7d\n"
               "SELECT user_id, count(*) AS n, sum(f0) AS s0 FROM events GROUP BY user_id\n")
FRAMES = {"snapshot": ["snap.*"], "snapshot+windows": ["snap.*", "win.*"]}


def floor_sql(case: Any) -> str:
    """The hand-written Spark floor for `snap.*`: spine columns then features, in spine order."""
    features = ", ".join(f"e.{f}" for f in case.feature_names)
    return f"""
SELECT s.user_id, s.ts, s.label, {features}
FROM (SELECT *, monotonically_increasing_id() AS rn FROM parquet.`{case.spine_path}`) AS s
LEFT JOIN parquet.`{case.events}` AS e
  ON s.user_id = e.user_id AND e.ts <= s.ts AND e.ts >= s.ts - INTERVAL {TTL_DAYS} DAYS
QUALIFY row_number() OVER (PARTITION BY s.rn ORDER BY e.ts DESC) = 1
ORDER BY s.rn"""


def same(a: pa.Table, b: pa.Table, label: str) -> float:
    """Stop unless the tables hold the same values in their common columns; floating-point values may
    differ in the last bits (engines add in different orders). Returns the largest relative difference."""
    import numpy as np

    worst = 0.0
    if a.num_rows != b.num_rows:
        raise SystemExit(f"RESULTS DIFFER: {label}: {a.num_rows} rows against {b.num_rows}")
    for name in (c for c in a.column_names if c in b.column_names):
        x, y = a.column(name), b.column(name)
        if pa.types.is_floating(x.type) and pa.types.is_floating(y.type):
            u, v = x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False)
            if not np.array_equal(np.isnan(u), np.isnan(v)):
                raise SystemExit(f"RESULTS DIFFER: {label}: NULLs of {name}")
            known = ~np.isnan(u)
            scale = np.maximum(np.abs(u[known]), np.abs(v[known]))
            relative = np.abs(u[known] - v[known]) / np.where(scale > 0, scale, 1)
            worst = max(worst, float(relative.max(initial=0.0)))
            if worst > 1e-9:
                raise SystemExit(f"RESULTS DIFFER: {label}: {name} by {worst:.2g} (relative)")
        elif x.to_pylist() != y.to_pylist():
            raise SystemExit(f"RESULTS DIFFER: {label}: {name}")
    return worst


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from featurestore import FeatureStore
    from featurestore.engines.spark import local_session

    case = make_case(Path(args.workdir).resolve(), args.rows, args.spine, 10)
    ensure_data(case, log)
    (case.project / "definitions" / "win.sql").write_text(WINDOW_VIEW)
    store = FeatureStore(case.project, consumer="benchmark")
    spine = pq.read_table(case.spine_path)
    log(f"starting Spark ({args.master})")
    start_seconds, spark = timed(lambda: local_session(args.master))
    log("warming Spark up (its JIT): one frame, untimed")
    store.training_frame(spine.slice(0, 1000), FRAMES["snapshot+windows"], engine="spark", spark=spark)
    spark.sql(floor_sql(case)).limit(10).toArrow()
    seconds: dict[str, list[float]] = {}
    differences: dict[str, float] = {}
    for round_number in range(args.repeat):
        for name, features in FRAMES.items():
            log(f"round {round_number + 1}/{args.repeat}: {name}")
            duck_s, duck = timed(
                lambda features=features: store.training_frame(spine, features, cache=False).to_arrow())
            spark_s, on_spark = timed(lambda features=features: store.training_frame(spine, features, engine="spark",
                                                                   spark=spark).to_arrow())
            if on_spark.schema != duck.schema:
                raise SystemExit(f"RESULTS DIFFER: {name}: types")
            differences[name] = max(differences.get(name, 0.0), same(on_spark, duck, f"{name}: Spark vs DuckDB"))
            seconds.setdefault(f"{name}/duckdb", []).append(duck_s)
            seconds.setdefault(f"{name}/spark", []).append(spark_s)
            if name == "snapshot":
                floor_s, floor = timed(lambda: spark.sql(floor_sql(case)).toArrow())
                same(duck, floor, "ours vs the hand-written Spark floor")
                seconds.setdefault("snapshot/spark floor", []).append(floor_s)
    med = medians(seconds)
    return {
        "command": command(), "machine": machine(), "versions": versions("pyspark"),
        "rows": args.rows, "spine": args.spine, "master": args.master, "repeat": args.repeat,
        "spark_start_seconds": round(start_seconds, 2),
        "largest_relative_difference": differences,
        "seconds": {key: round(value, 3) for key, value in med.items()},
        "spread": {key: [round(min(v), 3), round(max(v), 3)] for key, v in seconds.items()},
        "ratios": {
            "snapshot: spark / duckdb": round(med["snapshot/spark"] / med["snapshot/duckdb"], 2),
            "snapshot: ours on spark / spark floor": round(med["snapshot/spark"] / med["snapshot/spark floor"], 2),
            "snapshot+windows: spark / duckdb": round(med["snapshot+windows/spark"]
                                                      / med["snapshot+windows/duckdb"], 2),
        },
    }


def print_report(report: dict[str, Any]) -> None:
    console = header(report, "Spark vs DuckDB benchmark", 110)
    console.print(f"{report['rows']:,} events x {report['spine']:,} spine rows; Spark {report['master']}, "
                  f"started in {report['spark_start_seconds']} s (not in the times below)")
    rows = table(None, ("frame / engine", "median s", "spread s"), left=("frame / engine", "median s", "spread s"))
    for key, value in report["seconds"].items():
        low, high = report["spread"][key]
        rows.add_row(key, f"{value:.2f}", f"{low:.2f}–{high:.2f}")
    console.print(rows)
    for name, ratio in report["ratios"].items():
        console.print(f"{name}: {ratio:.2f}x")
    console.print("Spark's values against DuckDB's, largest relative difference (float sums added in another "
                  "order): " + ", ".join(f"{k} {v:.1g}" for k, v in report["largest_relative_difference"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="events (default 1,000,000)")
    parser.add_argument("--spine", type=int, default=100_000, help="spine rows (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "featurestore-bench"),
                        help="where the data and the project go")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    emit(run(args, progress()), args.format, print_report)


if __name__ == "__main__":
    main()
