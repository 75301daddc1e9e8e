"""A view's version: a hash of what determines its values, not of how it is written.

    view_version(view, {"user_daily_stats": "3f9c0a…"})  →  "a41be07d52c3"

Reformatting, comments and identifier case leave it unchanged; a change of logic,
of a value-changing annotation, or of an upstream view's version changes it.
"""

from __future__ import annotations

import hashlib
import json

from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from featurestore.definitions.spec import FeatureView

__all__ = ["normalized_sql", "view_version"]


def normalized_sql(view: FeatureView) -> str:
    """The view's SQL with comments dropped, identifiers case-folded and layout canonical."""
    query = normalize_identifiers(view.query.copy(), dialect="duckdb")
    return query.sql(dialect="duckdb", comments=False)


def view_version(view: FeatureView, upstream: dict[str, str]) -> str:
    """12 hex digits of SHA-256 over the normalized SQL, value-changing annotations and upstream versions."""
    payload = {
        "sql": normalized_sql(view),
        "entity": list(view.entity),
        "timestamp": view.timestamp,
        "available_after": view.available_after.total_seconds(),
        "available_since": view.available_since.isoformat() if view.available_since else None,
        "ttl": view.ttl.total_seconds() if view.ttl is not None else None,
        "invalid": [[i.start.isoformat(), i.end.isoformat()] for i in view.invalid],
        "created": view.created,
        **({"known_at": view.known_at} if view.known_at else {}),  # absent: versions of views without it unchanged
        "windows": [[w.label, w.length.total_seconds()] for w in view.windows],
        "upstream": {name: upstream[name] for name in sorted(upstream)},
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:12]
