"""The registry: the applied definitions in PostgreSQL, with every version they ever had.

    records = project_records(project)            # the working tree, as the registry would hold it
    summary = apply(project, url, commit="3f2a…") # {"added": [...], "removed": [...], "changed": [...], ...}
    applied_records(url)                          # {"user_daily_stats": {"version": ..., "entry": {...}, ...}}
    records_at_ref(project, "origin/main")        # the definitions at a git ref, as the registry would hold them

Schema `featurestore_registry`:
- `views`: the applied working tree, one row per view: its version, catalog entry (owner,
  annotations, features with types), definition text, normalized and compiled SQL, when it
  was applied and the git commit then checked out;
- `versions`: every version ever applied, kept after the view changes or goes;
- `applies`: one row per `apply`, with what it changed;
- `usage` and `usage_files`: who read which features (see featurestore.governance.usage).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from featurestore.compiler.render import render_view
from featurestore.compiler.version import normalized_sql
from featurestore.definitions.spec import FeatureView, catalog_entry
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError, Problem
from featurestore.project import Project, validate

__all__ = ["SCHEMA", "applied_records", "apply", "ensure_schema", "git", "git_commit", "project_records", "record",
           "records_at_ref", "require_git_ref"]

SCHEMA = "featurestore_registry"


def ensure_schema(connection: Any) -> None:
    """Create the registry's tables if they are missing (idempotent; serialized across processes)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(SCHEMA)])
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.views (view text PRIMARY KEY, version text NOT NULL, "
            "entry jsonb NOT NULL, definition text NOT NULL, normalized_sql text NOT NULL, compiled_sql text NOT NULL, "
            "applied_at timestamptz NOT NULL, commit text)")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.versions (view text, version text, entry jsonb NOT NULL, "
            "definition text NOT NULL, normalized_sql text NOT NULL, compiled_sql text NOT NULL, "
            "first_applied_at timestamptz NOT NULL, last_applied_at timestamptz NOT NULL, commit text, "
            "PRIMARY KEY (view, version))")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.applies (id bigserial PRIMARY KEY, applied_at timestamptz NOT NULL, "
            "commit text, summary jsonb NOT NULL)")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.usage (view text, feature text, version text, consumer text, "
            "mode text CHECK (mode IN ('offline', 'online')), reads bigint NOT NULL, rows bigint NOT NULL, "
            "first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL, "
            "PRIMARY KEY (view, feature, version, consumer, mode))")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.usage_files (file text PRIMARY KEY, "
                           "ingested_at timestamptz NOT NULL DEFAULT now())")


def record(project: Project, view: FeatureView) -> dict[str, Any]:
    """What the registry keeps of one view: version, catalog entry, definition, its SQL."""
    settings = project.settings
    return {"version": view.version, "entry": catalog_entry(view, settings.root), "definition": view.text,
            "normalized_sql": normalized_sql(view),
            "compiled_sql": render_view(view, project.views, settings.sources, settings.root, "duckdb")}


def project_records(project: Project) -> dict[str, dict[str, Any]]:
    return {name: record(project, view) for name, view in project.views.items()}


def applied_records(url: str) -> dict[str, dict[str, Any]]:
    """The registry's current views (empty before the first apply), as `record` shapes them, plus when."""
    with postgres.connect(url) as connection:
        ensure_schema(connection)
        rows = connection.execute(f"SELECT view, version, entry, definition, normalized_sql, compiled_sql, "
                                  f"applied_at, commit FROM {SCHEMA}.views ORDER BY view").fetchall()
    return {row[0]: {"version": row[1], "entry": row[2], "definition": row[3], "normalized_sql": row[4],
                     "compiled_sql": row[5], "applied_at": row[6].isoformat(), "commit": row[7]} for row in rows}


def apply(project: Project, url: str, commit: str | None, now: datetime) -> dict[str, Any]:
    """Make the registry hold the project's views, in one transaction; returns what changed.

    {"added": [view], "removed": [view], "changed": [view], "unchanged": [view], "commit": ...}
    where "changed" means a new version (logic); a view whose version is the same but whose text
    or annotations changed (form, owner, description…) is updated in place and listed as "updated".
    """
    records = project_records(project)
    with postgres.connect(url) as connection:
        ensure_schema(connection)
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", [postgres.lock_key(f"{SCHEMA}.apply")])
            before = {row[0]: (row[1], row[2], row[3]) for row in connection.execute(
                f"SELECT view, version, entry, definition FROM {SCHEMA}.views").fetchall()}
            summary: dict[str, Any] = {"added": sorted(set(records) - set(before)),
                                       "removed": sorted(set(before) - set(records)), "changed": [], "updated": [],
                                       "unchanged": [], "commit": commit}
            for name in sorted(set(records) & set(before)):
                version, entry, definition = before[name]
                current = records[name]
                if version != current["version"]:
                    summary["changed"].append(name)
                elif entry != json.loads(json.dumps(current["entry"])) or definition != current["definition"]:
                    summary["updated"].append(name)
                else:
                    summary["unchanged"].append(name)
            cursor = connection.cursor()
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.versions AS v (view, version, entry, definition, normalized_sql, compiled_sql, "
                "first_applied_at, last_applied_at, commit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (view, version) DO UPDATE SET entry = EXCLUDED.entry, definition = EXCLUDED.definition, "
                "last_applied_at = EXCLUDED.last_applied_at, commit = EXCLUDED.commit",
                [(name, r["version"], json.dumps(r["entry"]), r["definition"], r["normalized_sql"], r["compiled_sql"],
                  now, now, commit) for name, r in records.items()])
            cursor.execute(f"DELETE FROM {SCHEMA}.views")
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.views (view, version, entry, definition, normalized_sql, compiled_sql, "
                "applied_at, commit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(name, r["version"], json.dumps(r["entry"]), r["definition"], r["normalized_sql"], r["compiled_sql"],
                  now, commit) for name, r in records.items()])
            cursor.execute(f"INSERT INTO {SCHEMA}.applies (applied_at, commit, summary) VALUES (%s, %s, %s)",
                           [now, commit, json.dumps(summary)])
    return summary


def git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`git -C root ARGS…` with its output as bytes; FeatureStoreError when git cannot run at all."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FeatureStoreError(f"cannot run git in {root}: {exc}") from None


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root` (with `-dirty` when tracked files changed), or None outside git."""
    try:
        head = git(root, "rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git(root, "status", "--porcelain", "--untracked-files=no")
    except FeatureStoreError:
        return None
    return head.stdout.decode().strip() + ("-dirty" if status.stdout.strip() else "")


def require_git_ref(root: Path, ref: str) -> str:
    """The commit `ref` names in the repository at `root`; a clear error when it names none."""
    found = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise FeatureStoreError(f"'{ref}' names no commit in the git repository at {root}; fetch it first "
                                "(in CI: `git fetch origin main` and use --against origin/main)")
    return found.stdout.decode().strip()


def records_at_ref(project: Project, ref: str) -> tuple[dict[str, dict[str, Any]], str, list[Problem]]:
    """The registry records of the definitions at git `ref`, resolved against the working tree's sources.

    Returns (records, the commit, problems of definitions at `ref` that no longer resolve).
    """
    settings = project.settings
    commit = require_git_ref(settings.root, ref)
    shown = git(settings.root, "rev-parse", "--show-prefix")
    if shown.returncode != 0:
        raise FeatureStoreError(f"{settings.root} is not in a git repository: {shown.stderr.decode().strip()}")
    prefix = shown.stdout.decode().strip()
    relative = settings.definitions.relative_to(settings.root).as_posix()
    with tempfile.TemporaryDirectory(prefix="featurestore-plan-") as folder:
        base = Path(folder)
        archive = git(settings.root, "archive", "--format=tar", commit, "--", f"{prefix}{relative}")
        if archive.returncode == 0:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                _extract(tar, base)
        definitions = base / prefix / relative
        definitions.mkdir(parents=True, exist_ok=True)  # no definitions at `ref`: every view is new
        at_ref = validate(settings.model_copy(update={"definitions": definitions}))
        records = project_records(at_ref)
        for entry in records.values():
            entry["entry"]["path"] = Path(entry["entry"]["path"]).relative_to(base / prefix).as_posix()
        problems = [p for p in at_ref.problems if p.severity == "error"]
    return records, commit, problems


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Extract plain files and folders into `folder`, nothing outside it (Python 3.11.0–3.11.3 lack
    extraction filters, so the members are checked here)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    members = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
               and not Path(m.name).is_absolute() and ".." not in Path(m.name).parts]
    tar.extractall(folder, members=members)
