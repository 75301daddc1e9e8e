"""Training frame benchmark: featurestore against a hand-written DuckDB floor, in one run.

    python benchmarks/training_frame.py                     # 4M events x 500k spine rows, 10 features
    python benchmarks/training_frame.py --rows 200000 --spine 20000 --repeat 3
    python benchmarks/training_frame.py --scale-step        # also 5x the rows and 4x the spine
    python benchmarks/training_frame.py --format json > result.json

One snapshot view (`snap`: user_id, ts, f0..f{n-1}, TTL 7 days) over a generated
Parquet file of events, and a generated Parquet spine. The floor is the faster
of two queries a careful engineer would write by hand (an ASOF join, and a
TTL-bounded equi-join ranked by row_number()), each in a fresh DuckDB
connection reading the same Parquet files. All three must return the same
table, or the benchmark stops: timing a wrong answer is worthless.

Times are medians of `--repeat` interleaved rounds. Each round times our cold
call (a fresh FeatureStore on a project with no `.featurestore/` state, so no
cache of view rows), times the second call (which fills the cache inside the call), times
our warm call (the view's rows cached), then the two floors. Peak memory is the high-water RSS of
a child process that does only one contender's work. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from harness import (
    changed_during_run,
    child_report,
    command,
    duck,
    emit,
    fastest,
    header,
    machine,
    mark,
    median,
    page_in,
    peak_kib,
    progress,
    reset_peak,
    results_differ,
    spread,
    sql_literal,
    status_kib,
    table,
    timed,
    verdict,
    versions,
)
from snapshot_data import TTL_DAYS, Case, ensure_data, make_case

COLD_TIME_TARGET = 1.2   # ours / floor, cold cache
COLD_MEMORY_TARGET = 1.5  # ours / floor, peak RSS, cold cache
WARM_TIME_TARGET = 1.0   # ours / floor, warm cache: strictly faster
CONTENDERS = ("ours", "asof", "rank")  # in peak-memory children
TIMED = ("cold", "warm", "asof", "rank")


# --------------------------------------------------------------------------- contenders


def floor_sql(case: Case, kind: str) -> str:
    """The hand-written floor queries: spine columns then features, in spine (file row) order."""
    spine, events = sql_literal(case.spine_path), sql_literal(case.events)
    if kind == "asof":
        features = ",\n       ".join(f"CASE WHEN s.ts - e.ts > INTERVAL {TTL_DAYS} DAY THEN NULL ELSE e.{f} END AS {f}"
                                      for f in case.feature_names)
        return f"""
SELECT s.user_id, s.ts, s.label,
       {features}
FROM read_parquet({spine}, file_row_number = true) AS s
ASOF LEFT JOIN read_parquet({events}) AS e
  ON s.user_id = e.user_id AND s.ts >= e.ts
ORDER BY s.file_row_number"""
    if kind == "rank":
        features = ", ".join(f"e.{f}" for f in case.feature_names)
        return f"""
SELECT s.user_id, s.ts, s.label, {features}
FROM read_parquet({spine}, file_row_number = true) AS s
LEFT JOIN read_parquet({events}) AS e
  ON s.user_id = e.user_id AND e.ts <= s.ts AND e.ts >= s.ts - INTERVAL {TTL_DAYS} DAY
QUALIFY row_number() OVER (PARTITION BY s.file_row_number ORDER BY e.ts DESC) = 1
ORDER BY s.file_row_number"""
    raise ValueError(kind)


def run_floor(case: Case, kind: str) -> pa.Table:
    with duck() as connection:
        return connection.sql(floor_sql(case, kind)).to_arrow_table()


def clear_state(case: Case) -> None:
    """Remove the state earlier runs left in the case's project (its cache): the next frame is cold."""
    shutil.rmtree(case.project / ".featurestore", ignore_errors=True)


def fresh_store(case: Case) -> Any:
    """A FeatureStore on the case's project with no state left by earlier runs (no cache: cold)."""
    from featurestore import FeatureStore

    clear_state(case)
    return FeatureStore(case.project)


def second_read(store: Any, case: Case) -> None:
    """The store's second frame of the view: with the default `[offline] cache = "on_second_read"`
    it fills the cache of view rows inside the call, then joins from it."""
    run_ours(store, case)


def run_ours(store: Any, case: Case) -> tuple[pa.Table, str]:
    frame = store.training_frame(str(case.spine_path), ["snap.*"], timestamp="ts")
    return frame.to_arrow(), frame.sql


# --------------------------------------------------------------------------- checking


def compare(ours: pa.Table, floor: pa.Table, label: str) -> list[str]:
    """Differences between two frames (column order aside); empty when identical."""
    if sorted(ours.column_names) != sorted(floor.column_names):
        return [f"{label}: columns differ: ours {ours.column_names}, floor {floor.column_names}"]
    problems: list[str] = []
    if ours.num_rows != floor.num_rows:
        return [f"{label}: {ours.num_rows} rows in ours, {floor.num_rows} in the floor"]
    for name in floor.column_names:
        a, b = ours.column(name).combine_chunks(), floor.column(name).combine_chunks()
        if a.type != b.type:
            problems.append(f"{label}: column {name} is {a.type} in ours, {b.type} in the floor")
            continue
        if a.equals(b):
            continue
        import pyarrow.compute as pc

        same = pc.fill_null(pc.equal(a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        differ = np.flatnonzero(~pc.or_(same, both_null).to_numpy(zero_copy_only=False))
        where = ", ".join(f"row {i}: ours {a[int(i)].as_py()!r} floor {b[int(i)].as_py()!r}" for i in differ[:5])
        problems.append(f"{label}: column {name} differs in {len(differ)} rows ({where})")
    return problems


# --------------------------------------------------------------------------- memory (child processes)


def child_main(args: argparse.Namespace) -> None:
    """Do one contender's work (ours: a cold run, then a warm one) and print its peak RSS as JSON."""
    case = make_case(Path(args.workdir), args.rows, args.spine, args.features)
    report: dict[str, Any] = {"contender": args.child}
    if args.child == "ours":
        import featurestore  # noqa: F401  (its import cost is part of the baseline, like duckdb's below)

        store = fresh_store(case)
        report["baseline_kib"] = status_kib("VmRSS")
        report["seconds"], (frame, _) = timed(lambda: run_ours(store, case))
        report["rows"] = frame.num_rows
        del frame
        second_read(store, case)  # the cold peak includes the cache fill, which the second read makes
        gc.collect()
        report["peak_kib"] = peak_kib()
        report["warm_reset"] = reset_peak()
        frame, _ = run_ours(store, case)
        del frame
        gc.collect()
        report["warm_peak_kib"] = peak_kib()
    else:
        import duckdb  # noqa: F401

        report["baseline_kib"] = status_kib("VmRSS")
        report["seconds"], frame = timed(lambda: run_floor(case, args.child))
        report["rows"] = frame.num_rows
        del frame
        gc.collect()
        report["peak_kib"] = peak_kib()
    print(json.dumps(report))  # one line: the parent reads the last


def measure_memory(case: Case, workdir: Path, contender: str) -> dict[str, Any]:
    return child_report([sys.executable, str(Path(__file__).resolve()), "--child", contender, "--workdir",
                         str(workdir), "--rows", str(case.rows), "--spine", str(case.spine), "--features",
                         str(case.features)], contender)


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    case: Case
    generated_seconds: float = 0.0
    project_load_seconds: list[float] = field(default_factory=list)
    fill_seconds: list[float] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in TIMED})
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    sql: str = ""

    def median(self, name: str) -> float | None:
        return median(self.times[name])

    @property
    def cold(self) -> float:
        return self.median("cold") or float("nan")

    @property
    def floor_name(self) -> str:
        return fastest(self.times, ("asof", "rank"))

    @property
    def floor_seconds(self) -> float:
        return self.median(self.floor_name) or float("nan")

    @property
    def floor_memory_name(self) -> str:
        return min(("asof", "rank"), key=lambda name: self.memory[name]["peak_kib"])

    def summary(self) -> dict[str, Any]:
        floor = self.floor_seconds
        warm = self.median("warm")
        out: dict[str, Any] = {
            "rows": self.case.rows, "spine": self.case.spine, "features": self.case.features,
            "data_folder": str(self.case.folder),
            "seconds": {name: values for name, values in self.times.items()},
            "median_seconds": {"ours_cold": self.cold, "ours_warm": warm,
                               "asof": self.median("asof"), "rank": self.median("rank")},
            "project_load_seconds_in_cold_run": median(self.project_load_seconds),
            "second_call_seconds": median(self.fill_seconds),
            "floor": self.floor_name,
            "time_ratio": {"cold": self.cold / floor, "warm": None if warm is None else warm / floor},
            "targets": {"cold_time": verdict(self.cold / floor, COLD_TIME_TARGET),
                        "warm_time": None if warm is None else verdict(warm / floor, WARM_TIME_TARGET, strict=True)},
        }
        if self.memory:
            floor_peak = self.memory[self.floor_memory_name]["peak_kib"]
            ours = self.memory["ours"]
            out["memory_kib"] = self.memory
            out["memory_floor"] = self.floor_memory_name
            out["memory_ratio"] = {"cold": ours["peak_kib"] / floor_peak, "warm": ours["warm_peak_kib"] / floor_peak}
            out["first_call_in_new_process_seconds"] = {name: self.memory[name]["seconds"] for name in CONTENDERS}
            out["targets"]["cold_memory"] = verdict(ours["peak_kib"] / floor_peak, COLD_MEMORY_TARGET)
        return out


def warm_process(case: Case) -> None:
    """Pay once-per-process costs outside every timer, so "cold" means only the SDK's own cache is empty.

    Imports (the SDK loads its modules lazily), the OS file cache (both contenders read the same
    files; whoever went first would pay the disk), and DuckDB's first large query in a process
    (the allocator faulting in its memory: up to 2x slower, and ours runs first in every round).
    """
    import duckdb
    import pyarrow.dataset  # noqa: F401  (pq.read_table imports it, and it imports pandas: ~0.4 s)

    import featurestore.offline.frames  # noqa: F401
    from featurestore import FeatureStore  # noqa: F401

    with duckdb.connect() as connection:
        connection.sql("SELECT 1").fetchall()
    page_in(case.events, case.spine_path)
    run_floor(case, "asof")


def run_case(case: Case, workdir: Path, repeat: int, measure_mem: bool, log: Callable[[str], None]) -> Result:
    from featurestore import FeatureStore

    result = Result(case)
    result.generated_seconds = ensure_data(case, log)
    warm_process(case)
    gc.collect()
    for round_number in range(repeat):
        # Cold: a new store on a project with no state; loading the project is part of a first call.
        clear_state(case)
        started = time.perf_counter()
        store = FeatureStore(case.project)
        _ = store.project
        result.project_load_seconds.append(time.perf_counter() - started)
        seconds, (cold, sql) = timed(lambda store=store: run_ours(store, case))
        result.times["cold"].append(seconds + result.project_load_seconds[-1])
        result.sql = sql
        # The second frame of the view fills the cache inside the call (timed on its own), then joins.
        result.fill_seconds.append(timed(lambda store=store: second_read(store, case))[0])
        seconds, (warm, _) = timed(lambda store=store: run_ours(store, case))
        result.times["warm"].append(seconds)
        floors = {}
        for kind in ("asof", "rank"):
            seconds, floors[kind] = timed(lambda kind=kind: run_floor(case, kind))
            result.times[kind].append(seconds)
        if round_number == 0:  # both of our paths (a cache is a new way to be wrong) against both floors
            problems = [p for kind in floors for run, ours in (("cold", cold), ("warm", warm))
                        for p in compare(ours, floors[kind], f"ours ({run}) vs {kind}")]
            if problems:
                raise results_differ("\n  ".join(problems))
            log(f"check: ours (cold and warm), asof and rank agree on all {cold.num_rows:,} rows x "
                f"{cold.num_columns} columns")
        log(f"round {round_number + 1}/{repeat}: ours cold {result.times['cold'][-1]:.3f}s (second call, "
            f"filling the cache, {result.fill_seconds[-1]:.3f}s), warm {result.times['warm'][-1]:.3f}s, "
            f"asof {result.times['asof'][-1]:.3f}s, rank {result.times['rank'][-1]:.3f}s")
        store.close()
        del cold, warm, floors, store
        gc.collect()
    if measure_mem:
        for contender in CONTENDERS:
            log(f"peak memory: {contender} in a child process")
            result.memory[contender] = measure_memory(case, workdir, contender)
    return result


# --------------------------------------------------------------------------- reporting


def print_report(report: dict[str, Any]) -> None:
    console = header(report, "Training frame benchmark", 120)
    for scale in report["scales"]:
        rows = table(f"{scale['rows']:,} events x {scale['spine']:,} spine rows, {scale['features']} features, "
                     f"TTL {TTL_DAYS}d, {report['repeat']} rounds",
                     ("contender", "time (s)", "min-max", "x floor", "peak RSS (MiB)", "x floor", "time target",
                      "memory target"), left=("contender", "time target", "memory target"))
        med, ratio, targets = scale["median_seconds"], scale["time_ratio"], scale["targets"]
        memory = scale.get("memory_kib", {})
        mem_floor = memory.get(scale.get("memory_floor", ""), {}).get("peak_kib")

        def mib(kib: int | None) -> str:
            return "-" if kib is None else f"{kib / 1024:,.0f}"

        def mem_ratio(kib: int | None, floor: int | None = mem_floor) -> str:
            return "-" if kib is None or not floor else f"{kib / floor:.2f}"

        ours_mem = memory.get("ours", {})
        warm = med["ours_warm"]
        rows.add_row(f"ours, cold (median, {len(scale['seconds']['cold'])} calls)", f"{med['ours_cold']:.3f}",
                     spread(scale["seconds"]["cold"]), f"{ratio['cold']:.2f}",
                     mib(ours_mem.get("peak_kib")), mem_ratio(ours_mem.get("peak_kib")),
                     mark(targets["cold_time"], f"<={COLD_TIME_TARGET}x", "-"),
                     mark(targets.get("cold_memory"), f"<={COLD_MEMORY_TARGET}x", "-"))
        rows.add_row(f"ours, warm (median, {len(scale['seconds']['warm'])} calls)",
                     "-" if warm is None else f"{warm:.3f}", spread(scale["seconds"]["warm"]),
                     "-" if warm is None else f"{ratio['warm']:.2f}",
                     mib(ours_mem.get("warm_peak_kib")), mem_ratio(ours_mem.get("warm_peak_kib")),
                     mark(targets["warm_time"], "<1x", "-"), "")
        for kind, label in (("asof", "floor: ASOF join"), ("rank", "floor: join + rank")):
            rows.add_row(label, f"{med[kind]:.3f}", spread(scale["seconds"][kind]),
                         f"{med[kind] / med[scale['floor']]:.2f}",
                         mib(memory.get(kind, {}).get("peak_kib")), mem_ratio(memory.get(kind, {}).get("peak_kib")),
                         "", "")
        console.print(rows)
        console.print(f"  floor time = '{scale['floor']}' median; floor memory = '{scale.get('memory_floor', '-')}' "
                      f"peak. Ours cold = a first call on a fresh project (no cache), including "
                      f"{scale['project_load_seconds_in_cold_run']:.3f}s of loading the project; warm = the next call, "
                      f"after the second call, which fills the cache ({scale['second_call_seconds']:.3f}s).")
        if "first_call_in_new_process_seconds" in scale:
            first = scale["first_call_in_new_process_seconds"]
            console.print("  first call in a new Python process (lazy imports included; memory children, not "
                          "interleaved): " + ", ".join(f"{name} {first[name]:.3f}s" for name in CONTENDERS))
    if "scale_change" in report:
        change = report["scale_change"]
        console.print(f"[bold]scale step[/bold] ({change['from']} -> {change['to']}): time ratio cold "
                      f"{change['cold_time_ratio'][0]:.2f}x -> {change['cold_time_ratio'][1]:.2f}x, warm "
                      f"{_fmt(change['warm_time_ratio'][0])} -> {_fmt(change['warm_time_ratio'][1])}, "
                      f"memory ratio {_fmt(change['memory_ratio'][0])} -> {_fmt(change['memory_ratio'][1])}; "
                      f"floor time grew {change['floor_growth']:.1f}x, ours (cold) {change['ours_growth']:.1f}x")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="events in the view's source (default 4M)")
    parser.add_argument("--spine", type=int, default=500_000, help="spine rows (default 500k)")
    parser.add_argument("--features", type=int, default=10, help="feature columns (default 10)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; medians are reported (default 5)")
    parser.add_argument("--scale-step", action="store_true", help="also run at 5x rows and 4x spine rows")
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "featurestore-bench"),
                        help="where data and the benchmark project are generated (reused when unchanged)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rows < 1 or args.spine < 1 or args.features < 1:
        parser.error("--rows, --spine, --features and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    log = progress()
    # The SDK is often installed editable and edited while this runs: name the code the timings used.
    found_versions = versions()
    workdir = Path(args.workdir).resolve()
    sizes = [(args.rows, args.spine)] + ([(args.rows * 5, args.spine * 4)] if args.scale_step else [])
    results = []
    for rows, spine in sizes:
        case = make_case(workdir, rows, spine, args.features)
        log(f"case: {rows:,} events x {spine:,} spine rows, {args.features} features")
        results.append(run_case(case, workdir, args.repeat, not args.no_memory, log))
    report: dict[str, Any] = {
        "command": command(),
        "machine": machine(), "versions": found_versions, "repeat": args.repeat,
        "targets": {"cold_time": f"ours <= {COLD_TIME_TARGET}x floor",
                    "cold_memory": f"ours <= {COLD_MEMORY_TARGET}x floor",
                    "warm_time": "ours < floor"},
        "scales": [r.summary() for r in results],
        "our_sql": results[0].sql,
    }
    if warning := changed_during_run(found_versions):
        report["warning"] = f"{warning}; the memory children may have run newer code than the timings"
    if len(results) == 2:
        small, large = report["scales"]
        report["scale_change"] = {
            "from": f"{small['rows']:,}x{small['spine']:,}", "to": f"{large['rows']:,}x{large['spine']:,}",
            "cold_time_ratio": [small["time_ratio"]["cold"], large["time_ratio"]["cold"]],
            "warm_time_ratio": [small["time_ratio"]["warm"], large["time_ratio"]["warm"]],
            "memory_ratio": [s.get("memory_ratio", {}).get("cold") for s in (small, large)],
            "floor_growth": results[1].floor_seconds / results[0].floor_seconds,
            "ours_growth": results[1].cold / results[0].cold,
        }
    emit(report, args.format, print_report)


if __name__ == "__main__":
    main()
