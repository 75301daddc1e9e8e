"""`featurestore init` makes a project that validates and compiles as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurestore.cli.main import main


def test_starter_project_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "starter")]) == 0
    assert main(["--project", str(tmp_path / "starter"), "validate", "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["--project", str(tmp_path / "starter"), "views", "--format", "json"]) == 0
    views = {v["view"]: v for v in json.loads(capsys.readouterr().out)}
    assert views["customer_orders"]["kind"] == "window"
    assert [f["name"] for f in views["customer_orders"]["features"]] == [
        "orders_1d", "orders_7d", "spend_1d", "spend_7d"]
    assert views["customer_profile"]["kind"] == "snapshot"


def test_init_refuses_an_existing_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 0
    assert main(["init", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
