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
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from featurestore import FeatureStore
from featurestore.catalog.page import render_catalog
from featurestore.definitions.spec import INTEGER_TYPES
from featurestore.errors import (
    FeatureDeprecationWarning,
    FeatureStoreError,
    SunsetError,
    UnavailableError,
    UnknownNameError,
    first_line,
)
from server.metrics import Metrics

__all__ = ["create_app"]

RETRY_AFTER_SECONDS = 5
CATALOG_SECONDS = 60  # the catalog page at / is rendered again after this long
Key = Union[StrictInt, StrictStr, None]
Header = Callable[[str], str | None]  # a request header by its lower-case name, or None


class FeaturesRequest(BaseModel):
    """Entities (one list per key column, equal lengths) and the features to look up."""

    model_config = ConfigDict(extra="forbid")
    entities: dict[str, list[Key]] = Field(min_length=1, examples=[{"user_id": [1, 2]}])
    features: list[StrictStr] = Field(min_length=1, examples=[["user_daily_stats.*", "user_profile.account_type"]])
    at: AwareDatetime | None = Field(default=None, examples=["2026-11-01T00:00:00Z"], description=(
        "the values as of this instant (with a time zone; default now), from what the online store holds: "
        "each entity's latest materialized row (shown only if known by then) and the window views' events"))

    @field_validator("at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        try:
            return None if value is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range (years 1 to 9999 in UTC)") from None


class FeaturesResponse(BaseModel):
    """Columnar: one value per requested entity, in request order, per feature (`view.feature`)."""

    entities: dict[str, list[Any]]
    features: dict[str, list[Any]]
    warnings: list[str] = []


class EntityResponse(BaseModel):
    view: str
    entity: dict[str, Any]
    features: dict[str, Any]
    warnings: list[str] = []


class ErrorResponse(BaseModel):
    error: str


class FastJSONResponse(JSONResponse):
    """orjson: several times faster than json for lookup payloads; times and decimals as text."""

    def render(self, content: Any) -> bytes:
        return self.dumps(content)

    @staticmethod
    def dumps(content: Any) -> bytes:
        return orjson.dumps(content, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


@dataclass(frozen=True)
class Caller:
    consumer: str
    tags: tuple[str, ...] | None  # the tags its key may read; None: every view


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.errors = status, message, headers or {}, errors


def _error(exc: HTTPProblem | FeatureStoreError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An error's answer: status, JSON content, headers."""
    if isinstance(exc, HTTPProblem):
        content: dict[str, Any] = {"error": exc.message}
        if exc.errors is not None:
            content["errors"] = exc.errors
        return exc.status, content, exc.headers
    if isinstance(exc, UnavailableError):
        return 503, {"error": str(exc).split("\n")[0]}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    status = 404 if isinstance(exc, UnknownNameError) else 410 if isinstance(exc, SunsetError) else 422
    return status, {"error": str(exc)}, {}


class _Service(FastAPI):
    """FastAPI, but POST /v1/features goes straight to `answer_features`, a bare ASGI app."""

    answer_features: Callable[[dict, Any, Any], Any]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _route_path(scope) == "/v1/features":
            await self.answer_features(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _route_path(scope: dict) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _body(receive: Any) -> bytes | None:
    """The request's body, or None if the client disconnected first. (This and `_header` cost a
    fifth of Starlette's Request.body and Headers.get: ~1 us against ~5 per lookup.)"""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: dict) -> Header:
    def header(name: str) -> str | None:
        wanted = name.encode("latin-1")
        for key, value in scope["headers"]:  # lower-case names (ASGI)
            if key == wanted:
                return value.decode("latin-1")
        return None

    return header


_ERRORS = {404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
           410: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
           503: {"model": ErrorResponse}}


def from_environment() -> FastAPI:
    """The app for the project named by FEATURESTORE_PROJECT (uvicorn's factory, one per worker)."""
    import os

    return create_app(os.environ.get("FEATURESTORE_PROJECT", "."))


def create_app(project: str | Path = ".", *, store: FeatureStore | None = None) -> FastAPI:
    """The app for the project at `project` (or an open `store`), on the PostgreSQL its SDK uses."""
    release_postgres = store is None  # a store passed in is its owner's to close
    store = store or FeatureStore(project)
    store.project  # validate now: a broken project fails at start, not on the first request
    # Responses carry deprecations (headers and `warnings`); Python warnings would only fill the log.
    warnings.filterwarnings("ignore", category=FeatureDeprecationWarning)
    settings = store.settings.server
    metrics = Metrics()
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load what the first lookup would, then exempt it all from garbage collection: the SDK's
        # libraries are ~150k objects, and a full collection of them stalled every request in
        # flight for ~45 ms about once a second under load.
        store.warm_up()
        try:
            await store.ping_async()  # opens the connection pool, so the first request need not
        except UnavailableError:
            pass  # /readyz says so until PostgreSQL answers; the pool keeps trying
        gc.collect()
        gc.freeze()
        yield
        await store.aclose()  # the asynchronous pool belongs to this event loop
        if release_postgres:
            store.release_embedded_postgres()

    # Endpoints are coroutines on an asynchronous pool: a lookup costs no thread hand-off.
    app = _Service(title="featurestore lookup service", version="1", default_response_class=FastJSONResponse,
                  description="Online feature values for predictions. Every request names its consumer.",
                  lifespan=lifespan, telemetry=_telemetry())
    app.state.store = store
    app.add_middleware(_Timing, metrics=metrics)

    @app.exception_handler(HTTPProblem)
    @app.exception_handler(FeatureStoreError)
    async def _problem(request: Request, exc: HTTPProblem | FeatureStoreError) -> Response:
        status, content, headers = _error(exc)
        return FastJSONResponse(content, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return FastJSONResponse({"error": f"{first['field']}: {first['message']}", "errors": errors}, status_code=422)

    @lru_cache(maxsize=1024)
    def select(features: tuple[str, ...]) -> _Selection:  # the project does not change while it serves
        selected = store.select(features, full_names=True)
        views = list(dict.fromkeys(s.feature.view for s in selected))
        return _Selection(selected, tuple(s.feature.qualified for s in selected), views,
                          any(store.views[v].deprecated is not None for v in views))

    def caller(header: Header) -> Caller:
        if not settings.keys:
            return Caller(header("x-consumer") or "unknown", None)
        presented = header("x-api-key") or _bearer(header("authorization") or "")
        if not presented:
            raise HTTPProblem(401, "this service needs an API key: send it as X-API-Key or Authorization: Bearer",
                              {"WWW-Authenticate": "Bearer"})
        digest = hashlib.sha256(presented.encode()).hexdigest()
        found = None
        for key in settings.keys:  # compare with every key, in constant time each
            if hmac.compare_digest(digest, key.sha256):
                found = key
        if found is None:
            raise HTTPProblem(401, "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        return Caller(found.consumer, found.tags)

    def governed(who: Caller, view_names: list[str], headers: dict[str, str], header: Header,
                 deprecated: bool = True) -> tuple[list[str], bool]:
        """Refuse views the key may not read or past their sunset; warn about deprecated ones.

        Returns the warnings and whether the caller may read views past their sunset.
        """
        for name in view_names if who.tags is not None else ():
            view = store.views[name]
            if missing := sorted(set(view.tags) - set(who.tags)):
                raise HTTPProblem(403, f"the key of consumer '{who.consumer}' may not read view '{name}': it is "
                                       f"tagged {', '.join(missing)}")
        if not deprecated:
            return [], False
        allow = who.consumer in settings.allow_after_sunset or \
            (header("x-allow-deprecated") or "").strip().lower() in ("1", "true", "yes")
        warnings = store.deprecations(view_names, allow_deprecated=allow)
        sunsets = [store.views[name].deprecated.sunset for name in view_names if store.views[name].deprecated]
        if sunsets:
            headers["Deprecation"] = "true"
            headers["Sunset"] = _http_date(min(sunsets))
        return warnings, allow

    async def lookup_features(raw: bytes, header: Header) -> tuple[bytes, dict[str, str]]:
        """POST /v1/features: the JSON answer to a request body, and its headers."""
        body = _features_request(raw)
        who = caller(header)
        count = max(len(values) for values in body.entities.values())
        if count > settings.max_entities:
            raise HTTPProblem(413, f"{count} entities in one request; the limit is {settings.max_entities} "
                                   "(server.max_entities): split the request")
        selection = select(tuple(body.features))
        headers: dict[str, str] = {}
        warnings, allow = governed(who, selection.views, headers, header, selection.deprecated)
        found = await store.online_async(body.entities, body.features, at=body.at, full_names=True, columns=True,
                                         consumer=who.consumer, allow_deprecated=allow)
        metrics.lookups(selection.qualified, who.consumer, count)
        return FastJSONResponse.dumps({"entities": body.entities,
                                       "features": {name: found[s.output] for name, s in zip(selection.qualified,
                                                                                             selection.selected)},
                                       "warnings": warnings}), headers

    # Described here for the schema; requests are answered by `answer_features`, ahead of FastAPI.
    @app.post("/v1/features", response_model=FeaturesResponse, responses=_ERRORS,
              summary="Features of many entities, one value per entity in request order",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/FeaturesRequest"}}}}})
    async def features(request: Request) -> Response:
        content, headers = await lookup_features(await request.body(), request.headers.get)
        return Response(content, media_type="application/json", headers=headers)

    async def answer_features(scope: dict, receive: Any, send: Any) -> None:
        """POST /v1/features as a bare ASGI app: FastAPI's middleware and routing (exception
        handlers, body limit, telemetry, exit stack, request and response objects) cost ~30% of a
        one-entity lookup's CPU in this process, and the hottest path needs none of it."""
        started = time.perf_counter()
        status = 500
        try:
            raw = await _body(receive)
            if raw is None:  # the client left
                status = 499
                return
            try:
                content, headers = await lookup_features(raw, _header(scope))
                status = 200
            except (HTTPProblem, FeatureStoreError) as exc:
                status, problem, headers = _error(exc)
                content = FastJSONResponse.dumps(problem)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items())]})
            await send({"type": "http.response.body", "body": content})
        finally:
            metrics.request("/v1/features", status, time.perf_counter() - started)

    app.answer_features = answer_features

    @app.get("/v1/features/{view}/{key}", response_model=EntityResponse, responses=_ERRORS,
             summary="All features of one entity of a view with a single key column")
    async def entity(view: str, key: str, request: Request) -> Response:
        who = caller(request.headers.get)
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
                raise HTTPProblem(422, f"key: '{key}' is not an integer, and view '{view}' keys {name} as {kind}")
        headers: dict[str, str] = {}
        warnings, allow = governed(who, [view], headers, request.headers.get)
        values = await store.online_async({name: [value]}, [f"{view}.*"], columns=True, consumer=who.consumer,
                                          allow_deprecated=allow)
        metrics.lookups(tuple(f.qualified for f in found.features), who.consumer, 1)
        return FastJSONResponse({"view": view, "entity": {name: value},
                                 "features": {f.name: values[f.name][0] for f in found.features},
                                 "warnings": warnings}, headers=headers)

    @app.get("/v1/views", summary="The catalog: every view with its features, types, owner, version, tags")
    async def views(request: Request) -> Response:
        caller(request.headers.get)
        return FastJSONResponse({"views": store.catalog()})

    @app.get("/v1/views/{view}", responses=_ERRORS, summary="One view of the catalog")
    async def one_view(view: str, request: Request) -> Response:
        caller(request.headers.get)
        store.view(view)
        return FastJSONResponse(next(v for v in store.catalog() if v["view"] == view))

    catalog_pages: dict[Any, tuple[float, str]] = {}  # the key's tags (None: all views) → (rendered at, page)
    catalog_lock = asyncio.Lock()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def catalog(request: Request) -> HTMLResponse:
        """The feature catalog (`featurestore docs`), rendered at most once a minute; with API keys, for a
        valid key only, showing the views its tags allow."""
        who = caller(request.headers.get)
        shown = None if who.tags is None else [name for name, view in store.views.items()
                                               if set(view.tags) <= set(who.tags)]
        slot = None if who.tags is None else tuple(sorted(who.tags))
        async with catalog_lock:
            rendered = catalog_pages.get(slot)
            if rendered is None or time.monotonic() - rendered[0] > CATALOG_SECONDS:
                try:
                    page = await asyncio.to_thread(render_catalog, store, views=shown)
                except Exception as exc:  # the data behind it (sources, PostgreSQL) failed: not the client's doing
                    raise HTTPProblem(503, f"the catalog could not be rendered: {first_line(exc)}",
                                      {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
                rendered = catalog_pages[slot] = (time.monotonic(), page)
        return HTMLResponse(rendered[1])

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return FastJSONResponse({"status": "ok"})

    @app.get("/readyz", responses=_ERRORS, summary="PostgreSQL answers")
    async def readyz() -> Response:
        await store.ping_async()
        return FastJSONResponse({"status": "ready"})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:  # the body POST /v1/features checks itself, described as FastAPI would
        if app.openapi_schema is None:
            schema = default_openapi()
            request_schema = FeaturesRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["FeaturesRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_REQUEST = TypeAdapter(FeaturesRequest)


def _features_request(raw: bytes) -> FeaturesRequest:
    """The request body as FeaturesRequest, or a 422 naming the field (as FastAPI would)."""
    try:
        return _REQUEST.validate_json(raw)
    except ValidationError as exc:
        errors = [{"field": ".".join(["body", *(str(p) for p in e["loc"])]), "message": e["msg"]}
                  for e in exc.errors(include_url=False)]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        raise HTTPProblem(422, f"{first['field']}: {first['message']}", errors=errors) from None


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _http_date(day: date) -> str:
    return format_datetime(datetime(day.year, day.month, day.day, tzinfo=UTC), usegmt=True)


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


@dataclass(frozen=True)
class _Selection:
    """Requested features resolved once per distinct request: each with its output name, full name, views."""

    selected: list[Any]
    qualified: tuple[str, ...]
    views: list[str]
    deprecated: bool


class _Timing:
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

