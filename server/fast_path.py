"""The hottest endpoint without the framework: POST /v1/features as a bare ASGI app.

FastAPI's middleware and routing (exception handlers, body limit, telemetry, exit stack, request
and response objects) cost ~30% of a one-entity lookup's CPU in this process, and this path needs
none of it. `Service` is FastAPI with that one route taken ahead of it; `Timing` records every
other request's latency and status by route template.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from featurestore.errors import FeatureStoreError
from server.metrics import Metrics
from server.models import FastJSONResponse
from server.policy import Header, HTTPProblem, error_answer

__all__ = ["FEATURES_PATH", "Service", "Timing", "bare_endpoint", "read_body", "scope_header"]

FEATURES_PATH = "/v1/features"
Answer = Callable[[bytes, Header], Awaitable[tuple[bytes, dict[str, str]]]]  # body, header → JSON, headers


class Service(FastAPI):
    """FastAPI, but POST /v1/features goes straight to `answer_features`, a bare ASGI app."""

    answer_features: Callable[[dict, Any, Any], Any]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _route_path(scope) == FEATURES_PATH:
            await self.answer_features(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def bare_endpoint(answer: Answer, metrics: Metrics) -> Callable[[dict, Any, Any], Awaitable[None]]:
    """An ASGI app answering a request body with `answer` (errors as JSON, like the other routes)."""

    async def answer_features(scope: dict, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        status = 500
        try:
            raw = await read_body(receive)
            if raw is None:  # the client left
                status = 499
                return
            try:
                content, headers = await answer(raw, scope_header(scope))
                status = 200
            except (HTTPProblem, FeatureStoreError) as exc:
                status, problem, headers = error_answer(exc)
                content = FastJSONResponse.dumps(problem)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())]})
            await send({"type": "http.response.body", "body": content})
        finally:
            metrics.request(FEATURES_PATH, status, time.perf_counter() - started)

    return answer_features


def _route_path(scope: dict) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def read_body(receive: Any) -> bytes | None:
    """The request's body, or None if the client disconnected first. (This and `scope_header` cost a
    fifth of Starlette's Request.body and Headers.get: ~1 us against ~5 per lookup.)"""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def scope_header(scope: dict) -> Header:
    def header(name: str) -> str | None:
        wanted = name.encode("latin-1")
        for key, value in scope["headers"]:  # lower-case names (ASGI)
            if key == wanted:
                return value.decode("latin-1")
        return None

    return header


class Timing:
    """ASGI middleware: each request's latency and status, by route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            self.metrics.request(getattr(route, "path", "unmatched"), status, time.perf_counter() - started)
