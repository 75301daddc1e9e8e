"""The embedded PostgreSQL (the `pgserver` package) under a project's `.featurestore/pgdata`, or the configured server.

    url = resolve_url(settings.postgres_url, settings.state_dir)   # the configured URL, or the embedded server's

The embedded server is shared by every process of a project: the SDK, the CLI and the HTTP server
all reach the same data folder, and it stops when the last of them exits.
"""

from __future__ import annotations

import atexit
import contextlib
import warnings
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureStoreError

__all__ = ["before_release", "release_embedded", "resolve_url", "running_url"]


_servers: dict[Path, Any] = {}


_before_release: list[Any] = []


def before_release(callback: Any) -> None:
    """Run `callback()` before this process lets go of its embedded servers (at exit too): last writes."""
    if callback not in _before_release:
        _before_release.append(callback)


def _last_writes() -> None:
    for callback in list(_before_release):
        with contextlib.suppress(Exception):
            callback()


def resolve_url(postgres_url: str | None, state_dir: Path) -> str:
    """`postgres_url` when configured; otherwise start (or join) the embedded server."""
    if postgres_url:
        return postgres_url
    pgdata = (state_dir / "pgdata").resolve()
    if pgdata not in _servers:
        pgdata.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
                import pgserver

                _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
            atexit.register(_last_writes)  # after pgserver's own exit hook, so it runs before it
        except Exception as exc:  # pgserver raises bare exceptions with the server log
            raise FeatureStoreError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n"
                f"set FEATURESTORE_POSTGRES_URL to use another server, or delete {pgdata} to start afresh"
            ) from None
    return _servers[pgdata].get_uri()


def running_url(postgres_url: str | None, state_dir: Path) -> str | None:
    """`postgres_url` when configured, the embedded server's when this process runs it, else None.

    For work that should use PostgreSQL if it is at hand but not start a server for itself.
    """
    if postgres_url:
        return postgres_url
    server = _servers.get((state_dir / "pgdata").resolve())
    return server.get_uri() if server is not None else None


def release_embedded() -> None:
    """Let go of the embedded servers this process started; the last process to let go stops one.

    Runs at exit anyway; a server killed by a signal (uvicorn re-raises SIGTERM) must call it itself.
    """
    _last_writes()
    for server in list(_servers.values()):
        server.cleanup()
    _servers.clear()
