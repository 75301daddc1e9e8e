"""Run a uvicorn app in several worker processes, each with its own listening socket.

    run_workers(uvicorn.Config("server.app:from_environment", factory=True, workers=2, …))   # or 1

uvicorn's workers share one listening socket, and an asyncio worker accepts every connection
waiting when it wakes. Clients that open a few long-lived connections at once (a serving
service's pool, a load test) then often land on one worker while the others idle: 16 such
connections over 2 workers kept 63% of the machine busy here. Each worker here listens on a
socket of its own, bound with SO_REUSEPORT, and the kernel spreads new connections over them by
their address hash. Where there is no SO_REUSEPORT (Windows), the workers share one socket.

Every socket is created with IPPROTO_TCP, so uvicorn sets TCP_NODELAY on its connections: on a
socket uvicorn binds for workers it does not, and each response waits ~40 ms for a delayed ACK
(uvicorn issue 3149).
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["run_workers"]


def run_workers(config: Any) -> None:
    """Serve `config` (a uvicorn.Config) in `config.workers` processes until SIGINT or SIGTERM.

    Raises OSError when the address cannot be bound, before any worker starts.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # Bound here without SO_REUSEPORT, so a port in use, even by another server that set it, fails
    # before any worker starts (and port 0 becomes a real one).
    shared = _bound(family, (config.host, config.port), reuse_port=False)
    try:
        if config.workers <= 1:
            uvicorn.Server(config).run(sockets=[shared])
        elif hasattr(socket, "SO_REUSEPORT"):
            address = shared.getsockname()[:2]
            shared.close()  # it never listened: no connection waited on it
            Multiprocess(config, sockets=_PerWorker(family, address)).run()
        else:
            shared.set_inheritable(True)
            Multiprocess(config, sockets=[shared]).run()
    finally:
        shared.close()


def _bound(family: int, address: tuple[str, int], reuse_port: bool) -> socket.socket:
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(address)
    except OSError:
        listener.close()
        raise
    return listener


def _listener(family: int, address: tuple[str, int]) -> list[socket.socket]:
    """Run in a worker as it unpickles its sockets: a socket of its own on the shared address."""
    return [_bound(family, address, reuse_port=True)]


class _PerWorker(list):  # type: ignore[type-arg]
    """The sockets argument uvicorn hands to each worker process it spawns (pickled): each worker
    unpickles it as a new socket bound to `address` with SO_REUSEPORT."""

    def __init__(self, family: int, address: tuple[str, int]) -> None:
        super().__init__()
        self.family, self.address = family, address

    def __reduce__(self) -> tuple[Any, ...]:
        return _listener, (self.family, self.address)
