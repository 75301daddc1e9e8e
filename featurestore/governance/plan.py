"""What a change of definitions does: the pull-request plan.

    records_at_ref(project, "origin/main")     → the definitions at a git ref, as registry records
    plan(base_records, head_records, readers)   → {"added": [...], "removed": [...], "changed": [...], ...}
    render_plan_markdown(result, against)       → a pull-request comment

A side of a plan is a mapping of view name to the registry's record of it (featurestore.governance.registry):
the applied registry, the working tree, or the definitions at a git ref (`records_at_ref`).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureStoreError, Problem
from featurestore.governance.registry import git, project_records, require_git_ref
from featurestore.governance.usage import Readers
from featurestore.online.materialize import SCHEMA as ONLINE_SCHEMA
from featurestore.project import Project, validate

__all__ = ["plan", "records_at_ref", "render_plan_markdown"]


# Annotations that change values: a difference here (or in the SQL) is a logic change.
_VALUE_ANNOTATIONS = ("entity", "timestamp", "available_after", "available_since", "ttl", "invalid", "created",
                      "windows")


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
    today = today or datetime.now(UTC)
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
        return "\n".join([*lines, "No changes."]) + "\n"
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
        notes = ((["declared"] if c["declared"] else [])
                 + ([f"last read {c['last_read'][:10]}"] if c["last_read"] else []))
        parts.append(f"{c['consumer']} ({', '.join(notes)})")
    return ", ".join(parts)


def _backfill_text(backfill: dict[str, Any]) -> str:
    sources = ", ".join(backfill["sources"]) or "its sources"
    if backfill["online_table"]:
        return f"online: new table from all rows of {sources} (`featurestore materialize`)"
    return f"offline only: recomputed from {sources}"


def _extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Extract plain files and folders into `folder`, nothing outside it (Python 3.11.0–3.11.3 lack
    extraction filters, so the members are checked here)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    members = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
               and not Path(m.name).is_absolute() and ".." not in Path(m.name).parts]
    tar.extractall(folder, members=members)
