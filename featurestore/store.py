"""The FeatureStore façade: one object per project. It delegates; it holds no SQL."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from featurestore.compiler.render import DIALECTS, render_view
from featurestore.config import Settings, load_settings
from featurestore.errors import FeatureStoreError, Problem, did_you_mean
from featurestore.project import Project, load_project, validate
from featurestore.spec import FeatureView

__all__ = ["FeatureStore"]


class FeatureStore:
    """A project's feature store.

        store = FeatureStore(".", consumer="fraud_model_v3")
        store.views["cards_added"].features
        print(store.compile("cards_added", dialect="postgres"))
    """

    def __init__(self, path: str | Path = ".", *, consumer: str | None = None) -> None:
        self.settings: Settings = load_settings(path)
        self.consumer = consumer

    @property
    def root(self) -> Path:
        return self.settings.root

    def validate(self) -> list[Problem]:
        """Every problem of the project (errors and warnings), located; never raises for them."""
        return list(validate(self.settings).problems)

    @cached_property
    def project(self) -> Project:
        """The resolved project; raises InvalidProjectError when validation finds errors."""
        return load_project(self.settings)

    @property
    def views(self) -> dict[str, FeatureView]:
        return self.project.views

    def view(self, name: str) -> FeatureView:
        """One view by name, with a suggestion when the name is unknown."""
        if name not in self.views:
            hint = did_you_mean(name, self.views) or f"known views: {', '.join(sorted(self.views)) or 'none'}"
            raise FeatureStoreError(f"unknown view '{name}'; {hint}")
        return self.views[name]

    def compile(self, name: str, *, dialect: str = "duckdb") -> str:
        """The runnable SQL of view `name` in `dialect` (one of DIALECTS)."""
        if dialect not in DIALECTS:
            raise FeatureStoreError(f"unknown dialect '{dialect}'; choose one of {', '.join(DIALECTS)}")
        return render_view(self.view(name), self.views, self.settings.sources, self.root, dialect)
