"""Shared fixtures: a real PostgreSQL, and a small project written to disk (helpers: support.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ProjectDir, events_table


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """FEATURESTORE_POSTGRES_URL when set, else an embedded server for the session."""
    if os.environ.get("FEATURESTORE_POSTGRES_URL"):
        yield os.environ["FEATURESTORE_POSTGRES_URL"]
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def project(tmp_path: Path) -> ProjectDir:
    """A project with one Parquet source `events(user_id, card_id, amount, ts)` and no views."""
    result = ProjectDir(tmp_path / "proj")
    result.parquet("events", events_table())
    return result
