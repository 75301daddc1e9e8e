"""What tests share besides fixtures: small projects written to disk, their data, and database resets.

    project = ProjectDir(tmp_path / "proj")
    project.parquet("events", events_table())
    project.view("spend", SNAPSHOT)
    code, problems = project.validate(capsys)

Random cases and the brute-force reference live beside it: snapshot_cases.py, window_cases.py,
timelines.py and reference.py. Tests import these, never each other.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.cli.main import main

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class ProjectDir:
    """A project on disk: sources as Parquet, definitions as files, validate through the CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sources: dict[str, str] = {}
        (root / "definitions").mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        lines = ['definitions = "definitions"', "[sources]"]
        lines += [f"{name} = {spec}" for name, spec in self.sources.items()]
        (self.root / "featurestore.toml").write_text("\n".join(lines) + "\n" + extra)

    def parquet(self, name: str, table: pa.Table) -> None:
        pq.write_table(table, self.root / "data" / f"{name}.parquet")
        self.sources[name] = f'"data/{name}.parquet"'
        self.write_config()

    def view(self, name: str, text: str, folder: str = "") -> Path:
        path = self.root / "definitions" / folder / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def run(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--project", str(self.root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def validate(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
        code, out, _ = self.run("validate", "--format", "json", capsys=capsys)
        return code, json.loads(out)["problems"]


def events_table(n: int = 6) -> pa.Table:
    return pa.table({
        "user_id": pa.array([i % 3 for i in range(n)], pa.int64()),
        "card_id": pa.array(list(range(n)), pa.int64()),
        "amount": pa.array([float(i) for i in range(n)], pa.float64()),
        "ts": pa.array([T0 + timedelta(hours=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
    })


SNAPSHOT = """
    -- entity: user_id
    -- timestamp: ts
    -- owner: team@example.com
    SELECT user_id, ts, amount
    FROM events
"""

WINDOW = """
    -- entity: user_id
    -- timestamp: ts
    -- owner: team@example.com
    -- windows: 3h, 1d
    SELECT user_id, count(*) AS n, sum(amount) AS total
    FROM events
    GROUP BY user_id
"""


def reset(url: str) -> None:
    """Drop the online store's schema and pushed rows: the next materialization starts from nothing."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA IF EXISTS featurestore_online CASCADE")
        connection.execute("DROP SCHEMA IF EXISTS featurestore_push CASCADE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(root: Path, postgres_url: str, workers: int = 2) -> tuple[Any, str]:
    """`featurestore serve --workers N` on the project at `root`, started (not yet waited for): the
    process and its base URL."""
    import os
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "featurestore.cli.main", "--project", str(root), "serve",
                                "--port", str(port), "--workers", str(workers)],
                               env={**os.environ, "FEATURESTORE_POSTGRES_URL": postgres_url},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(base: str, seconds: float = 60) -> None:
    """Until the service at `base` answers /healthz (or `seconds` have passed: the test's requests then fail)."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
