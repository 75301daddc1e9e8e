"""Feature statistics over the offline data, and drift between a training snapshot and the online store.

    feature_stats(project, "user_daily_stats", since=…)   → [{"feature": "txn_count", "rows": …, "nulls": …,
                                                             "distinct": …, "quantiles": {…}, "histogram": […]}, …]
    drift(project, "user_daily_stats", "snapshots/fraud_v3")  → [{"feature": …, "psi": 0.02, "verdict": "stable"}, …]

A snapshot view's statistics are over its rows (from `since`, by the view's time); a window view's
over its features as of the end of its data for every entity with events (since `since`). Drift
compares the values a model was trained on (a snapshot's column) with the values the online store
serves now for every entity it holds (as of the view's last materialization): the population
stability index, PSI = sum over bins of (actual - expected) * ln(actual / expected), with
deciles of the snapshot's values as bins (categories for text and booleans) and NULL as a bin.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlglot import exp

from featurestore.compiler import statistics
from featurestore.compiler.times import instant
from featurestore.definitions.selection import view_named
from featurestore.definitions.spec import INTEGER_TYPES, FeatureView
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError
from featurestore.offline.frames import training_frame
from featurestore.offline.rows import prepared_rows, window_events
from featurestore.offline.snapshots import TrainingFrame, load_snapshot
from featurestore.offline.sources import register_sources
from featurestore.online.lookup import OnlineStore
from featurestore.online.materialize import SCHEMA as ONLINE_SCHEMA
from featurestore.online.materialize import last_run
from featurestore.project import Project

__all__ = ["PSI_MODERATE", "PSI_SIGNIFICANT", "drift", "feature_stats", "psi"]

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
BINS = 10
TOP = 10  # most frequent values shown for text and booleans
PSI_MODERATE = 0.1     # below: stable
PSI_SIGNIFICANT = 0.25  # from here: the population has shifted
_FLOOR = 1e-4  # a bin's share is at least this, so an empty bin does not make the index infinite


def feature_stats(project: Project, name: str, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Per feature of view `name`: rows, NULLs, distinct values, and for numbers the range, mean,
    quantiles and a histogram of `BINS` equal-width bins; for text and booleans the top values."""

    view = view_named(project.views, name)
    values = _offline_values(project, view, since)
    with duck.scratch(project.settings.temp_directory) as connection:
        connection.register("v", values)
        return [_column_stats(connection, feature.name if view.windows else feature.column, feature.name, feature.type)
                for feature in view.features]


def _offline_values(project: Project, view: FeatureView, since: datetime | None) -> Any:
    """An Arrow table with a column per feature of the view (window features named as the frame names them)."""
    settings = project.settings
    with duck.offline(settings.offline_database, settings.temp_directory, read_only=True) as connection, \
            duck.errors_as_feature_store_errors():
        register_sources(connection, project, [view], every_source=False, loaded=set())
        if not view.windows:
            columns = list(dict.fromkeys(f.column for f in view.features))
            rows = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(
                exp.Subquery(this=prepared_rows(project, view, columns), alias=exp.TableAlias(
                    this=exp.to_identifier("p", quoted=True))))
            if since is not None:
                rows = rows.where(exp.GTE(this=exp.column("__fs_ts", quoted=True), expression=instant(since)))
            return duck.arrow(connection, rows.sql(dialect="duckdb"))
        # A window view's features for every entity with events, as of just after its last event is known.
        events = window_events(project, view)
        spine_table = duck.arrow(connection, statistics.keys_at_end(view, events, since).sql(dialect="duckdb"))
    frame = training_frame(project, spine_table, [f"{view.name}.*"], timestamp=statistics.AT_END, cache=False)
    return frame.to_arrow()


def _column_stats(connection: Any, source: str, name: str, kind: str) -> dict[str, Any]:
    """The statistics of column `source` of the table `v` registered in `connection`."""
    result: dict[str, Any] = {"feature": name, "type": kind}
    rows, nulls, distinct = _first(connection, statistics.counts("v", source))
    result.update(rows=rows, nulls=nulls, null_fraction=round(nulls / rows, 6) if rows else None,
                  distinct=distinct)
    if _numeric(kind):
        # NaN and ±infinity are counted apart: the range, moments and bins are over finite values.
        low, high, mean, stddev, *quantiles, not_finite = _first(connection, statistics.moments("v", source, QUANTILES))
        result.update(min=low, max=high, mean=mean, stddev=stddev, not_finite=not_finite,
                      quantiles={str(q): value for q, value in zip(QUANTILES, quantiles)},
                      histogram=_histogram(connection, source, low, high, rows - nulls - not_finite))
    elif _orderable_time(kind):
        low, high = _first(connection, statistics.time_range("v", source))
        result.update(min=low, max=high)
    else:
        top = connection.execute(statistics.top_values("v", source, TOP).sql(dialect="duckdb")).fetchall()
        result["top"] = [{"value": value, "count": count} for value, count in top]
    return result


def _histogram(connection: Any, source: str, low: float | None, high: float | None,
               finite: int) -> list[dict[str, Any]]:
    """`BINS` equal-width bins over [low, high], the last one closed; counts of the `finite` values."""
    if low is None or high is None:
        return []
    if low == high:
        return [{"low": low, "high": high, "count": finite}]
    width = (high - low) / BINS
    counts = dict(connection.execute(statistics.bins("v", source, BINS).sql(dialect="duckdb"), [low, width]).fetchall())
    return [{"low": low + i * width, "high": high if i == BINS - 1 else low + (i + 1) * width,
             "count": counts.get(i, 0)} for i in range(BINS)]


def _first(connection: Any, query: exp.Select) -> tuple:
    return connection.execute(query.sql(dialect="duckdb")).fetchone()


def _numeric(kind: str) -> bool:
    upper = kind.upper()
    return upper in INTEGER_TYPES or upper in ("FLOAT", "DOUBLE", "REAL") or upper.startswith("DECIMAL")


def _orderable_time(kind: str) -> bool:
    return duck.is_time_type(kind) or kind.upper() in ("TIME", "INTERVAL")


# --------------------------------------------------------------------------- drift


def psi(expected: list[Any], actual: list[Any], *, numeric: bool) -> float:
    """The population stability index of `actual` against `expected` (plain Python lists; None is NULL).

    Numbers fall into bins cut at the deciles of `expected` (fewer where values repeat); other values
    are their own categories. NULL (and NaN) is a bin of its own. Each share is floored at 1e-4.
    """
    import numpy as np

    if not expected or not actual:
        raise FeatureStoreError("drift needs values on both sides: the snapshot or the online store has none")
    if numeric:
        known = np.array([v for v in expected if v is not None and not math.isnan(v)], dtype=float)
        edges = np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1)[1:-1])) if known.size else np.array([])

        def binned(values: list[Any]) -> list[Any]:
            return [None if v is None or math.isnan(v) else int(np.searchsorted(edges, float(v), side="right"))
                    for v in values]  # NaN shares NULL's bin

        expected, actual = binned(expected), binned(actual)
    counted, seen = Counter(expected), Counter(actual)
    total = 0.0
    for category in counted.keys() | seen.keys():
        e = max(counted[category] / len(expected), _FLOOR)
        a = max(seen[category] / len(actual), _FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def drift(project: Project, name: str, snapshot: str | Path | TrainingFrame) -> list[dict[str, Any]]:
    """Per feature of view `name` found in the snapshot (a path, or a loaded one): PSI of the online
    store's values (every entity it holds, as of the view's last materialization) against the
    snapshot's, and a verdict. Features are matched by name (view.feature), not by column name."""
    view = view_named(project.views, name)
    frame = snapshot if isinstance(snapshot, TrainingFrame) else load_snapshot(snapshot)
    table = frame.to_arrow()
    qualified = list(frame.info.get("features", []))
    # The frame's last columns are its features, in the order of `features`.
    columns = dict(zip(qualified, table.column_names[len(table.column_names) - len(qualified):]))
    url = postgres.resolve_url(project.settings.postgres_url, project.settings.state_dir)
    with postgres.connect(url) as connection:
        mark = last_run(connection, view)
        if mark is None:
            raise FeatureStoreError(f"view '{view.name}' (version {view.version}) is not in the online store; "
                                    f"run `featurestore materialize --view {view.name}` first")
        keys = connection.execute(_entities_sql(view)).fetchall()
    online = OnlineStore(project)
    try:
        current = online.lookup({k: [row[i] for row in keys] for i, k in enumerate(view.entity)}, [f"{view.name}.*"],
                                at=mark[0]) if keys else None
    finally:
        online.close()
    results = []
    for feature in view.features:
        output = columns.get(feature.qualified)
        if output is None or current is None:
            continue
        expected = table.column(output).to_pylist()
        actual = current[feature.name].to_list()
        index = psi(expected, actual, numeric=_numeric(feature.type))
        verdict = "stable" if index < PSI_MODERATE else "moderate shift" if index < PSI_SIGNIFICANT else "shifted"
        results.append({"feature": feature.name, "psi": round(index, 4), "verdict": verdict,
                        "snapshot_rows": len(expected), "online_entities": len(actual)})
    if not results:
        raise FeatureStoreError(f"the snapshot holds none of view '{view.name}''s features "
                                f"({', '.join(f.name for f in view.features)})")
    return results


def _entities_sql(view: FeatureView) -> str:
    """Every entity the view's online table holds (a window view's: every entity with events kept)."""
    from psycopg import sql

    keys = sql.SQL(", ").join(sql.Identifier(k) for k in view.entity)
    table = sql.Identifier(ONLINE_SCHEMA, f"{view.name}__{view.version}")
    return sql.SQL("SELECT DISTINCT {} FROM {} ORDER BY {}").format(keys, table, keys).as_string(None)
