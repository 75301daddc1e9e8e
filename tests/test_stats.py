"""Feature statistics over the offline data, and PSI drift of online values against a training snapshot."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from featurestore import FeatureStore, FeatureStoreError
from featurestore.governance.stats import psi

from support import T0, ProjectDir, reset

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"
AMOUNTS = [float(i % 37) if i % 10 else None for i in range(200)]  # every tenth NULL


@pytest.fixture
def store(project: ProjectDir, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FeatureStore]:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    # 200 rows: user_id = i % 20, ts = T0 + i hours, amount as AMOUNTS, kind 'a'/'b'/'c' by i % 3
    project.parquet("events", pa.table({
        "user_id": pa.array([i % 20 for i in range(200)], pa.int64()),
        "ts": pa.array([T0 + timedelta(hours=i) for i in range(200)], pa.timestamp("us", tz="UTC")),
        "amount": pa.array(AMOUNTS, pa.float64()), "kind": pa.array(["abc"[i % 3] for i in range(200)])}))
    project.view("spend", HEADER + "SELECT user_id, ts, amount, kind FROM events\n")
    project.view("activity", HEADER + "-- windows: 1d\nSELECT user_id, count(*) AS n FROM events GROUP BY user_id\n")
    with FeatureStore(project.root, consumer="test") as opened:
        yield opened


def reference_psi(expected: list, actual: list) -> float:
    """PSI over given bins (labels), shares floored at 1e-4: the textbook formula, written out again."""
    total = 0.0
    for label in set(expected) | set(actual):
        e = max(sum(1 for v in expected if v == label) / len(expected), 1e-4)
        a = max(sum(1 for v in actual if v == label) / len(actual), 1e-4)
        total += (a - e) * math.log(a / e)
    return total


def test_psi_of_categories_and_of_numbers_in_deciles() -> None:
    assert psi(["a", "b", None] * 10, ["b", None, "a"] * 10, numeric=False) == 0
    shifted = psi(["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20, numeric=False)
    assert shifted == pytest.approx(0.3 * math.log(0.8 / 0.5) + 0.3 * math.log(0.5 / 0.2))
    expected = list(range(1000))
    assert psi(expected, list(reversed(expected)), numeric=True) == pytest.approx(0, abs=1e-12)
    # Everything above the snapshot's range lands in its last decile: 10% expected there, 100% seen.
    decile = [min(v // 100, 9) for v in expected]
    assert psi(expected, [5000] * 100, numeric=True) == pytest.approx(reference_psi(decile, [9] * 100))
    assert psi(expected, [None] * 10 + list(range(90)), numeric=True) == pytest.approx(
        reference_psi(decile, [None] * 10 + [0] * 90))
    with pytest.raises(FeatureStoreError, match="drift needs values on both sides"):
        psi([], [1], numeric=True)


def test_statistics_equal_numpy_on_the_same_rows(store: FeatureStore) -> None:
    found = {item["feature"]: item for item in store.stats("spend")}
    amount = found["amount"]
    known = np.array([v for v in AMOUNTS if v is not None])
    assert (amount["rows"], amount["nulls"], amount["null_fraction"]) == (200, 20, 0.1)
    assert amount["distinct"] == pytest.approx(len(set(known)), abs=1)  # approximate (HyperLogLog)
    assert (amount["min"], amount["max"]) == (known.min(), known.max())
    assert amount["mean"] == pytest.approx(known.mean()) and amount["stddev"] == pytest.approx(known.std(ddof=1))
    assert amount["quantiles"] == pytest.approx({str(q): np.quantile(known, q) for q in (0.01, 0.25, 0.5, 0.75, 0.99)})
    counts, edges = np.histogram(known, bins=10, range=(known.min(), known.max()))
    assert [b["count"] for b in amount["histogram"]] == counts.tolist()
    assert [b["low"] for b in amount["histogram"]] == pytest.approx(edges[:-1].tolist())
    assert found["kind"]["top"] == [{"value": "a", "count": 67}, {"value": "b", "count": 67},
                                    {"value": "c", "count": 66}]
    later = {item["feature"]: item for item in store.stats("spend", since=T0 + timedelta(hours=150))}
    assert later["amount"]["rows"] == 50 and later["amount"]["nulls"] == 5


def test_nan_and_infinity_are_counted_apart(project: ProjectDir, store: FeatureStore) -> None:
    project.view("odd", HEADER + "SELECT user_id, ts, CASE WHEN user_id = 0 THEN 'NaN'::DOUBLE WHEN user_id = 1 "
                                 "THEN 'inf'::DOUBLE ELSE amount END AS x FROM events\n")
    [x] = FeatureStore(project.root, consumer="test").stats("odd")
    assert x["not_finite"] == 20  # users 0 and 1: 10 rows each
    finite = [v for i, v in enumerate(AMOUNTS) if i % 20 not in (0, 1) and v is not None]
    assert (x["min"], x["max"]) == (min(finite), max(finite)) and sum(b["count"] for b in x["histogram"]) == len(finite)
    assert psi([1.0, float("nan"), 2.0], [float("nan")] * 3, numeric=True) > 0  # NaN shares NULL's bin


def test_window_statistics_are_the_features_at_the_end_of_the_data(store: FeatureStore) -> None:
    [n] = store.stats("activity")
    # At just after the last event (199h), each of the 20 users has one or two events in the last day.
    end = T0 + timedelta(hours=199, microseconds=1)
    frame = store.training_frame(pa.table({"user_id": list(range(20)), "ts": pa.array([end] * 20, pa.timestamp(
        "us", tz="UTC"))}), ["activity.n_1d"]).to_arrow().column("n_1d").to_pylist()
    assert (n["feature"], n["rows"], n["nulls"]) == ("n_1d", 20, 0)
    assert (n["min"], n["max"], n["mean"]) == (min(frame), max(frame), pytest.approx(sum(frame) / 20))


def test_drift_of_online_values_against_a_snapshot(store: FeatureStore, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from featurestore.cli.main import main

    spine = pa.table({"user_id": [i % 20 for i in range(60)],
                      "ts": pa.array([T0 + timedelta(hours=i) for i in range(60)], pa.timestamp("us", tz="UTC"))})
    snapshot = store.training_frame(spine, ["spend.*"]).save_snapshot(tmp_path / "snap")
    with pytest.raises(FeatureStoreError, match=r"view 'spend' .* is not in the online store; run `featurestore "
                                                r"materialize --view spend` first"):
        store.drift("spend", snapshot)
    store.materialize(until=T0 + timedelta(hours=200))
    found = {item["feature"]: item for item in store.drift("spend", snapshot)}
    trained = store.load_snapshot(snapshot).to_arrow()
    served = store.online({"user_id": list(range(20))}, ["spend.*"], at=T0 + timedelta(hours=200))
    assert found["kind"]["psi"] == pytest.approx(reference_psi(trained.column("kind").to_pylist(),
                                                               served["kind"].to_list()), abs=1e-4)
    assert found["kind"]["online_entities"] == 20 and found["kind"]["snapshot_rows"] == 60
    assert found["amount"]["psi"] == pytest.approx(psi(trained.column("amount").to_pylist(),
                                                       served["amount"].to_list(), numeric=True), abs=1e-4)
    assert {item["verdict"] for item in found.values()} <= {"stable", "moderate shift", "shifted"}
    assert main(["stats", "spend", "--project", str(store.root), "--snapshot", str(snapshot), "--format",
                 "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [d["feature"] for d in printed["drift"]] == ["amount", "kind"]
    assert [f["feature"] for f in printed["features"]] == ["amount", "kind"]
    assert main(["stats", "spend", "--project", str(store.root), "--snapshot", str(snapshot)]) == 0
    text = capsys.readouterr().out
    assert "drift: online values against" in text and "amount" in text
