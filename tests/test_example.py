"""The repository's own example project validates clean on generated data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from featurestore.cli import main
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
