"""The FeatureStore façade: one object per project. It delegates; it holds no SQL."""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.compiler.lineage import Lineage, feature_lineage, reverse_lineage
from featurestore.compiler.render import DIALECTS, render_view
from featurestore.config import Settings, load_settings
from featurestore.definitions.selection import (
    Selected,
    deprecation_warnings,
    select_features,
    view_named,
    warn_deprecated,
)
from featurestore.definitions.spec import FeatureView, catalog_entry
from featurestore.engines import duckdb as duck
from featurestore.engines.postgres import release_embedded, resolve_url, running_url
from featurestore.errors import FeatureStoreError, Problem
from featurestore.governance import registry
from featurestore.governance.describe import ViewDescription, describe_view
from featurestore.governance.plan import Plan, plan
from featurestore.governance.unused import UnusedFeature, UnusedSource, unused_features
from featurestore.governance.usage import CONSUMER_DAYS, UsageRecorder, readers
from featurestore.offline import cache
from featurestore.offline.frames import data_problems, frame_sql, training_frame
from featurestore.offline.snapshots import TrainingFrame, load_snapshot
from featurestore.online.lookup import OnlineStore
from featurestore.online.materialize import Run, materialize, unmaterialized
from featurestore.project import Project, load_project, validate

if TYPE_CHECKING:
    from featurestore.online.compact import Compaction
    from featurestore.online.push import PushResult

__all__ = ["FeatureStore"]

_unknown_consumer_warned = False


def _warn_unknown_consumer() -> None:
    global _unknown_consumer_warned
    if not _unknown_consumer_warned:
        _unknown_consumer_warned = True
        warnings.warn("this FeatureStore names no consumer, so its reads are recorded as 'unknown'; "
                      "pass FeatureStore(..., consumer='your_model') so owners know who reads their features",
                      UserWarning, stacklevel=4)


def _row_count(found: Any) -> int:
    if isinstance(found, dict):
        return len(next(iter(found.values()), []))
    return len(found)


class FeatureStore:
    """A project's feature store.

        store = FeatureStore(".", consumer="fraud_model_v3")
        store.views["cards_added"].features
        print(store.compile("cards_added", dialect="postgres"))
    """

    def __init__(self, path: str | Path = ".", *, consumer: str | None = None) -> None:
        """`consumer`: who reads (a model, a job; default $FEATURESTORE_CONSUMER), recorded with every read."""
        self.settings: Settings = load_settings(path)
        self.consumer = consumer or os.environ.get("FEATURESTORE_CONSUMER") or None
        self._reads: dict[Any, tuple[tuple[tuple[str, str, str], ...], tuple[FeatureView, ...], bool]] = {}
        # One DuckDB for this project while the store is open (created at first use): every frame
        # would otherwise start several (~20 ms each). Released by close(), or when the store is collected.
        self._release_duckdb = weakref.finalize(self, duck.hold(self.settings.temp_directory))

    @property
    def root(self) -> Path:
        return self.settings.root

    def validate(self, *, data: bool = False) -> list[Problem]:
        """Every problem of the project (errors and warnings), located; never raises for them.

        With `data`, the views are also run to find what only the data shows (duplicate rows).
        """
        project = validate(self.settings)
        if not project.errors:  # what `project` would load: keep it
            self.__dict__["project"] = project
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
                       full_names: bool = False, cache: bool = True, allow_deprecated: bool = False,
                       engine: str = "duckdb", spark: Any = None) -> TrainingFrame:
        """The spine's rows, in order, with each feature's value as of the row's `timestamp`.

        `spine`: a polars or pandas DataFrame, an Arrow table, a Parquet path, or SQL over the sources.
        `features`: `view.feature` or `view.*` references. Columns clash → error, unless `full_names`.
        `cache`: reuse each view's rows from the offline database while its version and sources are unchanged.
        `allow_deprecated`: read views past their sunset date (refused otherwise; before it they warn).
        `engine`: "duckdb", or "spark" to compute the join on Apache Spark (`pip install 'featurestore[spark]'`)
        in `spark`, a SparkSession, or a local one. Same values, same types.
        The read is recorded as this store's consumer's (featurestore.governance.usage).
        """
        keys = self._governed(features, full_names, allow_deprecated, None)
        frame = training_frame(self.project, spine, features, timestamp=timestamp, full_names=full_names, cache=cache,
                               engine=engine, spark=spark)
        self._usage.record(keys, self.consumer, "offline", len(frame))
        return frame

    def materialize(self, until: datetime | None = None, views: Iterable[str] | None = None, *,
                    lookback: timedelta | None = None, keep_old_versions: bool = False, full: bool = False,
                    on_view: Callable[[FeatureView], None] | None = None) -> list[Run]:
        """Write every view's latest values (a window view: its events within its longest window), as
        known by `until` (default now), to PostgreSQL.

        Incremental: each view reads only rows known after its watermark, and the whole of files its
        source gained, so late rows are written and counted (`lookback` before the watermark where a
        database table changed). A changed view is backfilled into a new table and switched to atomically;
        a view whose files were rewritten, or every view with `full`, is rebuilt from all its rows.
        """
        return materialize(self.project, until, views, lookback=lookback, keep_old_versions=keep_old_versions,
                           full=full, on_view=on_view)

    def push(self, source: str, rows: Any, *, idempotency_key: str | None = None) -> PushResult:
        """Add rows to a source that names its arrival column; all or nothing, exactly once per
        `idempotency_key`. When it returns, the rows are durable, the online values of the views in
        `views_updated` include them, and frames built afterwards read them; `views_pending` take them
        at the next `materialize`. `rows`: a list of dicts, a pandas or polars DataFrame, or an Arrow
        table, with the source's columns (the arrival column may be left out: the store stamps it).
        """
        from featurestore.online.push import push

        return push(self.project, source, rows, idempotency_key=idempotency_key, connection=self._online.connection)

    def compact(self, sources: Iterable[str] | None = None) -> list[Compaction]:
        """Move the rows pushed to `sources` (default: every source that takes pushes) from the landing
        table into time-partitioned Parquet files in the store's space; crash-safe, and frames and
        materialize give the same answers before and after."""
        from featurestore.online.compact import compact

        return compact(self.project, list(sources) if sources is not None else None)

    def online(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
               full_names: bool = False, columns: bool = False, consumer: str | None = None,
               allow_deprecated: bool = False) -> Any:
        """A polars DataFrame: per requested entity, in order, its keys then the features as of `at` (now).

        `entities`: a mapping of key column to a list of values (one list per key column), or a DataFrame.
        `columns`: a dict of column name to list of values instead of a DataFrame.
        `consumer`: who reads, for this call (default: the store's consumer); the read is recorded.
        `allow_deprecated`: read views past their sunset date (refused otherwise; before it they warn).
        """
        keys = self._governed(features, full_names, allow_deprecated, consumer)
        found = self._online.lookup(entities, features, at=at, full_names=full_names, columns=columns)
        self._usage.record(keys, consumer or self.consumer, "online", _row_count(found))
        return found

    async def online_async(self, entities: Any, features: Iterable[str] | str, *, at: datetime | None = None,
                           full_names: bool = False, columns: bool = False, consumer: str | None = None,
                           allow_deprecated: bool = False) -> Any:
        """`online` for asyncio code: the same answer, on an asynchronous connection pool."""
        keys = self._governed(features, full_names, allow_deprecated, consumer)
        found = await self._online.lookup_async(entities, features, at=at, full_names=full_names, columns=columns)
        self._usage.record(keys, consumer or self.consumer, "online", _row_count(found))
        return found

    def deprecations(self, views: Iterable[str], *, allow_deprecated: bool = False) -> list[str]:
        """Warnings for the deprecated views among `views`; SunsetError for one past its sunset, unless allowed."""
        today = datetime.now(UTC).date()
        return [message for _, message in deprecation_warnings([self.view(v) for v in views], today,
                                                               allow_deprecated)]

    def _governed(self, features: Iterable[str] | str, full_names: bool, allow_deprecated: bool,
                  consumer: str | None) -> tuple[tuple[str, str, str], ...]:
        """Check deprecation of a read's views (warn, or refuse past the sunset); its features for usage."""
        slot = (features if isinstance(features, str) else tuple(features), full_names)
        known = self._reads.get(slot)
        if known is None:
            selected = select_features(self.views, slot[0], full_names=full_names)
            views = tuple(self.views[name] for name in dict.fromkeys(s.feature.view for s in selected))
            keys = tuple((s.feature.view, s.feature.name, self.views[s.feature.view].version) for s in selected)
            known = self._reads[slot] = (keys, views, any(v.deprecated is not None for v in views))
        keys, views, deprecated = known
        if deprecated:
            warn_deprecated(views, datetime.now(UTC).date(), allow_deprecated, stacklevel=4)
        if consumer is None and self.consumer is None:
            _warn_unknown_consumer()
        return keys

    async def ping_async(self) -> None:
        await self._online.ping_async()

    async def aclose(self) -> None:
        """Write the recorded usage; release the online store's connections, the asynchronous ones too."""
        self._release_duckdb()
        if "_usage" in self.__dict__:
            self._usage.close()
        if "_online" in self.__dict__:
            await self._online.aclose()

    @staticmethod
    def release_embedded_postgres() -> None:
        """Let go of the embedded PostgreSQL this process started (it stops when no process holds it)."""
        release_embedded()

    def catalog(self) -> list[dict[str, Any]]:
        """Every view as plain data: kind, entity, owner, version, tags, deprecation and features with types."""
        return [catalog_entry(v, self.root) for v in self.views.values()]

    def select(self, features: Iterable[str] | str, *, full_names: bool = False) -> list[Selected]:
        """Resolve `view.feature` / `view.*` references to features and their output names.

        Raises UnknownNameError (naming the closest match) or BadRequestError.
        """
        return select_features(self.views, features, full_names=full_names)

    def ping(self) -> None:
        """Check that the online store answers; raises UnavailableError if it does not."""
        self._online.ping()

    def warm_up(self) -> None:
        """Load what a first online lookup would (libraries, the result types of every column), so
        that it answers as fast as later ones: ~0.5 s otherwise. Servers call it before serving.

        It also lets go of the project's DuckDB: serving reads PostgreSQL only, and an idle DuckDB's
        worker threads cost a lookup service ~20% of its requests/s (benchmarks/serve.py). A frame
        built later on this store still works, opening DuckDB for the call."""
        _ = self.project
        self._release_duckdb()
        self._online.warm_up()

    def close(self) -> None:
        """Write this project's recorded usage now (the last store closed stops the usage thread) and
        release the online store's connections, and the project's DuckDB if no other store holds it."""
        self._release_duckdb()
        if "_usage" in self.__dict__:
            self._usage.close()
        if "_online" in self.__dict__:
            self._online.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @cached_property
    def _online(self) -> OnlineStore:
        return OnlineStore(self.project)

    @cached_property
    def _usage(self) -> UsageRecorder:
        return UsageRecorder(self.settings)

    # --------------------------------------------------------------- governance

    def _registry_url(self) -> str:
        return resolve_url(self.settings.postgres_url, self.settings.state_dir)

    def apply(self, *, commit: str | None = None) -> dict[str, Any]:
        """Record the working tree's definitions in the registry; returns what changed and what to materialize.

        `commit` defaults to the git commit checked out at the project root (`-dirty` with local edits).
        """
        url = self._registry_url()
        summary = registry.apply(self.project, url, commit if commit is not None else registry.git_commit(self.root),
                                 datetime.now(UTC))
        summary["to_materialize"] = unmaterialized(self.project, url)
        return summary

    def applied(self) -> list[dict[str, Any]]:
        """The registry's catalog: each view as last applied, with `applied_at` and `commit`."""
        return [{**record["entry"], "applied_at": record["applied_at"], "commit": record["commit"]}
                for record in registry.applied_records(self._registry_url()).values()]

    def plan(self, *, against: str | None = None) -> Plan:
        """What the working tree changes against the registry, or against git ref `against` (no database needed).

        Consumers are declared ones and readers of the last CONSUMER_DAYS (30) days, where usage records are at hand.
        A frozen model (`featurestore.governance.plan.Plan`): `added`, `removed`, `changed`, ...,
        `breaking`, `summary`; `model_dump(mode="json")` is what `featurestore plan --format json` prints.
        """
        head = registry.project_records(self.project)
        if against is None:
            url = self._registry_url()
            base, label, problems = registry.applied_records(url), "the registry", []
        else:
            base, commit, problems = registry.records_at_ref(self.project, against)
            label = f"git {against} ({commit[:12]})"
            url = running_url(self.settings.postgres_url, self.settings.state_dir)
        recorded = None
        if url is not None:
            try:
                recorded = readers(self.settings, url, datetime.now(UTC) - timedelta(days=CONSUMER_DAYS))
            except FeatureStoreError:
                recorded = None
        return plan(base, head, recorded, against=label, problems_at_base=[p.render(self.root) for p in problems])

    def unused(self, *, days: int = CONSUMER_DAYS) -> list[UnusedFeature | UnusedSource]:
        """Features no consumer read in the last `days` days (never-read ones too), then sources no view reads.

        Frozen models (`featurestore.governance.unused`): an `UnusedFeature` per feature (owner, version,
        last read, online bytes), then an `UnusedSource` per source.
        """
        self._usage.flush()
        return unused_features(self.project, self._registry_url(), days)

    def readers(self) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Per (view, feature): each consumer that ever read it, with reads, rows and last read."""
        self._usage.flush()
        return readers(self.settings, self._registry_url())

    def lineage(self, feature: str) -> Lineage:
        """The source columns (and views in between) that feature `view.feature` is computed from."""
        return feature_lineage(self.views, self.project.sources, feature)

    def dependents(self, column: str) -> list[str]:
        """The features computed from `source.column` (or `view.column`), directly or through other views."""
        return reverse_lineage(self.views, self.project.sources, column)

    def describe(self, name: str) -> ViewDescription:
        """A view's annotations, the span of its data, its online freshness and its recorded consumers.

        A frozen model (`featurestore.governance.describe.ViewDescription`): the view's catalog entry,
        `data`, `online` (None if not materialized) and `recorded_consumers`.
        """
        self._usage.flush()
        return describe_view(self.project, name, self._registry_url())

    def cache_status(self) -> list[dict[str, Any]]:
        """The cached views: version, rows, whether current (the view's version) and fresh (its sources)."""
        return cache.status(self.project)

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

    def stats(self, view: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
        """Per feature of `view` over the offline data: rows, NULLs, distinct values, range, quantiles,
        histogram (top values for text) (featurestore.governance.stats)."""
        from featurestore.governance.stats import feature_stats

        return feature_stats(self.project, view, since=since)

    def drift(self, view: str, snapshot: str | Path | TrainingFrame) -> list[dict[str, Any]]:
        """Per feature of `view` in the training snapshot: PSI of the online store's values against it."""
        from featurestore.governance.stats import drift

        return drift(self.project, view, snapshot)

    def compile_frame(self, features: Iterable[str] | str, *, dialect: str = "duckdb", spine: str = "spine",
                      timestamp: str = "ts", full_names: bool = False) -> str:
        """The SQL of a training frame of `features` in `dialect`, over the spine table `spine` (its
        entity keys and UTC time `timestamp`): the keys, the time, then the features (frames.frame_sql)."""
        if dialect not in DIALECTS:
            raise FeatureStoreError(f"unknown dialect '{dialect}'; choose one of {', '.join(DIALECTS)}")
        return frame_sql(self.project, features, dialect=dialect, spine=spine, timestamp=timestamp,
                         full_names=full_names)
