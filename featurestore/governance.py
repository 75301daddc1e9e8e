"""What a change of definitions does, which features nobody reads, and a view's availability.

    plan(base_records, head_records, readers)   → {"added": [...], "removed": [...], "changed": [...], ...}
    render_plan_markdown(result)                → a pull-request comment
    unused_features(project, url, days=30)      → [{"feature": "view.f", "owner": ..., "last_read": ...}, ...]
    describe_view(project, name)                → annotations, data span, freshness, consumers

A side of a plan is a mapping of view name to the registry's record of it (featurestore.registry):
the applied registry, the working tree, or the definitions at a git ref (`records_at_ref`).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlglot import exp

from featurestore.compiler.lineage import column_sources
from featurestore.compiler.render import render_query
from featurestore.compiler.windows import aggregates
from featurestore.config import DuckDBSource
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError, Problem
from featurestore.online import SCHEMA as ONLINE_SCHEMA
from featurestore.online import last_run
from featurestore.project import Project, validate
from featurestore.registry import git, project_records, require_git_ref
from featurestore.selection import view_named
from featurestore.sources import register_sources
from featurestore.spec import catalog_entry
from featurestore.usage import readers

__all__ = ["CONSUMER_DAYS", "describe_view", "plan", "records_at_ref", "render_plan_markdown", "unread_features",
           "unused_features"]

CONSUMER_DAYS = 30  # a recorded reader counts as a consumer for this long after its last read
# Annotations that change values: a difference here (or in the SQL) is a logic change.
_VALUE_ANNOTATIONS = ("entity", "timestamp", "available_after", "available_since", "ttl", "invalid", "created",
                      "windows")

Readers = dict[tuple[str, str], dict[str, dict[str, Any]]]


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


def plan(base: dict[str, dict[str, Any]], head: dict[str, dict[str, Any]], recorded: Readers | None,
         today: datetime | None = None) -> dict[str, Any]:
    """What going from `base` to `head` changes, and whom it affects.

    `recorded`: readers in the last CONSUMER_DAYS days per (view, feature), or None when usage is
    not available (then only declared consumers count).
    """
    today = today or datetime.now(timezone.utc)
    result: dict[str, Any] = {"added": [], "removed": [], "changed": [], "reformatted": [], "deprecations": [],
                              "owner_changes": [], "annotation_changes": [], "deprecated_in_use": [],
                              "usage": "recorded" if recorded is not None else "declared only"}
    recorded = recorded or {}
    for name in sorted(set(head) - set(base)):
        entry = head[name]["entry"]
        result["added"].append({"view": name, "owner": entry["owner"], "kind": entry["kind"],
                                "version": head[name]["version"], "features": _feature_names(entry),
                                "backfill": _backfill(name, head)})
    for name in sorted(set(base) - set(head)):
        entry = base[name]["entry"]
        features = _feature_names(entry)
        result["removed"].append({"view": name, "owner": entry["owner"], "version": base[name]["version"],
                                  "features": features, "consumers": _consumers(name, features, entry, recorded),
                                  "breaking": False})
    for name in sorted(set(base) & set(head)):
        old, new = base[name], head[name]
        before, after = old["entry"], new["entry"]
        if old["version"] != new["version"]:
            old_types = {f["name"]: f["type"] for f in before["features"]}
            new_types = {f["name"]: f["type"] for f in after["features"]}
            own = old["normalized_sql"] != new["normalized_sql"] or any(
                before.get(k) != after.get(k) for k in _VALUE_ANNOTATIONS)
            upstream = sorted(r for r in after["reads"] if r in head and r in base
                              and head[r]["version"] != base[r]["version"])
            features = _feature_names(after)
            result["changed"].append({
                "view": name, "owner": after["owner"], "from_version": old["version"], "to_version": new["version"],
                "because": "logic" if own or not upstream else f"upstream: {', '.join(upstream)}",
                "features_added": [f for f in new_types if f not in old_types],
                "features_removed": [f for f in old_types if f not in new_types],
                "features_retyped": [{"feature": f, "from": old_types[f], "to": new_types[f]}
                                     for f in new_types if f in old_types and old_types[f] != new_types[f]],
                "consumers": _consumers(name, list(old_types), after, recorded, before),
                "removed_feature_consumers": _consumers(name, [f for f in old_types if f not in new_types], after,
                                                        recorded, before, declared=False),
                "backfill": _backfill(name, head), "breaking": False})
        elif old["definition"] != new["definition"]:
            result["reformatted"].append({"view": name, "version": new["version"]})
        if before["owner"] != after["owner"]:
            result["owner_changes"].append({"view": name, "from": before["owner"], "to": after["owner"]})
        for key in ("description", "tags", "consumers"):
            if before.get(key) != after.get(key):
                result["annotation_changes"].append({"view": name, "annotation": key, "from": before.get(key),
                                                     "to": after.get(key)})
    for name in sorted(head):
        entry = head[name]["entry"]
        deprecated = entry.get("deprecated")
        if deprecated is None:
            continue
        readers_now = _consumers(name, _feature_names(entry), entry, recorded, declared=False)
        item = {"view": name, "sunset": deprecated["sunset"], "hint": deprecated["hint"], "consumers": readers_now}
        was = base[name]["entry"].get("deprecated") if name in base else None
        if was != deprecated:
            result["deprecations"].append(item)
        if readers_now:
            result["deprecated_in_use"].append(item)
    for item in result["removed"] + result["changed"]:
        item["breaking"] = bool(item["consumers"])
    result["breaking"] = any(item["breaking"] for item in result["removed"] + result["changed"])
    result["summary"] = {key: len(result[key]) for key in ("added", "removed", "changed", "reformatted",
                                                           "deprecations", "owner_changes")}
    return result


def _feature_names(entry: dict[str, Any]) -> list[str]:
    return [f["name"] for f in entry["features"]]


def _consumers(view: str, features: list[str], entry: dict[str, Any], recorded: Readers,
               before: dict[str, Any] | None = None, declared: bool = True) -> list[dict[str, Any]]:
    """Who reads any of `features` of `view`: recorded readers, then declared consumers."""
    found: dict[str, dict[str, Any]] = {}
    for feature in features:
        for consumer, info in recorded.get((view, feature), {}).items():
            if consumer not in found or info["last_read"] > found[consumer]["last_read"]:
                found[consumer] = {"consumer": consumer, "declared": False, "last_read": info["last_read"]}
    if declared:
        for consumer in [*entry.get("consumers", []), *((before or {}).get("consumers", []))]:
            found.setdefault(consumer, {"consumer": consumer, "declared": False, "last_read": None})["declared"] = True
    return [{**item, "last_read": item["last_read"].isoformat() if item["last_read"] else None}
            for _, item in sorted(found.items())]


def _backfill(name: str, head: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a new version costs: a new online table filled from every row of the sources it reads."""
    entry = head[name]["entry"]
    sources: set[str] = set()
    pending, seen = list(entry["reads"]), set()
    while pending:
        read = pending.pop()
        if read in seen:
            continue
        seen.add(read)
        if read in head:
            pending += head[read]["entry"]["reads"]
        else:
            sources.add(read)
    online = None
    if entry["kind"] == "snapshot":
        online = f'{ONLINE_SCHEMA}."{name}__{head[name]["version"]}"'
    return {"online_table": online, "sources": sorted(sources), "offline_cache": True}


def render_plan_markdown(result: dict[str, Any], against: str) -> str:
    """The plan as a pull-request comment."""
    counts = result["summary"]
    lines = [f"## Feature store plan: {counts['added']} added, {counts['removed']} removed, "
             f"{counts['changed']} changed, {counts['reformatted']} reformatted", "",
             f"Compared with {against}. Consumers: "
             + ("declared and recorded readers of the last 30 days." if result["usage"] == "recorded"
                else "declared only (no usage records at hand)."), ""]
    if result["breaking"]:
        affected = [i["view"] for i in result["removed"] + result["changed"] if i["breaking"]]
        lines += [f"**Breaking:** {', '.join(f'`{v}`' for v in affected)} "
                  f"{'has' if len(affected) == 1 else 'have'} consumers.", ""]
    if not any(result[k] for k in ("added", "removed", "changed", "reformatted", "deprecations", "owner_changes",
                                   "annotation_changes", "deprecated_in_use")):
        return "\n".join(lines + ["No changes."]) + "\n"
    if result["added"]:
        lines += ["### Added", "", "| view | owner | features | backfill |", "|---|---|---|---|"]
        lines += [f"| `{i['view']}` | {i['owner']} | {_codes(i['features'])} | {_backfill_text(i['backfill'])} |"
                  for i in result["added"]] + [""]
    if result["removed"]:
        lines += ["### Removed", "", "| view | owner | features | consumers |", "|---|---|---|---|"]
        lines += [f"| `{i['view']}` | {i['owner']} | {_codes(i['features'])} | {_consumer_text(i['consumers'])} |"
                  for i in result["removed"]] + [""]
    if result["changed"]:
        lines += ["### Changed in logic (new version)", "",
                  "| view | version | because | features added | features removed | consumers | backfill |",
                  "|---|---|---|---|---|---|---|"]
        for i in result["changed"]:
            removed = _codes(i["features_removed"])
            if i["removed_feature_consumers"]:
                removed += f" (read by {_consumer_text(i['removed_feature_consumers'])})"
            retyped = "".join(f"<br>`{r['feature']}`: {r['from']} → {r['to']}" for r in i["features_retyped"])
            lines.append(f"| `{i['view']}` | `{i['from_version']}` → `{i['to_version']}` | {i['because']} | "
                         f"{_codes(i['features_added'])}{retyped} | {removed} | {_consumer_text(i['consumers'])} | "
                         f"{_backfill_text(i['backfill'])} |")
        lines.append("")
    if result["reformatted"]:
        lines += ["### Changed in form only (same version, no backfill)", ""]
        lines += [f"- `{i['view']}`" for i in result["reformatted"]] + [""]
    if result["deprecations"]:
        lines += ["### Deprecations introduced", "", "| view | sunset | hint | still read by |", "|---|---|---|---|"]
        lines += [f"| `{i['view']}` | {i['sunset']} | {i['hint'] or '-'} | {_consumer_text(i['consumers'])} |"
                  for i in result["deprecations"]] + [""]
    if result["owner_changes"]:
        lines += ["### Owner changes", ""]
        lines += [f"- `{i['view']}`: {i['from']} → {i['to']}" for i in result["owner_changes"]] + [""]
    if result["annotation_changes"]:
        lines += ["### Other annotation changes", ""]
        lines += [f"- `{i['view']}` {i['annotation']}: {_value(i['from'])} → {_value(i['to'])}"
                  for i in result["annotation_changes"]] + [""]
    if result["deprecated_in_use"]:
        lines += ["### Deprecated views still read", ""]
        lines += [f"- `{i['view']}` (sunset {i['sunset']}): {_consumer_text(i['consumers'])}"
                  for i in result["deprecated_in_use"]] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _codes(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "-"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return f"'{value}'" if value else "(none)"


def _consumer_text(consumers: list[dict[str, Any]]) -> str:
    if not consumers:
        return "none"
    parts = []
    for c in consumers:
        notes = (["declared"] if c["declared"] else []) + ([f"last read {c['last_read'][:10]}"] if c["last_read"] else [])
        parts.append(f"{c['consumer']} ({', '.join(notes)})")
    return ", ".join(parts)


def _backfill_text(backfill: dict[str, Any]) -> str:
    sources = ", ".join(backfill["sources"]) or "its sources"
    if backfill["online_table"]:
        return f"online: new table from all rows of {sources} (`featurestore materialize`)"
    return f"offline only: recomputed from {sources}"


def unused_features(project: Project, url: str, days: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """Features no consumer read in the last `days` days (never-read ones included), then unread sources.

    Each feature: feature, view, owner, version, last_read (ever; None if never), reads in the
    window (0), and online_bytes: about what its column costs in the online table.
    """
    now = now or datetime.now(timezone.utc)
    ever = readers(project.settings, url)
    sizes = _online_bytes(url, project)
    found: list[dict[str, Any]] = []
    for view, feature, last, reads in unread_features(project, ever, now - timedelta(days=days)):
        found.append({"kind": "feature", "feature": feature.qualified, "view": view.name, "owner": view.owner,
                      "version": view.version, "last_read": last.isoformat() if last else None,
                      "last_consumers": sorted(reads), "online_bytes": sizes.get((view.name, feature.column))})
    read = {r for v in project.views.values() for r in v.reads}
    for source in sorted(set(project.settings.sources) - read):
        found.append({"kind": "source", "feature": None, "source": source, "owner": None, "last_read": None})
    return found


def unread_features(project: Project, ever: dict[tuple[str, str], dict[str, dict[str, Any]]],
                    since: datetime) -> Iterator[tuple[Any, Any, datetime | None, dict[str, dict[str, Any]]]]:
    """(view, feature, last read or None, its readers) for each feature nobody read since `since`,
    given every read ever recorded (`usage.readers`)."""
    for view in project.views.values():
        for feature in view.features:
            reads = ever.get((view.name, feature.name), {})
            last = max((info["last_read"] for info in reads.values()), default=None)
            if last is None or last < since:
                yield view, feature, last, reads


def _online_bytes(url: str, project: Project) -> dict[tuple[str, str], int]:
    """Per (view, column) of each current online table: its share of the table's bytes, by average width
    (a window view's aggregate: that of its inputs, which all its windows share)."""
    tables = {f"{v.name}__{v.version}": v.name for v in project.views.values()}
    with postgres.connect(url) as connection:
        found = connection.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), c.reltuples FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
            [ONLINE_SCHEMA, list(tables)]).fetchall()
        sizes: dict[tuple[str, str], int] = {}
        for table, total, tuples in found:
            widths = dict(connection.execute("SELECT attname, avg_width FROM pg_stats WHERE schemaname = %s AND "
                                             "tablename = %s", [ONLINE_SCHEMA, table]).fetchall())
            if not widths and tuples != 0:
                connection.execute(f'ANALYZE {ONLINE_SCHEMA}."{table}"')  # name checked against the registry above
                widths = dict(connection.execute("SELECT attname, avg_width FROM pg_stats WHERE schemaname = %s AND "
                                                 "tablename = %s", [ONLINE_SCHEMA, table]).fetchall())
            whole = sum(widths.values()) or 1
            view = project.views[tables[table]]
            for column, width in widths.items():
                sizes[(view.name, column)] = int(total * width / whole)
            for aggregate in aggregates(view) if view.windows else []:  # a window view stores each one's inputs
                sizes[(view.name, aggregate.column)] = sum(sizes.get((view.name, c), 0) for c in (
                    aggregate.value, aggregate.order) if c and c != "__fs_ts")
    return sizes


def describe_view(project: Project, name: str, url: str | None, now: datetime | None = None) -> dict[str, Any]:
    """A view's annotations, the span of its data, its online freshness and its consumers."""
    now = now or datetime.now(timezone.utc)
    view = view_named(project.views, name)
    result: dict[str, Any] = {**catalog_entry(view, project.settings.root), "data": _data_span(project, view)}
    result["online"] = None
    result["recorded_consumers"] = None
    if url is not None:
        with postgres.connect(url) as connection:
            mark = last_run(connection, view)
        if mark is not None:
            result["online"] = {"watermark": mark[0].isoformat(), "materialized_at": mark[1].isoformat(),
                                "lag_seconds": round((now - mark[0]).total_seconds(), 3),
                                "rows_written_last_run": mark[2], "late_last_run": mark[3]}
        recent = readers(project.settings, url, now - timedelta(days=CONSUMER_DAYS))
        consumers: dict[str, dict[str, Any]] = {}
        for feature in view.features:
            for consumer, info in recent.get((view.name, feature.name), {}).items():
                slot = consumers.setdefault(consumer, {"consumer": consumer, "reads": 0, "last_read": info["last_read"]})
                slot["reads"] += info["reads"]
                slot["last_read"] = max(slot["last_read"], info["last_read"])
        result["recorded_consumers"] = [{**c, "last_read": c["last_read"].isoformat()}
                                        for _, c in sorted(consumers.items())]
    return result


def _data_span(project: Project, view: Any) -> dict[str, Any]:
    """The rows the view yields now and the span of their time column (read with DuckDB)."""
    settings = project.settings
    query = render_query(view, project.views, settings.sources, settings.root, "duckdb")
    ts = exp.column(view.timestamp, quoted=True)
    span = exp.select(exp.Count(this=exp.Star()), exp.cast(exp.Min(this=ts), "VARCHAR"),
                      exp.cast(exp.Max(this=ts.copy()), "VARCHAR")).from_(
        exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("v", quoted=True))))
    if view.windows:  # a window view's timestamp is the event time of the rows it aggregates
        inner = render_query(view, project.views, settings.sources, settings.root, "duckdb")
        for clause in ("group", "having", "qualify", "order", "limit"):
            inner.set(clause, None)
        inner.set("expressions", [exp.alias_(exp.column(view.timestamp, quoted=True), view.timestamp, quoted=True)])
        span = span.from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("v", quoted=True))))
    if view.windows:  # the event-time column of the sources it reads directly
        columns = [f"{name}.{view.timestamp}" for name in view.reads if name in project.sources
                   and view.timestamp in {c.name for c in project.sources[name]}]
    else:
        columns = column_sources(project.views, project.sources, view.name, view.timestamp)
    per_source = []
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection:
        with duck.errors_as_feature_store_errors():
            register_sources(connection, project, [view], every_source=True, loaded=set())
            rows, first, last = duck.first_row(connection, span.sql(dialect="duckdb"))
            for reference in columns:
                name, _, column = reference.partition(".")
                source = settings.sources[name]
                table = exp.to_table(source.table, quoted=True) if isinstance(source, DuckDBSource) else \
                    exp.to_table(name, quoted=True)
                found = exp.column(column, quoted=True)
                count, low, high = duck.first_row(connection, exp.select(
                    exp.Count(this=exp.Star()), exp.cast(exp.Min(this=found), "VARCHAR"),
                    exp.cast(exp.Max(this=found.copy()), "VARCHAR")).from_(table).sql(dialect="duckdb"))
                per_source.append({"column": reference, "rows": count, "first": low, "last": high})
    return {"rows" if not view.windows else "events": rows, "first": first, "last": last, "sources": per_source,
            "invalid": [[i.start.isoformat(), i.end.isoformat()] for i in view.invalid],
            "available_since": view.available_since.isoformat() if view.available_since else None}


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Extract plain files and folders into `folder`, nothing outside it (Python 3.11.0–3.11.3 lack
    extraction filters, so the members are checked here)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    members = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
               and not Path(m.name).is_absolute() and ".." not in Path(m.name).parts]
    tar.extractall(folder, members=members)  # noqa: S202 (members checked above)
