"""A scikit-learn transformer that turns a spine of (keys, time) into features: one Pipeline, two paths.

    model = Pipeline([("features", FeatureStoreTransformer(store, ["user_daily_stats.*"])),
                      ("classifier", HistGradientBoostingClassifier())])
    model.fit(train_spine, train_spine["is_fraud"])           # a point-in-time training frame
    model.predict_proba(new_rows)                             # the same, offline
    model.set_params(features__online=True).predict_proba(new_rows)   # online: latest values

Offline (`fit`, and `transform` by default) the features are a training frame's: each row's values
as of its own time. With `online=True`, `transform` looks the rows' keys up in the online store
(the values as of now, or as of `at`), as a serving path does. Either way the output is a pandas
DataFrame of the features, in the rows' order, named as the frame names them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin

from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureStore

__all__ = ["FeatureStoreTransformer"]


class FeatureStoreTransformer(TransformerMixin, BaseEstimator):
    """Features for each row of a spine (a pandas or polars DataFrame with the entity keys and a time).

    `store`: a FeatureStore (shared, not copied, when scikit-learn clones the transformer).
    `features`: `view.feature` or `view.*` references. `timestamp`: the rows' time column.
    `online`: look the keys up in the online store instead (values as of `at`, default now).
    `full_names`: name features `view__feature`.
    """

    def __init__(self, store: FeatureStore | None = None, features: Any = (), *, timestamp: str = "ts",
                 online: bool = False, at: datetime | None = None, full_names: bool = False) -> None:
        self.store = store
        self.features = features
        self.timestamp = timestamp
        self.online = online
        self.at = at
        self.full_names = full_names

    def __sklearn_clone__(self) -> FeatureStoreTransformer:
        return type(self)(**self.get_params(deep=False))  # the store is a handle: clones share it

    def fit(self, X: Any, y: Any = None) -> FeatureStoreTransformer:
        """Check the features and learn their output names (the rows themselves teach nothing)."""
        store = self._store()
        selected = store.select(self._references(), full_names=self.full_names)
        if not selected:
            raise FeatureStoreError("FeatureStoreTransformer: `features` selects no feature; pass view.feature "
                                    "or view.* references")
        self.feature_names_out_ = [s.output for s in selected]
        self.entity_ = list(dict.fromkeys(k for s in selected for k in store.view(s.feature.view).entity))
        self.n_features_in_ = len(self._columns(X))
        return self

    def transform(self, X: Any) -> Any:
        """The features of each row of `X`, in its order: a pandas DataFrame named `get_feature_names_out()`."""
        if not hasattr(self, "feature_names_out_"):
            raise FeatureStoreError("FeatureStoreTransformer is not fitted yet; call fit (or fit a Pipeline) first")
        store = self._store()
        spine = _polars(X)
        missing = [k for k in (*self.entity_, *([] if self.online else [self.timestamp])) if k not in spine.columns]
        if missing:
            raise FeatureStoreError(f"FeatureStoreTransformer: the rows lack the column(s) {', '.join(missing)} "
                                    f"(they have {', '.join(spine.columns)})")
        if self.online:
            found = store.online(spine.select(self.entity_), self._references(), at=self.at,
                                 full_names=self.full_names)
        else:
            found = store.training_frame(spine.select([*self.entity_, self.timestamp]), self._references(),
                                         timestamp=self.timestamp, full_names=self.full_names).to_polars()
        return found.select(self.feature_names_out_).to_pandas(use_pyarrow_extension_array=False)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        import numpy as np

        return np.asarray(self.feature_names_out_, dtype=object)

    def _store(self) -> FeatureStore:
        if not isinstance(self.store, FeatureStore):
            raise FeatureStoreError("FeatureStoreTransformer needs store=FeatureStore(...)")
        return self.store

    def _references(self) -> list[str]:
        return [self.features] if isinstance(self.features, str) else list(self.features)

    @staticmethod
    def _columns(X: Any) -> list[str]:
        return list(_polars(X).columns)


def _polars(X: Any) -> Any:
    import polars as pl

    if isinstance(X, pl.DataFrame):
        return X
    module = type(X).__module__.split(".")[0]
    if module == "pandas":
        return pl.from_pandas(X)
    if module == "pyarrow":
        return pl.from_arrow(X)
    raise FeatureStoreError(f"FeatureStoreTransformer takes a pandas or polars DataFrame (or an Arrow table) of "
                            f"keys and times; got {type(X).__name__}")
