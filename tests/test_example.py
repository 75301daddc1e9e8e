"""The repository's own example project validates clean on generated data."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from featurestore.cli.main import main
from featurestore.demo import write_demo_data

REPO = Path(__file__).parent.parent


def test_example_project_validates(tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    shutil.copy(REPO / "featurestore.toml", tmp_path / "featurestore.toml")
    write_demo_data(tmp_path, conninfo=postgres_url, offline_database=tmp_path / ".featurestore" / "offline.duckdb",
                    users=200, transactions=5_000)
    assert main(["--project", str(tmp_path), "validate", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"errors": 0, "warnings": 0, "problems": []}
    assert main(["--project", str(tmp_path), "views", "--format", "json"]) == 0
    views = {v["view"]: v for v in json.loads(capsys.readouterr().out)}
    assert set(views) == {"user_profile", "user_daily_stats", "merchant_risk", "cards_added", "user_spend_trend"}
    assert views["merchant_risk"]["entity"] == ["merchant_id", "country"]
    assert views["cards_added"]["kind"] == "window"
    assert "pii" in views["user_profile"]["tags"]


def test_the_fraud_example_end_to_end(tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/fraud/run.py on a small copy of the example: train, snapshot, serve, score, no skew."""
    import importlib.util

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)  # the server it starts inherits it
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    shutil.copy(REPO / "featurestore.toml", tmp_path / "featurestore.toml")
    write_demo_data(tmp_path, conninfo=postgres_url, offline_database=tmp_path / ".featurestore" / "offline.duckdb",
                    users=2_000, transactions=80_000)
    spec = importlib.util.spec_from_file_location("fraud_example", REPO / "examples" / "fraud" / "run.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--project", str(tmp_path), "--out", "out"]) == 0
    out = capsys.readouterr().out
    assert "== scored over HTTP" in out and "== online = offline: the 300 entities' 10 features" in out
    fresh = re.search(r"== fresh events: 4 cards added .* served at once by cards_added: cards_added_3h (\d+) -> (\d+);"
                      r" transaction \d+ scored now: ([\d.]+) -> ([\d.]+)", out)
    assert fresh is not None, out
    assert int(fresh[2]) == int(fresh[1]) + 4, fresh[0]  # served when the push returned
    assert "svg class=\"psi\"" in (tmp_path / "out" / "site" / "index.html").read_text()  # the catalog, with drift
    card = json.loads((tmp_path / "out" / "model.json").read_text())
    honest = card["test_metrics"]["average_precision"]
    leaky = card["leaky_metrics"]["offline (leaky test features)"]["average_precision"]
    # The leak inflates the offline metric well past the honest one.
    assert leaky > honest + 0.1, card
    from featurestore import FeatureStore

    snapshot = FeatureStore.load_snapshot(card["snapshot"])  # the frame the model was trained on, verified
    assert snapshot.content_hash() == card["snapshot_content_hash"]
    assert snapshot.columns[-10:] == [f.split(".")[1] for f in card["features"]]
