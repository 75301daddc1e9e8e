"""Feature references (`view.feature`, `view.*`) → the features to compute, named.

    select_features(views, ["user_daily_stats.*", "user_profile.country"])
    → [Selected(feature=user_daily_stats.txn_count, output="txn_count"), …]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from featurestore.definitions.spec import Feature, FeatureView
from featurestore.errors import BadRequestError, FeatureDeprecationWarning, SunsetError, UnknownNameError, did_you_mean

__all__ = ["FeatureDeprecationWarning", "Selected", "by_view", "deprecation_warnings", "select_features", "view_named",
           "warn_deprecated"]


@dataclass(frozen=True)
class Selected:
    feature: Feature
    output: str


def select_features(views: dict[str, FeatureView], references: Iterable[str] | str, *,
                    full_names: bool = False, taken: Iterable[str] = ()) -> list[Selected]:
    """Resolve references in order, each feature once; clashing output names are an error naming both."""
    if isinstance(references, str):
        references = [references]
    chosen: dict[str, Feature] = {}
    for reference in references:
        for feature in _expand(views, reference.strip()):
            chosen.setdefault(feature.qualified, feature)
    if not chosen:
        raise BadRequestError("no features selected; name them as 'view.feature' or 'view.*'")
    selected = [Selected(f, f"{f.view}__{f.name}" if full_names else f.name) for f in chosen.values()]
    owners: dict[str, str] = {name: f"the spine's column '{name}'" for name in taken}
    for item in selected:
        if item.output in owners:
            raise BadRequestError(
                f"two columns would be named '{item.output}': {owners[item.output]} and feature "
                f"'{item.feature.qualified}'; pass full_names=True to name features view__feature"
                + ("" if item.output in taken else ", or select only one of them"))
        owners[item.output] = f"feature '{item.feature.qualified}'"
    return selected


def by_view(selected: list[Selected]) -> dict[str, list[Selected]]:
    """The selected features grouped by view, views in the order of their first feature."""
    grouped: dict[str, list[Selected]] = {}
    for item in selected:
        grouped.setdefault(item.feature.view, []).append(item)
    return grouped


def _expand(views: dict[str, FeatureView], reference: str) -> list[Feature]:
    view_name, dot, feature_name = reference.partition(".")
    if not dot or not view_name or not feature_name:
        raise BadRequestError(f"feature reference '{reference}' must be 'view.feature' or 'view.*'")
    features = view_named(views, view_name, f" in '{reference}'").features
    if feature_name == "*":
        return list(features)
    for feature in features:
        if feature.name == feature_name:
            return [feature]
    names = [f.name for f in features]
    hint = did_you_mean(feature_name, names) or f"its features: {', '.join(names)}"
    raise UnknownNameError(f"view '{view_name}' has no feature '{feature_name}'; {hint}")


def view_named(views: dict[str, FeatureView], name: str, where: str = "") -> FeatureView:
    """The view called `name`; UnknownNameError naming the closest (or every) view when there is none."""
    if name not in views:
        hint = did_you_mean(name, views) or f"known views: {', '.join(sorted(views)) or 'none'}"
        raise UnknownNameError(f"unknown view '{name}'{where}; {hint}")
    return views[name]


def deprecation_warnings(views: Iterable[FeatureView], today: date, allow: bool) -> list[tuple[FeatureView, str]]:
    """The deprecated views among `views`, each with its warning; SunsetError for one past its sunset.

    From its sunset date on, a deprecated view is refused unless the consumer opts in (`allow`).
    """
    found = []
    for view in {view.name: view for view in views}.values():
        deprecation = view.deprecated
        if deprecation is None:
            continue
        hint = f"; {deprecation.hint}" if deprecation.hint else ""
        if today >= deprecation.sunset and not allow:
            raise SunsetError(
                f"view '{view.name}' reached its sunset on {deprecation.sunset} and is no longer served{hint}. "
                "A consumer that must still read it can opt in: allow_deprecated=True in Python, the header "
                "X-Allow-Deprecated: true over HTTP")
        when = "was to be removed on" if today >= deprecation.sunset else "will be removed on"
        found.append((view, f"view '{view.name}' is deprecated and {when} {deprecation.sunset}{hint}"))
    return found


def warn_deprecated(views: Iterable[FeatureView], today: date, allow: bool, stacklevel: int = 3) -> None:
    """`deprecation_warnings` as Python warnings (FeatureDeprecationWarning), for SDK callers."""
    for _, message in deprecation_warnings(views, today, allow):
        warnings.warn(message, FeatureDeprecationWarning, stacklevel=stacklevel)
