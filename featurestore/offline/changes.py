"""Whether a view's sources changed: the state of every source it reads, directly or through other views.

    state = source_state(connection, project, view)   # {"events": [[path, size, mtime_ns], ...],
                                                      #  "accounts": [rows, checksum]}
    state_digest(state)                               # "3f1c…": equal digests, equal sources
    added_files(project, view, before, state)         # {"events": [new files]} when a row-wise view's files only grew

Files are compared by size and modification time; DuckDB and PostgreSQL tables by a row-hash
checksum. The cache (`offline.cache`) and materialization (`online.materialize`) both use it
to decide what to read again.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlglot import exp

from featurestore.config import DuckDBSource, FileSource, PostgresSource
from featurestore.definitions.graph import table_references
from featurestore.definitions.spec import FeatureView
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.project import Project

__all__ = ["added_files", "files_rewritten", "fingerprint", "row_wise", "source_state", "sources_of",
           "state_digest"]


def added_files(project: Project, view: FeatureView, before: dict[str, Any] | None,
                 now: dict[str, Any]) -> dict[str, list[str]] | None:
    """The files a row-wise view's one file source gained since `before`, if it changed only so."""
    settings = project.settings
    if before is None or set(before) != set(now) or len(now) != 1 or tuple(view.reads) != tuple(now):
        return None
    (name,) = now
    if not isinstance(settings.sources[name], FileSource) or not row_wise(view):
        return None
    old = {tuple(entry) for entry in before[name]}
    new = {tuple(entry) for entry in now[name]}
    if not old <= new or old == new:
        return None  # a file changed or went away: rebuild
    return {name: sorted(entry[0] for entry in new - old)}


def row_wise(view: FeatureView) -> bool:
    """Whether each output row (a window view: each event) comes from one source row alone, so new
    rows never change old ones."""
    query = view.qualified
    if not isinstance(query, exp.Select) or len(table_references(query)) != 1:
        return False
    if view.windows:  # its events are the rows of FROM and WHERE; the aggregates run at lookup
        query = query.copy()
        query.set("group", None)
        query.set("expressions", [exp.Star()])
    combining = (exp.Join, exp.Group, exp.Having, exp.Window, exp.AggFunc, exp.Distinct, exp.Limit, exp.Offset,
                 exp.Qualify, exp.With, exp.SetOperation)
    return not any(query.find(kind) for kind in combining) and \
        not any(node is not query for node in query.find_all(exp.Select))


def fingerprint(connection: Any, project: Project, view: FeatureView) -> str:
    """A digest of the state of every source the view reads, directly or through other views."""
    return state_digest(source_state(connection, project, view))


def source_state(connection: Any, project: Project, view: FeatureView) -> dict[str, Any]:
    """Per source the view reads: its files with size and modification time, or a table checksum."""
    settings = project.settings
    state: dict[str, Any] = {}
    for name in sorted(sources_of(project, view)):
        source = settings.sources[name]
        if isinstance(source, FileSource):
            files = sorted(glob.glob(str(settings.root / source.path), recursive=True))
            state[name] = [[f, *_stat(f)] for f in files]
            if source.arrival is not None:  # what was pushed to it (not a file: never "rewritten")
                from featurestore.offline.pushed import pushed_state

                state[f"{name}#pushed"] = pushed_state(project, name)
        elif isinstance(source, DuckDBSource):
            state[name] = duck.table_checksum(connection, source.table)
        elif isinstance(source, PostgresSource):
            url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
            state[name] = postgres.table_checksum(url, source.schema_name, source.table)
    return json.loads(json.dumps(state, default=str))  # as it reads back from the catalog


def files_rewritten(project: Project, before: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a file source lost or changed a file between two `source_state`s (gaining files is fine)."""
    for name, entries in before.items():
        source = project.settings.sources.get(name)
        if isinstance(source, FileSource) and not {tuple(e) for e in entries} <= {tuple(e) for e in now.get(name, [])}:
            return True
    return False


def state_digest(state: dict[str, Any]) -> str:
    """A short digest of a `source_state`: equal digests, equal sources."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sources_of(project: Project, view: FeatureView) -> set[str]:
    """Every source the view reads, directly or through other views."""
    found: set[str] = set()
    for read in view.reads:
        if read in project.views:
            found |= sources_of(project, project.views[read])
        else:
            found.add(read)
    return found


def _stat(path: str) -> tuple[int, int]:
    info = Path(path).stat()
    return info.st_size, info.st_mtime_ns
