"""The HTTP lookup service: FastAPI over the SDK's online lookups, with no logic the SDK does not expose.

    app = create_app(".")            # the project in this folder, on the PostgreSQL the SDK uses
    POST /v1/features  {"entities": {"user_id": [1, 2]}, "features": ["user_daily_stats.*"]}
    →    {"entities": {"user_id": [1, 2]}, "features": {"user_daily_stats.txn_count": [3, null], …},
          "warnings": []}

Every request names its consumer: the consumer of its API key when keys are configured
([server.keys] in featurestore.toml, stored as SHA-256, compared in constant time, never
logged), else the `X-Consumer` header, else "unknown". Errors are JSON `{"error": …}`:
404 unknown view or feature (with the closest name), 422 malformed input (with the field),
401/403 keys and tags, 410 past a sunset, 413 too many entities, 503 PostgreSQL unavailable.

The parts: `models` (bodies), `policy` (keys, tags, sunsets, error answers), `fast_path` (POST
/v1/features without the framework), `metrics`; this module wires them into routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from featurestore import FeatureStore
from featurestore.catalog.page import render_catalog
from featurestore.definitions.spec import INTEGER_TYPES
from featurestore.errors import FeatureDeprecationWarning, FeatureStoreError, UnavailableError, first_line
from server.fast_path import FEATURES_PATH, Service, Timing, bare_endpoint
from server.metrics import Metrics
from server.models import (
    ERRORS,
    EntityResponse,
    FastJSONResponse,
    FeaturesRequest,
    FeaturesResponse,
    PushRequest,
    PushResponse,
    features_request,
)
from server.policy import RETRY_AFTER_SECONDS, Header, HTTPProblem, Policy, error_answer

__all__ = ["create_app", "from_environment"]

CATALOG_SECONDS = 60  # the catalog page at / is rendered again after this long


def from_environment() -> FastAPI:
    """The app for the project named by FEATURESTORE_PROJECT (uvicorn's factory, one per worker)."""
    import os

    return create_app(os.environ.get("FEATURESTORE_PROJECT", "."))


def create_app(project: str | Path = ".", *, store: FeatureStore | None = None) -> FastAPI:
    """The app for the project at `project` (or an open `store`), on the PostgreSQL its SDK uses."""
    release_postgres = store is None  # a store passed in is its owner's to close
    store = store or FeatureStore(project)
    _ = store.project  # validate now: a broken project fails at start, not on the first request
    # Responses carry deprecations (headers and `warnings`); Python warnings would only fill the log.
    warnings.filterwarnings("ignore", category=FeatureDeprecationWarning)
    metrics = Metrics()
    policy = Policy(store)
    lookup = FeatureLookup(store, policy, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load what the first lookup would, then exempt it all from garbage collection: the SDK's
        # libraries are ~150k objects, and a full collection of them stalled every request in
        # flight for ~45 ms about once a second under load.
        store.warm_up()
        # Open the connection pool, so the first request need not; if PostgreSQL does not answer yet,
        # /readyz says so until it does, and the pool keeps trying.
        with contextlib.suppress(UnavailableError):
            await store.ping_async()
        gc.collect()
        gc.freeze()
        yield
        await store.aclose()  # the asynchronous pool belongs to this event loop
        if release_postgres:
            store.release_embedded_postgres()

    # Endpoints are coroutines on an asynchronous pool: a lookup costs no thread hand-off.
    app = Service(title="featurestore lookup service", version="1", default_response_class=FastJSONResponse,
                  description="Online feature values for predictions. Every request names its consumer.",
                  lifespan=lifespan, telemetry=_telemetry())
    app.state.store = store
    app.add_middleware(Timing, metrics=metrics)
    app.answer_features = bare_endpoint(lookup, metrics)

    @app.exception_handler(HTTPProblem)
    @app.exception_handler(FeatureStoreError)
    async def _problem(request: Request, exc: HTTPProblem | FeatureStoreError) -> Response:
        status, content, headers = error_answer(exc)
        return FastJSONResponse(content, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return FastJSONResponse({"error": f"{first['field']}: {first['message']}", "errors": errors}, status_code=422)

    # Described here for the schema; requests are answered by `app.answer_features`, ahead of FastAPI.
    @app.post(FEATURES_PATH, response_model=FeaturesResponse, responses=ERRORS,
              summary="Features of many entities, one value per entity in request order",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/FeaturesRequest"}}}}})
    async def features(request: Request) -> Response:
        content, headers = await lookup(await request.body(), request.headers.get)
        return Response(content, media_type="application/json", headers=headers)

    @app.get("/v1/features/{view}/{key}", response_model=EntityResponse, responses=ERRORS,
             summary="All features of one entity of a view with a single key column")
    async def entity(view: str, key: str, request: Request) -> Response:
        who = policy.caller(request.headers.get)
        found = store.view(view)
        if len(found.entity) != 1:
            raise HTTPProblem(422, f"view '{view}' has a composite key ({', '.join(found.entity)}); "
                                   "use POST /v1/features")
        (name,) = found.entity
        kind = {c.name: c.type for c in found.columns}[name].upper()
        value: Any = key
        if kind in INTEGER_TYPES:
            try:
                value = int(key)
            except ValueError:
                raise HTTPProblem(422, f"key: '{key}' is not an integer, and view '{view}' keys {name} "
                                       f"as {kind}") from None
        headers: dict[str, str] = {}
        warnings, allow = policy.governed(who, [view], headers, request.headers.get)
        started = time.perf_counter()
        values = await store.online_async({name: [value]}, [f"{view}.*"], columns=True, consumer=who.consumer,
                                          allow_deprecated=allow)
        metrics.lookup(tuple(f.qualified for f in found.features), who.consumer, 1, (view,),
                       time.perf_counter() - started)
        return FastJSONResponse({"view": view, "entity": {name: value},
                                 "features": {f.name: values[f.name][0] for f in found.features},
                                 "warnings": warnings}, headers=headers)

    @app.post("/v1/push/{source}", response_model=PushResponse, responses=ERRORS,
              summary="Add rows to a source: all or nothing, once per Idempotency-Key, served when it returns")
    async def push(source: str, body: PushRequest, request: Request) -> Response:
        """Needs a key with the push right. A bad row is a 422 naming its `row` and `column`, and nothing
        is written; the same `Idempotency-Key` header again gets the first answer and writes nothing."""
        from starlette.concurrency import run_in_threadpool

        policy.pusher(request.headers.get)
        key = request.headers.get("idempotency-key")
        result = await run_in_threadpool(store.push, source, body.rows, idempotency_key=key)
        return FastJSONResponse(result.as_dict())

    @app.get("/v1/views", summary="The catalog: every view with its features, types, owner, version, tags")
    async def views(request: Request) -> Response:
        policy.caller(request.headers.get)
        return FastJSONResponse({"views": store.catalog()})

    @app.get("/v1/views/{view}", responses=ERRORS, summary="One view of the catalog")
    async def one_view(view: str, request: Request) -> Response:
        policy.caller(request.headers.get)
        store.view(view)
        return FastJSONResponse(next(v for v in store.catalog() if v["view"] == view))

    pages = CatalogPages(store)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def catalog(request: Request) -> HTMLResponse:
        """The feature catalog (`featurestore docs`), rendered at most once a minute; with API keys, for a
        valid key only, showing the views its tags allow."""
        return HTMLResponse(await pages.page(policy.readable(policy.caller(request.headers.get))))

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return FastJSONResponse({"status": "ok"})

    @app.get("/readyz", responses=ERRORS, summary="PostgreSQL answers")
    async def readyz() -> Response:
        await store.ping_async()
        return FastJSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    _describe_request_body(app)
    return app


class FeatureLookup:
    """POST /v1/features: the JSON answer to a request body, and its headers."""

    def __init__(self, store: FeatureStore, policy: Policy, metrics: Metrics) -> None:
        self.store, self.policy, self.metrics = store, policy, metrics
        self.select = lru_cache(maxsize=1024)(self._select)  # the project does not change while it serves

    async def __call__(self, raw: bytes, header: Header) -> tuple[bytes, dict[str, str]]:
        body = features_request(raw)
        who = self.policy.caller(header)
        count = max(len(values) for values in body.entities.values())
        limit = self.policy.settings.max_entities
        if count > limit:
            raise HTTPProblem(413, f"{count} entities in one request; the limit is {limit} "
                                   "(server.max_entities): split the request")
        selection = self.select(tuple(body.features))
        headers: dict[str, str] = {}
        warnings, allow = self.policy.governed(who, selection.views, headers, header, selection.deprecated)
        started = time.perf_counter()
        found = await self.store.online_async(body.entities, body.features, at=body.at, full_names=True,
                                              columns=True, consumer=who.consumer, allow_deprecated=allow)
        self.metrics.lookup(selection.qualified, who.consumer, count, selection.views, time.perf_counter() - started)
        return FastJSONResponse.dumps({"entities": body.entities,
                                       "features": {name: found[s.output] for name, s in zip(selection.qualified,
                                                                                             selection.selected)},
                                       "warnings": warnings}), headers

    def _select(self, features: tuple[str, ...]) -> _Selection:
        store = self.store
        selected = store.select(features, full_names=True)
        views = tuple(dict.fromkeys(s.feature.view for s in selected))
        return _Selection(selected, tuple(s.feature.qualified for s in selected), views,
                          any(store.views[v].deprecated is not None for v in views))


@dataclass(frozen=True)
class _Selection:
    """Requested features resolved once per distinct request: each with its output name, full name, views."""

    selected: list[Any]
    qualified: tuple[str, ...]
    views: tuple[str, ...]
    deprecated: bool


class CatalogPages:
    """The catalog page per set of readable views, rendered again after CATALOG_SECONDS."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.pages: dict[Any, tuple[float, str]] = {}  # the views shown (None: all) → (rendered at, page)
        self.lock = asyncio.Lock()

    async def page(self, shown: list[str] | None) -> str:
        slot = None if shown is None else tuple(shown)
        async with self.lock:
            rendered = self.pages.get(slot)
            if rendered is None or time.monotonic() - rendered[0] > CATALOG_SECONDS:
                try:
                    page = await asyncio.to_thread(render_catalog, self.store, views=shown)
                except Exception as exc:  # the data behind it (sources, PostgreSQL) failed: not the client's doing
                    raise HTTPProblem(503, f"the catalog could not be rendered: {first_line(exc)}",
                                      {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
                rendered = self.pages[slot] = (time.monotonic(), page)
        return rendered[1]


def _describe_request_body(app: FastAPI) -> None:
    """The body POST /v1/features checks itself, described in the OpenAPI schema as FastAPI would."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            request_schema = FeaturesRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["FeaturesRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _telemetry() -> dict[str, bool] | None:
    """FastAPI's OpenTelemetry, on only when a provider is configured when the app is made.

    Left on, FastAPI asks the global providers (reading environment variables) on every request:
    ~20 us of a lookup's CPU even with nothing configured.
    """
    try:
        from fastapi.telemetry._asgi import NativeTelemetry
    except ImportError:  # a FastAPI without native telemetry
        return None
    wanted = {"tracing": True, "metrics": True, "logs": True}
    probe = NativeTelemetry({"tracer_provider": None, "meter_provider": None, "logger_provider": None, **wanted})
    return wanted if probe.enabled() else {name: False for name in wanted}
