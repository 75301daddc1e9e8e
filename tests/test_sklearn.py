"""FeatureStoreTransformer: one scikit-learn Pipeline, features offline (point in time) and online."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from featurestore import FeatureStore, FeatureStoreError
from featurestore.sklearn import FeatureStoreTransformer

from support import T0, ProjectDir, reset

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"


@pytest.fixture
def store(project: ProjectDir, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FeatureStore]:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    # user_id = i % 4, amount = i, ts = T0 + i hours, for i in 0..11
    project.parquet("events", pa.table({"user_id": pa.array([i % 4 for i in range(12)], pa.int64()),
                                        "amount": pa.array([float(i) for i in range(12)]),
                                        "ts": pa.array([T0 + timedelta(hours=i) for i in range(12)],
                                                       pa.timestamp("us", tz="UTC"))}))
    project.view("spend", HEADER + "SELECT user_id, ts, amount FROM events\n")
    project.view("activity", HEADER + "-- windows: 6h\nSELECT user_id, count(*) AS n FROM events GROUP BY user_id\n")
    with FeatureStore(project.root, consumer="test") as opened:
        yield opened


def rows() -> pd.DataFrame:
    return pd.DataFrame({"user_id": [1, 2, 3, 0, 1, 9], "label": [0, 1, 0, 1, 1, 0],
                         "ts": [T0 + timedelta(hours=h) for h in (0, 3, 4, 5, 9, 9)]})


def test_transform_gives_the_training_frame_features_in_row_order(store: FeatureStore) -> None:
    transformer = FeatureStoreTransformer(store, ["spend.amount", "activity.*"])
    features = transformer.fit_transform(rows())
    frame = store.training_frame(rows(), ["spend.amount", "activity.*"]).to_pandas()
    assert list(features.columns) == ["amount", "n_6h"] == list(transformer.get_feature_names_out())
    assert features.equals(frame[["amount", "n_6h"]].astype({"n_6h": "int64"}))
    # user 1 has no row by 0h, user 9 none at all
    amounts = features["amount"].tolist()
    assert amounts[1:5] == [2.0, 3.0, 4.0, 9.0] and np.isnan(amounts[0]) and np.isnan(amounts[5])


def test_one_pipeline_fits_offline_and_predicts_online(store: FeatureStore) -> None:
    model = Pipeline([("features", FeatureStoreTransformer(store, ["spend.amount", "activity.n_6h"])),
                      ("impute", SimpleImputer()), ("classifier", LogisticRegression())])
    training = rows().iloc[:5]
    model.fit(training, training["label"])
    store.materialize(until=T0 + timedelta(hours=12))
    now = pd.DataFrame({"user_id": [0, 1, 2, 3]})
    online = model.set_params(features__online=True, features__at=T0 + timedelta(hours=12))
    offline_rows = now.assign(ts=T0 + timedelta(hours=12))
    online_features = online.named_steps["features"].transform(now)
    offline_features = FeatureStoreTransformer(store, ["spend.amount", "activity.n_6h"]).fit(now) \
        .transform(offline_rows)
    assert online_features.to_dict("list") == offline_features.to_dict("list")  # no skew between the two paths
    assert online_features["amount"].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert np.array_equal(online.predict_proba(now), model.set_params(features__online=False)
                          .predict_proba(offline_rows))


def test_clone_shares_the_store_and_polars_rows_work(store: FeatureStore) -> None:
    transformer = FeatureStoreTransformer(store, "spend.*")
    copy = clone(transformer)
    assert copy.store is store and copy.features == "spend.*"
    features = copy.fit_transform(pl.from_pandas(rows()))
    assert list(features.columns) == ["amount"]


def test_clear_errors(store: FeatureStore) -> None:
    with pytest.raises(FeatureStoreError, match="is not fitted yet"):
        FeatureStoreTransformer(store, "spend.*").transform(rows())
    with pytest.raises(FeatureStoreError, match="the rows lack the column\\(s\\) ts"):
        FeatureStoreTransformer(store, "spend.*").fit(rows()).transform(rows().drop(columns="ts"))
    with pytest.raises(FeatureStoreError, match="needs store=FeatureStore"):
        FeatureStoreTransformer(None, "spend.*").fit(rows())
    with pytest.raises(FeatureStoreError, match="unknown view 'spnd'"):
        FeatureStoreTransformer(store, "spnd.*").fit(rows())
