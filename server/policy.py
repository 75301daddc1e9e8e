"""Who is asking and what they may read: API keys, tags, sunsets, and how a refusal is answered.

    policy = Policy(store)
    who = policy.caller(header)                  # Caller("fraud_model", tags=None), or HTTPProblem 401
    who = policy.pusher(header)                  # the caller if its key may push, or HTTPProblem 401 / 403
    warnings, allow = policy.governed(who, ["user_profile"], headers, header)   # 403 / 410, or warnings

Keys are stored as SHA-256 ([server.keys] in featurestore.toml), compared with every configured key
in constant time, and never logged. Without keys, the consumer is the `X-Consumer` header.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from featurestore import FeatureStore
from featurestore.errors import FeatureStoreError, PushRejected, SunsetError, UnavailableError, UnknownNameError

__all__ = ["RETRY_AFTER_SECONDS", "Caller", "HTTPProblem", "Header", "Policy", "error_answer"]

RETRY_AFTER_SECONDS = 5
Header = Callable[[str], str | None]  # a request header by its lower-case name, or None


@dataclass(frozen=True)
class Caller:
    consumer: str
    tags: tuple[str, ...] | None  # the tags its key may read; None: every view
    push: bool = False  # its key may push rows into sources


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.errors = status, message, headers or {}, errors


def error_answer(exc: HTTPProblem | FeatureStoreError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An error's answer: status, JSON content, headers."""
    if isinstance(exc, HTTPProblem):
        content: dict[str, Any] = {"error": exc.message}
        if exc.errors is not None:
            content["errors"] = exc.errors
        return exc.status, content, exc.headers
    if isinstance(exc, UnavailableError):
        return 503, {"error": str(exc).split("\n")[0]}, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, PushRejected):
        return 422, {"error": str(exc), "row": exc.row, "column": exc.column}, {}
    status = 404 if isinstance(exc, UnknownNameError) else 410 if isinstance(exc, SunsetError) else 422
    return status, {"error": str(exc)}, {}


class Policy:
    """The project's [server] settings applied to one request at a time."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.settings = store.settings.server

    def caller(self, header: Header) -> Caller:
        if not self.settings.keys:
            return Caller(header("x-consumer") or "unknown", None)
        presented = header("x-api-key") or _bearer(header("authorization") or "")
        if not presented:
            raise HTTPProblem(401, "this service needs an API key: send it as X-API-Key or Authorization: Bearer",
                              {"WWW-Authenticate": "Bearer"})
        digest = hashlib.sha256(presented.encode()).hexdigest()
        found = None
        for key in self.settings.keys:  # compare with every key, in constant time each
            if hmac.compare_digest(digest, key.sha256):
                found = key
        if found is None:
            raise HTTPProblem(401, "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        return Caller(found.consumer, found.tags, found.push)

    def pusher(self, header: Header) -> Caller:
        """The caller, if its key has the push right: pushes always need a key that says so."""
        if not self.settings.keys:
            raise HTTPProblem(403, "this service takes pushes only with an API key that may push: create one with "
                                   "`featurestore key new NAME --push` and add it to [server.keys]")
        who = self.caller(header)
        if not who.push:
            raise HTTPProblem(403, f"the key of consumer '{who.consumer}' may not push rows: it reads only; create "
                                   "a key with `featurestore key new NAME --push`")
        return who

    def governed(self, who: Caller, view_names: Sequence[str], headers: dict[str, str], header: Header,
                 deprecated: bool = True) -> tuple[list[str], bool]:
        """Refuse views the key may not read or past their sunset; warn about deprecated ones.

        Returns the warnings and whether the caller may read views past their sunset.
        """
        store = self.store
        for name in view_names if who.tags is not None else ():
            view = store.views[name]
            if missing := sorted(set(view.tags) - set(who.tags)):
                raise HTTPProblem(403, f"the key of consumer '{who.consumer}' may not read view '{name}': it is "
                                       f"tagged {', '.join(missing)}")
        if not deprecated:
            return [], False
        allow = who.consumer in self.settings.allow_after_sunset or \
            (header("x-allow-deprecated") or "").strip().lower() in ("1", "true", "yes")
        warnings = store.deprecations(view_names, allow_deprecated=allow)
        sunsets = [store.views[name].deprecated.sunset for name in view_names if store.views[name].deprecated]
        if sunsets:
            headers["Deprecation"] = "true"
            headers["Sunset"] = _http_date(min(sunsets))
        return warnings, allow

    def readable(self, who: Caller) -> list[str] | None:
        """The views a caller's key may read (None: every view)."""
        if who.tags is None:
            return None
        return [name for name, view in self.store.views.items() if set(view.tags) <= set(who.tags)]


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _http_date(day: date) -> str:
    return format_datetime(datetime(day.year, day.month, day.day, tzinfo=UTC), usegmt=True)
