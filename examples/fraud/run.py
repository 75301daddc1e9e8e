"""The fraud example end to end: train on point-in-time features, serve them, score over HTTP.

    python examples/fraud/run.py                # from the repository root (scripts/demo.sh runs it)

1. The example's data (`featurestore demo-data`), unless already there.
2. A scikit-learn Pipeline, FeatureStoreTransformer then a gradient-boosted classifier, fitted on
   the transactions before 2026-10-15 with each one's features as of its own time; evaluated on
   the transactions after (a time-based split), by the same Pipeline.
3. The leaky variant: the same model on features joined naively on the day (each transaction gets
   its day's latest values, the day's final aggregates, its own label in the merchant's fraud
   rate included), the mistake point-in-time joins prevent. Its offline metric is inflated; on
   honest features, which is what it meets in production, it does worse.
4. The training frame saved as a snapshot, and the model saved with the snapshot's content hash.
5. The online store materialized, the HTTP service started, new transactions scored from features
   fetched over HTTP, and the served feature vectors compared with a training frame's at the
   same instant: they must be equal. Then cards added to an account right now are pushed to the
   `card_events` source: the next lookup serves them, and the transaction's score moves.
6. The feature catalog written (`featurestore docs`), with each feature's drift since the snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestore import FeatureStore
from featurestore.sklearn import FeatureStoreTransformer

SPLIT = datetime(2026, 10, 15, tzinfo=UTC)  # train before, test from here
START = datetime(2026, 9, 1, tzinfo=UTC)    # the first month has no history behind it
END = datetime(2026, 11, 1, tzinfo=UTC)     # where the example's data ends
FEATURES = ["user_daily_stats.txn_count", "user_daily_stats.total_amount", "user_daily_stats.max_amount",
            "user_spend_trend.avg_daily_amount_7d", "user_spend_trend.spend_vs_trend_7d",
            "cards_added.cards_added_3h", "cards_added.cards_added_1d", "cards_added.distinct_cards_1d",
            "merchant_risk.fraud_rate", "merchant_risk.avg_amount"]
SPINE = ["user_id", "merchant_id", "country", "ts"]  # what a transaction brings: keys and its time
RAW = ["amount"]                                      # and its own amount, used as it is


def model_pipeline(store: FeatureStore) -> Any:
    """Features from the store for the transaction's keys and time, its amount as it is, then the classifier."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    features = ColumnTransformer([("store", FeatureStoreTransformer(store, FEATURES, timestamp="ts"), SPINE),
                                  ("raw", "passthrough", RAW)])
    return Pipeline([("features", features),
                     ("classifier", HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0))])


def transactions(store: FeatureStore) -> pd.DataFrame:
    import duckdb

    path = store.root / "data" / "transactions.parquet"
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        return connection.sql(
            "SELECT transaction_id, user_id, merchant_id, country, ts, amount, is_fraud FROM read_parquet($1) "
            "WHERE ts >= $2 ORDER BY ts, transaction_id", params=[str(path), START]).to_arrow_table().to_pandas()


def metrics(y: Any, scores: Any) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"average_precision": round(float(average_precision_score(y, scores)), 4),
            "roc_auc": round(float(roc_auc_score(y, scores)), 4)}


def leaky_metrics(store: FeatureStore, train: pd.DataFrame, test: pd.DataFrame,
                  honest_test: Any) -> dict[str, dict[str, float]]:
    """Features joined naively on the day: each row gets the day's latest values, as a join on the
    date would give (the day's final aggregates, known after it ends), the future of the day included."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    def latest(rows: pd.DataFrame) -> pd.DataFrame:
        day_end = rows["ts"].dt.floor("D") + pd.Timedelta(days=1, hours=3)  # once the day's batches landed
        naive = rows[SPINE].assign(ts=day_end)
        frame = store.training_frame(naive, FEATURES).to_pandas()
        return frame[[f.split(".")[1] for f in FEATURES]].assign(amount=rows["amount"].to_numpy())

    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
    model.fit(latest(train).to_numpy(dtype=float), train["is_fraud"])
    return {"offline (leaky test features)": metrics(test["is_fraud"], model.predict_proba(
                latest(test).to_numpy(dtype=float))[:, 1]),
            "in production (honest features)": metrics(test["is_fraud"], model.predict_proba(
                np.asarray(honest_test, dtype=float))[:, 1])}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body, default=str).encode(), method="POST", headers={
        "content-type": "application/json", "X-Consumer": "fraud_example"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "featurestore.cli.main", "serve", "--project", str(root), "--port", str(port)]
    with open(root / ".featurestore" / "example-server.log", "w") as log:  # read only if it fails to start
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return server, base
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the server did not start: " + Path(log.name).read_text()) from None
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not become ready in 30 s")


def fetched(base: str, rows: pd.DataFrame, at: datetime) -> pd.DataFrame:
    """The rows' features over HTTP as of `at`, as a serving path gets them, named like the frame's columns."""
    answer = post(base + "/v1/features", {"entities": {k: rows[k].tolist() for k in ("user_id", "merchant_id",
                                                                                      "country")},
                                          "features": FEATURES, "at": at.isoformat()})
    return pd.DataFrame({name.split(".")[1]: values for name, values in answer["features"].items()})


def fresh_events(store: FeatureStore, base: str, classifier: Any, transaction: pd.DataFrame) -> None:
    """A burst of cards added to the account right now, pushed to the source: the next lookup serves
    it, and the same transaction scored now scores higher. Training frames read the pushed events too."""
    def score(at: datetime) -> tuple[float, pd.DataFrame]:
        served = fetched(base, transaction, at)
        return float(classifier.predict_proba(served.assign(amount=transaction["amount"]).to_numpy(
            dtype=float))[:, 1][0]), served

    before, features = score(datetime.now(UTC))
    user = int(transaction["user_id"][0])
    now = datetime.now(UTC)
    first = 10**9 + int(now.timestamp())  # ids unlike the history's, new on every run
    cards = [{"event_id": first * 10 + i, "user_id": user, "card_id": first * 10 + i,
              "ts": now - timedelta(minutes=20 - 5 * i)} for i in range(4)]
    result = store.push("card_events", cards)
    after, changed = score(datetime.now(UTC))
    print(f"== fresh events: {result.rows} cards added to user {user}'s account pushed to card_events; served at "
          f"once by {', '.join(result.views_updated)}: cards_added_3h {int(features['cards_added_3h'][0])} -> "
          f"{int(changed['cards_added_3h'][0])}; transaction {int(transaction['transaction_id'][0])} scored now: "
          f"{before:.4f} -> {after:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="the example project (default: the current folder)")
    parser.add_argument("--out", default="examples/fraud/out", help="where the snapshot and the model go")
    args = parser.parse_args(argv)
    root = Path(args.project).resolve()
    os.environ.setdefault("FEATURESTORE_CONSUMER", "fraud_example")
    if not (root / "data" / "transactions.parquet").exists():
        subprocess.run([sys.executable, "-m", "featurestore.cli.main", "demo-data", "--project", str(root)], check=True)
    store = FeatureStore(root, consumer="fraud_example")
    rows = transactions(store)
    train, test = rows[rows["ts"] < SPLIT].reset_index(drop=True), rows[rows["ts"] >= SPLIT].reset_index(drop=True)
    print(f"== train: {len(train):,} transactions {START:%Y-%m-%d}..{SPLIT:%Y-%m-%d} "
          f"({train['is_fraud'].mean():.2%} fraud); test: {len(test):,} from {SPLIT:%Y-%m-%d}")

    model = model_pipeline(store)
    started = time.perf_counter()
    model.fit(train, train["is_fraud"])
    honest = metrics(test["is_fraud"], model.predict_proba(test)[:, 1])
    print(f"== honest model (point-in-time features), fitted in {time.perf_counter() - started:.1f}s: "
          f"average precision {honest['average_precision']:.3f}, ROC AUC {honest['roc_auc']:.3f}")

    honest_test = model.named_steps["features"].transform(test)
    leaky = leaky_metrics(store, train, test, honest_test)
    for name, values in leaky.items():
        print(f"== leaky model (the day's latest values joined naively), {name}: average precision "
              f"{values['average_precision']:.3f}, ROC AUC {values['roc_auc']:.3f}")

    out = (root / args.out).resolve()
    frame = store.training_frame(train[[*SPINE, "transaction_id", "amount", "is_fraud"]], FEATURES)
    snapshot = out / f"snapshot-{frame.content_hash()[:12]}"
    if not (snapshot / "manifest.json").exists():
        frame.save_snapshot(snapshot)
    import joblib

    classifier = model.named_steps["classifier"]
    card = {"features": FEATURES, "raw": RAW, "snapshot": str(snapshot), "snapshot_content_hash": frame.content_hash(),
            "view_versions": frame.info["view_versions"], "test_metrics": honest, "leaky_metrics": leaky}
    joblib.dump({"classifier": classifier, **card}, out / "model.joblib")
    (out / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"== training frame saved as {snapshot.relative_to(root)}; model and its card in "
          f"{out.relative_to(root)}/model.joblib, model.json")

    store.materialize(until=END)
    server, base = serve(root)
    try:
        new = test.tail(5).reset_index(drop=True)  # the newest transactions, scored as a service would
        served = fetched(base, new, END)
        scores = classifier.predict_proba(served.assign(amount=new["amount"]).to_numpy(dtype=float))[:, 1]
        print("== scored over HTTP (features as of 2026-11-01, from the online store):")
        shown = new[["transaction_id", "user_id", "merchant_id", "country", "amount", "is_fraud"]].assign(
            fraud_score=np.round(scores, 4))
        print(shown.to_string(index=False))
        # No skew: the vectors served online equal a training frame's at the same instant.
        sample = test.sample(300, random_state=1).reset_index(drop=True)
        online = fetched(base, sample, END)
        offline = store.training_frame(sample[SPINE].assign(ts=END), FEATURES).to_pandas()[list(online.columns)]
        if not online.astype(object).where(online.notna(), None).equals(
                offline.astype(object).where(offline.notna(), None)):
            print("!! online and offline feature vectors differ")
            return 1
        print(f"== online = offline: the {len(sample)} entities' {len(online.columns)} features served over HTTP "
              f"equal the training frame's at 2026-11-01, value for value")
        fresh_events(store, base, classifier, new.iloc[[0]].reset_index(drop=True))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    from featurestore.catalog.page import build_site

    page = build_site(store, out / "site", snapshot=snapshot)
    store.close()
    print(f"== the feature catalog, with each feature's drift since this training snapshot: {page.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
