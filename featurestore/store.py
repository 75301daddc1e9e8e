"""The FeatureStore façade: one object per project. It delegates; it holds no SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from featurestore import cache
from featurestore.compiler.render import DIALECTS, render_view
from featurestore.config import Settings, load_settings
from featurestore.engines.duckdb import wait_for_background
from featurestore.engines.postgres import release_embedded
from featurestore.errors import FeatureStoreError, Problem
from featurestore.frames import TrainingFrame, data_problems, load_snapshot, training_frame
from featurestore.online import OnlineStore, Run, materialize
from featurestore.project import Project, load_project, validate
from featurestore.selection import Selected, select_features, view_named
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

    def validate(self, *, data: bool = False) -> list[Problem]:
        """Every problem of the project (errors and warnings), located; never raises for them.

        With `data`, the views are also run to find what only the data shows (duplicate rows).
        """
        project = validate(self.settings)
        problems = list(project.problems)
        if data:
            problems += data_problems(project)
        return sorted(problems, key=lambda p: (str(p.path), p.line, p.column))

    @cached_property
    def project(self) -> Project:
        """The resolved project; raises InvalidProjectError when validation finds errors."""
        return load_project(self.settings)

    @property
    def views(self) -> dict[str, FeatureView]:
        return self.project.views

    def view(self, name: str) -> FeatureView:
        """One view by name; UnknownNameError with a suggestion when the name is unknown."""
        return view_named(self.views, name)

    def training_frame(self, spine: Any, features: Iterable[str] | str, *, timestamp: str = "ts",
                       full_names: bool = False, cache: bool = True) -> TrainingFrame:
        """The spine's rows, in order, with each feature's value as of the row's `timestamp`.

        `spine`: a polars or pandas DataFrame, an Arrow table, a Parquet path, or SQL over the sources.
        `features`: `view.feature` or `view.*` references. Columns clash → error, unless `full_names`.
        `cache`: reuse each view's rows from the offline database while its version and sources are unchanged.
        """
        return training_frame(self.project, spine, features, timestamp=timestamp, full_names=full_names, cache=cache)

    def materialize(self, until: datetime | None = None, views: Iterable[str] | None = None, *,
                    lookback: timedelta | None = None, keep_old_versions: bool = False, full: bool = False,
                    on_view: Callable[[FeatureView], None] | None = None) -> list[Run]:
        """Write every snapshot view's latest values, as known by `until` (default now), to PostgreSQL.

        Incremental: each view reads only rows known after its watermark, and the whole of files its
        source gained, so late rows are written and counted (`lookback` before the watermark where a
        database table changed). A changed view is backfilled into a new table and switched to atomically;
        a view whose files were rewritten, or every view with `full`, is rebuilt from all its rows.
        """
        return materialize(self.project, until, views, lookback=lookback, keep_old_versions=keep_old_versions,
                           full=full, on_view=on_view)

    def online(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
               full_names: bool = False, columns: bool = False) -> Any:
        """A polars DataFrame: per requested entity, in order, its keys then the features as of `at` (now).

        `entities`: a mapping of key column to a list of values (one list per key column), or a DataFrame.
        `columns`: a dict of column name to list of values instead of a DataFrame.
        """
        return self._online.lookup(entities, features, at=at, full_names=full_names, columns=columns)

    async def online_async(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
                           full_names: bool = False, columns: bool = False) -> Any:
        """`online` for asyncio code: the same answer, on an asynchronous connection pool."""
        return await self._online.lookup_async(entities, features, at=at, full_names=full_names, columns=columns)

    async def ping_async(self) -> None:
        await self._online.ping_async()

    async def aclose(self) -> None:
        """Release the online store's connections, the asynchronous ones too."""
        if "_online" in self.__dict__:
            await self._online.aclose()

    @staticmethod
    def release_embedded_postgres() -> None:
        """Let go of the embedded PostgreSQL this process started (it stops when no process holds it)."""
        release_embedded()

    def catalog(self) -> list[dict[str, Any]]:
        """Every view as plain data: kind, entity, owner, version, tags, deprecation and features with types."""
        return [{
            "view": v.name, "kind": v.kind, "entity": list(v.entity), "timestamp": v.timestamp, "owner": v.owner,
            "description": v.description, "version": v.version, "tags": list(v.tags),
            "path": str(v.path.relative_to(self.root)) if v.path.is_relative_to(self.root) else str(v.path),
            "deprecated": None if v.deprecated is None else {"sunset": v.deprecated.sunset.isoformat(),
                                                             "hint": v.deprecated.hint},
            "features": [{"name": f.name, "type": f.type} for f in v.features],
        } for v in self.views.values()]

    def select(self, features: Iterable[str] | str, *, full_names: bool = False) -> list[Selected]:
        """Resolve `view.feature` / `view.*` references to features and their output names.

        Raises UnknownNameError (naming the closest match) or BadRequestError.
        """
        return select_features(self.views, features, full_names=full_names)

    def ping(self) -> None:
        """Check that the online store answers; raises UnavailableError if it does not."""
        self._online.ping()

    def close(self) -> None:
        """Release the online store's connections."""
        if "_online" in self.__dict__:
            self._online.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @cached_property
    def _online(self) -> OnlineStore:
        return OnlineStore(self.project)

    def cache_status(self) -> list[dict[str, Any]]:
        """The cached views: version, rows, whether current (the view's version) and fresh (its sources)."""
        return cache.status(self.project)

    def wait_for_cache(self) -> None:
        """Wait until view rows that frames cache in the background are written."""
        wait_for_background(self.settings.offline_database)

    def clear_cache(self, views: list[str] | None = None) -> int:
        """Drop cached view rows (of `views`, or all); returns how many entries went."""
        return cache.clear(self.project, views)

    @staticmethod
    def load_snapshot(path: str | Path) -> TrainingFrame:
        """A saved training frame, verified against its manifest's content hash."""
        return load_snapshot(path)

    def compile(self, name: str, *, dialect: str = "duckdb") -> str:
        """The runnable SQL of view `name` in `dialect` (one of DIALECTS)."""
        if dialect not in DIALECTS:
            raise FeatureStoreError(f"unknown dialect '{dialect}'; choose one of {', '.join(DIALECTS)}")
        return render_view(self.view(name), self.views, self.settings.sources, self.root, dialect)
