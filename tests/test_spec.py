"""Annotation values: durations, instants and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurestore.definitions.spec import format_duration, parse_duration, parse_instant


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0), ("30s", 30), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("1w", 604800), ("1d 2h", 93600),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "2 hours", "1.5h", "-1h", "2y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**8))
def test_format_parses_back(seconds: int) -> None:
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


def test_instants_without_zone_are_utc() -> None:
    assert parse_instant("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:04:05+02:00") == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert parse_instant("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
