"""Feature references (`view.feature`, `view.*`) → the features to compute, named.

    select_features(views, ["user_daily_stats.*", "user_profile.country"])
    → [Selected(feature=user_daily_stats.txn_count, output="txn_count"), …]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from featurestore.errors import BadRequestError, UnknownNameError, did_you_mean
from featurestore.spec import Feature, FeatureView

__all__ = ["Selected", "select_features", "view_named"]


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
