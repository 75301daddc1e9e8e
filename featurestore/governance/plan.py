"""What a change of definitions does: the pull-request plan.

    plan(base_records, head_records, readers, against="the registry")
        → Plan(added=(AddedView(...), ...), removed=(...), changed=(ChangedView(...), ...), ...)
    render_plan_markdown(result, against)       → a pull-request comment

The result is frozen pydantic models whose field names are the keys of its JSON
(`result.model_dump(mode="json")`, which `featurestore plan --format json` prints).

A side of a plan is a mapping of view name to the registry's record of it (featurestore.governance.registry):
the applied registry, the working tree, or the definitions at a git ref (`registry.records_at_ref`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from featurestore.governance import CONSUMER_DAYS
from featurestore.governance.usage import Readers
from featurestore.online.materialize import SCHEMA as ONLINE_SCHEMA

__all__ = [
    "AddedView",
    "AnnotationChange",
    "Backfill",
    "ChangedView",
    "Consumer",
    "DeprecatedView",
    "OwnerChange",
    "Plan",
    "PlanSummary",
    "ReformattedView",
    "RemovedView",
    "RetypedFeature",
    "plan",
    "render_plan_markdown",
]


# Annotations that change values: a difference here (or in the SQL) is a logic change.
_VALUE_ANNOTATIONS = ("entity", "timestamp", "available_after", "available_since", "ttl", "invalid", "created",
                      "windows")


class _Frozen(BaseModel):
    # "from" is a keyword: such fields are `from_` in Python and "from" in data, both ways.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)


class Consumer(_Frozen):
    """A consumer affected by a change: declared (`-- consumers:`) and/or recorded reading it
    (`last_read`, ISO 8601; None if only declared)."""

    consumer: str
    declared: bool
    last_read: str | None


class Backfill(_Frozen):
    """What a new version costs: the online table to fill (None for a window view: offline only),
    the sources whose every row it is filled from, and a recomputed offline cache."""

    online_table: str | None
    sources: tuple[str, ...]
    offline_cache: bool


class AddedView(_Frozen):
    """A view the change adds, with its features and what filling it costs."""

    view: str
    owner: str
    kind: Literal["snapshot", "window"]
    version: str
    features: tuple[str, ...]
    backfill: Backfill


class RemovedView(_Frozen):
    """A view the change removes; breaking when it has consumers."""

    view: str
    owner: str
    version: str
    features: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    breaking: bool


class RetypedFeature(_Frozen):
    """A feature whose type changes (`from_` is "from" in JSON)."""

    feature: str
    from_: str = Field(alias="from")
    to: str


class ChangedView(_Frozen):
    """A view changed in logic (a new version): `because` is "logic" or "upstream: a, b"; breaking
    when it has consumers. `removed_feature_consumers`: recorded readers of the features it removes."""

    view: str
    owner: str
    from_version: str
    to_version: str
    because: str
    features_added: tuple[str, ...]
    features_removed: tuple[str, ...]
    features_retyped: tuple[RetypedFeature, ...]
    consumers: tuple[Consumer, ...]
    removed_feature_consumers: tuple[Consumer, ...]
    backfill: Backfill
    breaking: bool


class ReformattedView(_Frozen):
    """A view changed in form only (same version, nothing to recompute)."""

    view: str
    version: str


class DeprecatedView(_Frozen):
    """A deprecated view (sunset date, ISO 8601) and the recorded readers still reading it."""

    view: str
    sunset: str
    hint: str
    consumers: tuple[Consumer, ...]


class OwnerChange(_Frozen):
    """A view's owner, before (`from_`, "from" in JSON) and after."""

    view: str
    from_: str = Field(alias="from")
    to: str


class AnnotationChange(_Frozen):
    """A change of the description, tags or declared consumers of a view (None: not set)."""

    view: str
    annotation: Literal["description", "tags", "consumers"]
    from_: str | tuple[str, ...] | None = Field(alias="from")
    to: str | tuple[str, ...] | None


class PlanSummary(_Frozen):
    """How many views each part of the plan holds."""

    added: int
    removed: int
    changed: int
    reformatted: int
    deprecations: int
    owner_changes: int


class Plan(_Frozen):
    """What going from one side to the other changes, and whom it affects.

    `usage`: "recorded" when recorded readers count as consumers, else "declared only". `breaking`:
    some removed or changed view has consumers. `against`: what the change is compared with;
    `problems_at_base`: definitions there that no longer resolve (left out of the comparison).
    """

    added: tuple[AddedView, ...]
    removed: tuple[RemovedView, ...]
    changed: tuple[ChangedView, ...]
    reformatted: tuple[ReformattedView, ...]
    deprecations: tuple[DeprecatedView, ...]
    owner_changes: tuple[OwnerChange, ...]
    annotation_changes: tuple[AnnotationChange, ...]
    deprecated_in_use: tuple[DeprecatedView, ...]
    usage: Literal["recorded", "declared only"]
    breaking: bool
    summary: PlanSummary
    against: str
    problems_at_base: tuple[str, ...] = ()


def plan(base: dict[str, dict[str, Any]], head: dict[str, dict[str, Any]], recorded: Readers | None,
         today: datetime | None = None, *, against: str, problems_at_base: Sequence[str] = ()) -> Plan:
    """What going from `base` to `head` changes, and whom it affects.

    `recorded`: readers in the last CONSUMER_DAYS days per (view, feature), or None when usage is
    not available (then only declared consumers count). `against` names `base` (e.g. "the registry");
    `problems_at_base`: its definitions that no longer resolve, as rendered problems.
    """
    today = today or datetime.now(UTC)
    usage: Literal["recorded", "declared only"] = "recorded" if recorded is not None else "declared only"
    recorded = recorded or {}
    added, removed, changed, reformatted = [], [], [], []
    deprecations, owner_changes, annotation_changes, deprecated_in_use = [], [], [], []
    for name in sorted(set(head) - set(base)):
        entry = head[name]["entry"]
        added.append(AddedView(view=name, owner=entry["owner"], kind=entry["kind"], version=head[name]["version"],
                               features=_feature_names(entry), backfill=_backfill(name, head)))
    for name in sorted(set(base) - set(head)):
        entry = base[name]["entry"]
        features = _feature_names(entry)
        consumers = _consumers(name, features, entry, recorded)
        removed.append(RemovedView(view=name, owner=entry["owner"], version=base[name]["version"], features=features,
                                   consumers=consumers, breaking=bool(consumers)))
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
            consumers = _consumers(name, list(old_types), after, recorded, before)
            changed.append(ChangedView(
                view=name, owner=after["owner"], from_version=old["version"], to_version=new["version"],
                because="logic" if own or not upstream else f"upstream: {', '.join(upstream)}",
                features_added=[f for f in new_types if f not in old_types],
                features_removed=[f for f in old_types if f not in new_types],
                features_retyped=[RetypedFeature(feature=f, from_=old_types[f], to=new_types[f])
                                  for f in new_types if f in old_types and old_types[f] != new_types[f]],
                consumers=consumers,
                removed_feature_consumers=_consumers(name, [f for f in old_types if f not in new_types], after,
                                                     recorded, before, declared=False),
                backfill=_backfill(name, head), breaking=bool(consumers)))
        elif old["definition"] != new["definition"]:
            reformatted.append(ReformattedView(view=name, version=new["version"]))
        if before["owner"] != after["owner"]:
            owner_changes.append(OwnerChange(view=name, from_=before["owner"], to=after["owner"]))
        for key in ("description", "tags", "consumers"):
            if before.get(key) != after.get(key):
                annotation_changes.append(AnnotationChange(view=name, annotation=key, from_=before.get(key),
                                                           to=after.get(key)))
    for name in sorted(head):
        entry = head[name]["entry"]
        deprecated = entry.get("deprecated")
        if deprecated is None:
            continue
        readers_now = _consumers(name, _feature_names(entry), entry, recorded, declared=False)
        item = DeprecatedView(view=name, sunset=deprecated["sunset"], hint=deprecated["hint"], consumers=readers_now)
        was = base[name]["entry"].get("deprecated") if name in base else None
        if was != deprecated:
            deprecations.append(item)
        if readers_now:
            deprecated_in_use.append(item)
    return Plan(added=added, removed=removed, changed=changed, reformatted=reformatted, deprecations=deprecations,
                owner_changes=owner_changes, annotation_changes=annotation_changes,
                deprecated_in_use=deprecated_in_use, usage=usage,
                breaking=any(item.breaking for item in [*removed, *changed]),
                summary=PlanSummary(added=len(added), removed=len(removed), changed=len(changed),
                                    reformatted=len(reformatted), deprecations=len(deprecations),
                                    owner_changes=len(owner_changes)),
                against=against, problems_at_base=problems_at_base)


def _feature_names(entry: dict[str, Any]) -> list[str]:
    return [f["name"] for f in entry["features"]]


def _consumers(view: str, features: list[str], entry: dict[str, Any], recorded: Readers,
               before: dict[str, Any] | None = None, declared: bool = True) -> list[Consumer]:
    """Who reads any of `features` of `view`: recorded readers, then declared consumers."""
    found: dict[str, dict[str, Any]] = {}
    for feature in features:
        for consumer, info in recorded.get((view, feature), {}).items():
            if consumer not in found or info["last_read"] > found[consumer]["last_read"]:
                found[consumer] = {"consumer": consumer, "declared": False, "last_read": info["last_read"]}
    if declared:
        for consumer in [*entry.get("consumers", []), *((before or {}).get("consumers", []))]:
            found.setdefault(consumer, {"consumer": consumer, "declared": False, "last_read": None})["declared"] = True
    return [Consumer(consumer=consumer, declared=item["declared"],
                     last_read=item["last_read"].isoformat() if item["last_read"] else None)
            for consumer, item in sorted(found.items())]


def _backfill(name: str, head: dict[str, dict[str, Any]]) -> Backfill:
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
    return Backfill(online_table=online, sources=sorted(sources), offline_cache=True)


def render_plan_markdown(result: Plan, against: str) -> str:
    """The plan as a pull-request comment."""
    counts = result.summary
    lines = [f"## Feature store plan: {counts.added} added, {counts.removed} removed, "
             f"{counts.changed} changed, {counts.reformatted} reformatted", "",
             f"Compared with {against}. Consumers: "
             + (f"declared and recorded readers of the last {CONSUMER_DAYS} days." if result.usage == "recorded"
                else "declared only (no usage records at hand)."), ""]
    if result.breaking:
        affected = [i.view for i in [*result.removed, *result.changed] if i.breaking]
        lines += [f"**Breaking:** {', '.join(f'`{v}`' for v in affected)} "
                  f"{'has' if len(affected) == 1 else 'have'} consumers.", ""]
    if not any((result.added, result.removed, result.changed, result.reformatted, result.deprecations,
                result.owner_changes, result.annotation_changes, result.deprecated_in_use)):
        return "\n".join([*lines, "No changes."]) + "\n"
    if result.added:
        lines += ["### Added", "", "| view | owner | features | backfill |", "|---|---|---|---|"]
        lines += [f"| `{i.view}` | {i.owner} | {_codes(i.features)} | {_backfill_text(i.backfill)} |"
                  for i in result.added] + [""]
    if result.removed:
        lines += ["### Removed", "", "| view | owner | features | consumers |", "|---|---|---|---|"]
        lines += [f"| `{i.view}` | {i.owner} | {_codes(i.features)} | {_consumer_text(i.consumers)} |"
                  for i in result.removed] + [""]
    if result.changed:
        lines += ["### Changed in logic (new version)", "",
                  "| view | version | because | features added | features removed | consumers | backfill |",
                  "|---|---|---|---|---|---|---|"]
        for c in result.changed:
            removed = _codes(c.features_removed)
            if c.removed_feature_consumers:
                removed += f" (read by {_consumer_text(c.removed_feature_consumers)})"
            retyped = "".join(f"<br>`{r.feature}`: {r.from_} → {r.to}" for r in c.features_retyped)
            lines.append(f"| `{c.view}` | `{c.from_version}` → `{c.to_version}` | {c.because} | "
                         f"{_codes(c.features_added)}{retyped} | {removed} | {_consumer_text(c.consumers)} | "
                         f"{_backfill_text(c.backfill)} |")
        lines.append("")
    if result.reformatted:
        lines += ["### Changed in form only (same version, no backfill)", ""]
        lines += [f"- `{i.view}`" for i in result.reformatted] + [""]
    if result.deprecations:
        lines += ["### Deprecations introduced", "", "| view | sunset | hint | still read by |", "|---|---|---|---|"]
        lines += [f"| `{i.view}` | {i.sunset} | {i.hint or '-'} | {_consumer_text(i.consumers)} |"
                  for i in result.deprecations] + [""]
    if result.owner_changes:
        lines += ["### Owner changes", ""]
        lines += [f"- `{i.view}`: {i.from_} → {i.to}" for i in result.owner_changes] + [""]
    if result.annotation_changes:
        lines += ["### Other annotation changes", ""]
        lines += [f"- `{i.view}` {i.annotation}: {_value(i.from_)} → {_value(i.to)}"
                  for i in result.annotation_changes] + [""]
    if result.deprecated_in_use:
        lines += ["### Deprecated views still read", ""]
        lines += [f"- `{i.view}` (sunset {i.sunset}): {_consumer_text(i.consumers)}"
                  for i in result.deprecated_in_use] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _codes(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "-"


def _value(value: str | tuple[str, ...] | None) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) or "(none)"
    return f"'{value}'" if value else "(none)"


def _consumer_text(consumers: Sequence[Consumer]) -> str:
    if not consumers:
        return "none"
    parts = []
    for c in consumers:
        notes = ((["declared"] if c.declared else [])
                 + ([f"last read {c.last_read[:10]}"] if c.last_read else []))
        parts.append(f"{c.consumer} ({', '.join(notes)})")
    return ", ".join(parts)


def _backfill_text(backfill: Backfill) -> str:
    sources = ", ".join(backfill.sources) or "its sources"
    if backfill.online_table:
        return f"online: new table from all rows of {sources} (`featurestore materialize`)"
    return f"offline only: recomputed from {sources}"


