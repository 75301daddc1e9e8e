"""The HTTP API's request and response bodies, and how they are read and written (orjson).

    features_request(b'{"entities": {"user_id": [1]}, "features": ["user_profile.*"]}')   # FeaturesRequest
    FastJSONResponse.dumps({"at": Decimal("1.5")})                                          # b'{"at":"1.5"}'
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi.responses import JSONResponse
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

from server.policy import HTTPProblem

__all__ = ["ERRORS", "MAX_PUSH_ROWS", "EntityResponse", "ErrorResponse", "FastJSONResponse", "FeaturesRequest",
           "FeaturesResponse", "PushRequest", "PushResponse", "features_request"]

Key = StrictInt | StrictStr | None


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


MAX_PUSH_ROWS = 100_000  # rows per push over HTTP; more go in several batches (or `featurestore push FILE`)


class PushRequest(BaseModel):
    """Rows for a source: each an object of its columns (the arrival column may be left out)."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_PUSH_ROWS, examples=[
        [{"user_id": 7, "card_id": 91, "ts": "2026-11-01T10:00:00Z"}]])


class PushResponse(BaseModel):
    """What the push did (see `store.push`)."""

    source: str
    rows: int
    arrived: datetime
    views_updated: list[str]
    views_pending: list[str]
    batch: int
    replayed: bool


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


# The error answers an endpoint documents in the OpenAPI schema.
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse}
                                           for status in (404, 401, 403, 410, 413, 422, 503)}


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


_REQUEST = TypeAdapter(FeaturesRequest)


def features_request(raw: bytes) -> FeaturesRequest:
    """The request body as FeaturesRequest, or a 422 naming the field (as FastAPI would)."""
    try:
        return _REQUEST.validate_json(raw)
    except ValidationError as exc:
        errors = [{"field": ".".join(["body", *(str(p) for p in e["loc"])]), "message": e["msg"]}
                  for e in exc.errors(include_url=False)]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        raise HTTPProblem(422, f"{first['field']}: {first['message']}", errors=errors) from None
