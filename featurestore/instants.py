"""Instants as the store takes them from users: a datetime, naive meaning UTC.

    as_utc(datetime(2024, 1, 1, 12))              → 2024-01-01 12:00:00+00:00
    as_utc(datetime(2024, 1, 1, 13, tzinfo=CET))  → 2024-01-01 12:00:00+00:00
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from featurestore.errors import BadRequestError

__all__ = ["as_utc"]


def as_utc(value: Any) -> datetime:
    """`value` in UTC; a naive datetime is read as UTC. BadRequestError for anything but a datetime."""
    if not isinstance(value, datetime):
        raise BadRequestError(f"expected a datetime, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
