"""What the benchmark scripts share: timing, interleaved rounds, peak memory, the machine header, the report.

Plain functions; each script keeps its own data, contenders, result checks and targets. A script:

    log, found = progress(), versions("psycopg")   # progress to stderr; the code the timings use
    times: dict[str, list[float]] = {}
    for number, order in interleaved(["ours", "floor"], repeat):   # the order rotates each round
        for name in order:
            seconds, answer = timed(lambda: run(name), collect=True)
            check(answer)                           # results are compared before any time counts
            times.setdefault(name, []).append(seconds)
    ratio = median(times["ours"]) / median(times[fastest(times, ["floor"])])
    report = {"command": command(), "machine": machine(), "versions": found, "verdict": verdict(ratio, 1.2)}
    if warning := changed_during_run(found):
        report["warning"] = warning
    emit(report, args.format, print_report)         # JSON, or the script's printer, which starts with
    console = header(report, "My benchmark", 120)   # title, command, machine, versions, warning
    rows = table("ours against the floor", ["contender", "min-max", "target"], left=("contender", "target"))
    rows.add_row("ours", spread(times["ours"]), mark(report["verdict"], "<=1.2x"))
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

T = TypeVar("T")


# --------------------------------------------------------------------------- the contenders' inputs


def sql_literal(path: Path) -> str:
    """A path as an SQL string literal: sql_literal(Path("it's.parquet")) == "'it''s.parquet'"."""
    return "'" + str(path).replace("'", "''") + "'"


def duck() -> Any:
    """A fresh in-memory DuckDB connection in UTC, with DuckDB's default threads and memory limit."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def page_in(*paths: Path) -> None:
    """Read files through once: the OS file cache holds them before any timer (else the first contender pays)."""
    for path in paths:
        with open(path, "rb") as data:
            while data.read(1 << 24):
                pass


# --------------------------------------------------------------------------- timing


def timed(work: Callable[[], T], *, collect: bool = False) -> tuple[float, T]:
    """The seconds `work()` took, and its value; `collect`: a garbage collection first, outside the timer."""
    if collect:
        gc.collect()
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


def rotated(items: Sequence[T], number: int) -> list[T]:
    """Round `number`'s order, so that no contender always goes first:
    rotated(["a", "b", "c"], 1) == ["b", "c", "a"]."""
    shift = number % len(items)
    return [*items[shift:], *items[:shift]]


def interleaved(contenders: Sequence[T], repeat: int) -> Iterator[tuple[int, list[T]]]:
    """(round number, the contenders in that round's order) for `repeat` rounds, the order rotating each round."""
    return ((number, rotated(contenders, number)) for number in range(repeat))


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, underscores allowed (`1_000_000`)."""
    import argparse

    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (1_000_000 is fine), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def median(values: Sequence[float]) -> float | None:
    """The median; None without values."""
    return statistics.median(values) if values else None


def medians(times: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
    """Each contender's median: {"ours": [1.0, 3.0, 2.0]} -> {"ours": 2.0}."""
    return {name: median(values) for name, values in times.items()}


def fastest(times: Mapping[str, Sequence[float]], names: Iterable[str]) -> str:
    """Of `names`, the one with the smallest median time (the floor); a name without times comes last."""
    return min(names, key=lambda name: statistics.median(times[name]) if times.get(name) else float("inf"))


def spread(values: Sequence[float], digits: int = 2) -> str:
    """"min-max" of the values (`digits` decimals), or "-" for fewer than two: spread([0.5, 0.25]) == "0.25-0.50"."""
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}" if len(values) > 1 else "-"


def verdict(ratio: float | None, target: float, *, strict: bool = False) -> str | None:
    """"PASS" when `ratio` <= `target` (< when `strict`), else "FAIL"; None without a ratio."""
    return None if ratio is None else "PASS" if (ratio < target if strict else ratio <= target) else "FAIL"


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 99)) -> dict[str, float]:
    """Latency percentiles, mean and max: percentiles(us) == {"p50": ..., "p99": ..., "mean": ..., "max": ...}."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    found = {f"p{point}": float(np.percentile(array, point)) for point in points}
    found.update(mean=float(array.mean()), max=float(array.max()))
    return found


def results_differ(message: str) -> SystemExit:
    """The exit of a run whose contenders disagree: `raise results_differ("ours vs asof: ...")`."""
    return SystemExit(f"RESULTS DIFFER, benchmark aborted (a benchmark of a wrong answer is worthless):\n  {message}")


# --------------------------------------------------------------------------- peak memory (Linux /proc)


def status_kib(field: str) -> int | None:
    """A KiB field of /proc/self/status ("VmRSS": now, "VmHWM": the peak), or None."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), None)


def peak_kib() -> int:
    """This process's peak RSS in KiB (since the last `reset_peak()`)."""
    peak = status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0), so that a second run's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def child_report(command: list[str], name: str) -> dict[str, Any]:
    """Run a child process that does one contender's work and prints `{"peak_kib": peak_kib(), ...}` as its last
    line of output; returns that JSON object."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory child '{name}' failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the machine and the code


def command() -> str:
    """The command line, for the report."""
    return " ".join(["python", *sys.argv])


def machine() -> dict[str, Any]:
    """Cores (and those usable here), RAM, CPU model, platform, Python, and the 1-minute load now."""
    try:
        ram: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor() or platform.machine())
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "ram_gib": None if ram is None else round(ram / 2**30, 1), "cpu": cpu,
            "platform": platform.platform(), "python": platform.python_version(), "load_1min_at_start": load}


def versions(*extra: str) -> dict[str, Any]:
    """Versions of the core packages (None when missing) and of `extra` ones (left out when missing); featurestore's
    path, a digest of its sources, and its git commit ("(with local edits)" when its package has some)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {}
    for name in ("featurestore", "duckdb", "pyarrow", "numpy", "sqlglot", *extra):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            if name not in extra:
                found[name] = None
    import featurestore

    package = Path(featurestore.__file__).resolve().parent
    found["featurestore_path"] = str(package)
    # What the timings ran: a digest of the package's sources (a commit elsewhere in the checkout is no change).
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    found["featurestore_files"] = digest.hexdigest()[:12]
    try:
        git = ["git", "-C", str(package.parent)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "featurestore"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        if commit:
            found["featurestore_commit"] = commit + (" (with local edits)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return found


def changed_during_run(found: dict[str, Any]) -> str | None:
    """A warning when featurestore's sources changed since `found = versions()` (an editable install being edited
    during the run); None when unchanged."""
    now = versions()
    if now.get("featurestore_files") == found.get("featurestore_files"):
        return None
    return (f"featurestore's files changed during the run (commit {found.get('featurestore_commit')} -> "
            f"{now.get('featurestore_commit')})")


# --------------------------------------------------------------------------- the report


def progress() -> Callable[..., None]:
    """A logger of progress lines to stderr (rich, with the time): `log = progress(); log("round 1/3: ...")`."""
    from rich.console import Console

    return Console(stderr=True).log


def console(width: int) -> Console:
    """A rich console for the report, at least `width` columns wide when the output is not a terminal."""
    from rich.console import Console

    found = Console()
    if not found.is_terminal:
        found.width = max(found.width, width)
    return found


def header(report: dict[str, Any], title: str, width: int, machine_note: str = "", versions_note: str = "") -> Console:
    """Print the title and the report's "command", "machine", "versions" and "warning"; returns the console."""
    out = console(width)
    m, v = report["machine"], report["versions"]
    load = f", load {m['load_1min_at_start']:.2f} at start" if m.get("load_1min_at_start") is not None else ""
    out.print(f"[bold]{title}[/bold]  {report['command']}")
    out.print(f"machine: {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gib']} GiB RAM, {m['cpu']}, "
              f"{m['platform']}, Python {m['python']}{load}{machine_note}")
    out.print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + versions_note)
    if "warning" in report:
        out.print(f"[bold red]warning:[/bold red] {report['warning']}")
    return out


def table(title: str | None, columns: Sequence[str], left: Collection[str] = ("contender",)) -> Table:
    """A rich table with these columns, the `left` ones left-justified and the others (numbers) right-justified."""
    from rich.table import Table

    found = Table(title=title)
    for column in columns:
        found.add_column(column, justify="left" if column in left else "right")
    return found


def mark(result: str | None, target: str, missing: str = "") -> str:
    """A target cell: mark("PASS", "<=1.2x") == "<=1.2x [green]PASS[/green]"; `missing` without a verdict."""
    colour = {"PASS": "green", "FAIL": "red"}.get(result or "")
    return f"{target} [{colour}]{result}[/{colour}]" if colour else missing


def emit(report: dict[str, Any], fmt: str, printer: Callable[[dict[str, Any]], None]) -> None:
    """The report to stdout: as JSON (`--format json`; values JSON lacks as strings), else by `printer`."""
    if fmt == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        printer(report)
