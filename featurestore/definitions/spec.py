"""Frozen models of a project's views, validated from definition headers. No I/O.

`build_view` turns a loaded `Definition` into a `FeatureView` or into located
problems (every one of them, not just the first).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlglot
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp

from featurestore.config import DURATION_UNITS, parse_duration
from featurestore.definitions.loader import Definition
from featurestore.errors import Problem, closest

__all__ = [
    "ANNOTATIONS",
    "INTEGER_TYPES",
    "Column",
    "Deprecation",
    "Feature",
    "FeatureView",
    "Interval",
    "Window",
    "build_view",
    "catalog_entry",
    "format_duration",
    "parse_duration",
    "parse_instant",
]

ANNOTATIONS: dict[str, str] = {
    "entity": "comma-separated entity key columns, e.g. `user_id` or `merchant_id, country`",
    "timestamp": "the time column (snapshot view: an output column; window view: the source's event time)",
    "owner": "who answers for this view, e.g. `fraud-ml@example.com`",
    "description": "one line saying what the view holds",
    "available_after": "availability lag, a duration such as `2h` or `1h30m`",
    "available_since": "first instant any value exists, `2024-01-01` or `2024-01-01T06:00:00Z`",
    "ttl": "values older than this are missing, a duration such as `3d`",
    "invalid": "known-bad periods, `START..END` ISO 8601 intervals, comma-separated",
    "created": "tie-break column among rows with equal keys and timestamp",
    "known_at": "arrival column: a row is known at the later of its timestamp plus the lag and this time",
    "windows": "window lengths, comma-separated durations such as `3h, 1d, 7d`",
    "tags": "comma-separated tags, e.g. `pii`",
    "deprecated": "`YYYY-MM-DD` sunset date, optionally followed by a hint such as `use cards_added_v2`",
    "consumers": "declared consumers, comma-separated",
    "expect": "checks on the values materialize writes, comma-separated conditions such as "
              "`amount_7d >= 0, txn_count not null`",
}
REQUIRED = ("entity", "timestamp", "owner")
_EXAMPLES = {
    "entity": "-- entity: user_id",
    "timestamp": "-- timestamp: event_ts",
    "owner": "-- owner: team@example.com",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG = re.compile(r"^[A-Za-z0-9_.:@/+-]+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Window(_Frozen):
    """One window length; `label` is its suffix in feature names (`3h`, `1h30m`)."""

    label: str
    length: timedelta


class Interval(_Frozen):
    """A closed interval of instants, UTC."""

    start: datetime
    end: datetime


class Deprecation(_Frozen):
    sunset: date
    hint: str = ""


INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                           "UINTEGER", "UBIGINT"})


class Column(_Frozen):
    """An output column and its DuckDB type."""

    name: str
    type: str


class Feature(_Frozen):
    """One feature: a snapshot view's column, or an aggregate over one window."""

    view: str
    name: str
    type: str
    column: str
    window: Window | None = None

    @property
    def qualified(self) -> str:
        return f"{self.view}.{self.name}"


class FeatureView(_Frozen):
    """A validated definition. `columns`, `event_time_type` and `version` are filled by the resolver."""

    name: str
    path: Path
    entity: tuple[str, ...]
    timestamp: str
    owner: str
    description: str = ""
    available_after: timedelta = timedelta(0)
    available_since: datetime | None = None
    ttl: timedelta | None = None
    invalid: tuple[Interval, ...] = ()
    created: str | None = None
    known_at: str | None = None  # the arrival column (snapshot view: an output column; window view: a source column)
    windows: tuple[Window, ...] = ()
    tags: tuple[str, ...] = ()
    deprecated: Deprecation | None = None
    consumers: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()  # conditions in DuckDB SQL over the view's features (see `_expectations`)
    query: exp.Query = Field(repr=False)
    text: str = Field(default="", repr=False)
    lines: dict[str, int] = {}
    columns: tuple[Column, ...] = ()
    event_time_type: str = ""  # a window view: the DuckDB type of its source rows' `timestamp`
    arrival_type: str = ""  # a window view with `known_at`: the DuckDB type of its source rows' arrival column
    reads: tuple[str, ...] = ()
    qualified: exp.Query | None = Field(default=None, repr=False)
    version: str = ""

    @property
    def kind(self) -> Literal["snapshot", "window"]:
        return "window" if self.windows else "snapshot"

    @property
    def features(self) -> tuple[Feature, ...]:
        """The view's features, in output order (keys, timestamp and tie-break excluded)."""
        skip = {*self.entity, self.timestamp, self.created, self.known_at}
        values = [c for c in self.columns if c.name not in skip]
        if not self.windows:
            return tuple(Feature(view=self.name, name=c.name, type=c.type, column=c.name) for c in values)
        return tuple(
            Feature(view=self.name, name=f"{c.name}_{w.label}", type=c.type, column=c.name, window=w)
            for c in values for w in self.windows
        )

    def line(self, key: str) -> int:
        return self.lines.get(key, 1)

    @field_validator("entity", mode="before")
    @classmethod
    def _entity(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        keys = _split(value)
        if not keys:
            raise ValueError("entity names no key column")
        for key in keys:
            if not _IDENTIFIER.match(key):
                raise ValueError(f"entity key '{key}' is not a column name")
        if len(set(keys)) != len(keys):
            raise ValueError(f"entity repeats a key column: {value}")
        return tuple(keys)

    @field_validator("timestamp", "created", "known_at", mode="before")
    @classmethod
    def _column_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not _IDENTIFIER.match(value.strip()):
            raise ValueError(f"'{value}' is not a column name")
        return value.strip() if isinstance(value, str) else value

    @field_validator("known_at")
    @classmethod
    def _arrival(cls, value: Any, info: Any) -> Any:
        taken = {*info.data.get("entity", ()), info.data.get("timestamp")}  # (the tie-break may be the arrival)
        if value is not None and value in taken:
            raise ValueError(f"'{value}' is also the view's key or timestamp; name the column that records when "
                             "each row arrived")
        return value

    @field_validator("owner", mode="before")
    @classmethod
    def _owner(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("owner is empty")
        return value

    @field_validator("available_after", "ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        length = parse_duration(value)
        if info.field_name == "ttl" and length <= timedelta(0):
            raise ValueError("ttl must be longer than zero")
        return length

    @field_validator("available_since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        return parse_instant(value) if isinstance(value, str) else value

    @field_validator("invalid", mode="before")
    @classmethod
    def _invalid(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        intervals = []
        for part in _split(value):
            start, sep, end = part.partition("..")
            if not sep:
                raise ValueError(f"'{part}' is not an interval; write START..END, "
                                 "e.g. 2024-03-01..2024-03-02T12:00:00Z")
            interval = Interval(start=parse_instant(start), end=parse_instant(end))
            if interval.end < interval.start:
                raise ValueError(f"interval '{part}' ends before it starts")
            intervals.append(interval)
        if not intervals:
            raise ValueError("invalid names no interval")
        return tuple(intervals)

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        windows = []
        for part in _split(value):
            length = parse_duration(part)
            if length <= timedelta(0):
                raise ValueError(f"window '{part}' must be longer than zero")
            windows.append(Window(label=part.lower().replace(" ", ""), length=length))
        if not windows:
            raise ValueError("windows names no window length")
        lengths = [w.length for w in windows]
        if len(set(lengths)) != len(lengths):
            raise ValueError(f"windows repeats a length: {value}")
        return tuple(windows)

    @field_validator("tags", "consumers", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        names = _split(value)
        for name in names:
            if not _TAG.match(name):
                raise ValueError(f"'{name}' may hold only letters, digits and _ . : @ / + -")
        return tuple(dict.fromkeys(names))

    @field_validator("expect", mode="before")
    @classmethod
    def _expectations(cls, value: Any) -> Any:
        """Conditions a row's features must meet: SQL, with `x not null` short for `x IS NOT NULL`.
        A condition that is NULL (a NULL value compared) passes, as in a CHECK constraint."""
        if not isinstance(value, str):
            return value
        found = []
        for part in _split_outside_parentheses(value):
            text = re.sub(r"^([A-Za-z_][A-Za-z0-9_]*)\s+not\s+null$", r"\1 IS NOT NULL", part.strip(), flags=re.I)
            try:
                parsed = sqlglot.parse(text, read="duckdb")
            except sqlglot.errors.SqlglotError:
                raise ValueError(f"'{part.strip()}' is not an SQL condition") from None
            condition = parsed[0] if len(parsed) == 1 else None
            if condition is None or isinstance(condition, (exp.Query, exp.Column, exp.Literal, exp.Block,
                                                           exp.Command)) or condition.find(
                    exp.Subquery, exp.Select, exp.AggFunc, exp.Window):
                raise ValueError(f"'{part.strip()}' must be one condition on one row's features (no queries, "
                                 "statements, aggregates or window functions)")
            # Written again from the tree: what runs is exactly what was checked (comments dropped).
            found.append(condition.sql(dialect="duckdb", comments=False))
        if not found:
            raise ValueError("expect names no condition")
        return tuple(found)

    @field_validator("deprecated", mode="before")
    @classmethod
    def _deprecated(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        day, _, hint = value.strip().partition(" ")
        try:
            sunset = date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"'{day}' is not a date; write YYYY-MM-DD, optionally followed by a hint") from None
        return Deprecation(sunset=sunset, hint=hint.strip())

    @model_validator(mode="after")
    def _consistent(self) -> FeatureView:
        if self.timestamp in self.entity:
            raise ValueError(f"timestamp '{self.timestamp}' is also an entity key")
        if self.windows and self.created:
            raise ValueError("created (a tie-break between rows) has no meaning for a window view; remove it")
        if self.windows and self.ttl is not None:
            raise ValueError("ttl has no meaning for a window view: the window already bounds the age; remove it")
        return self


def build_view(definition: Definition) -> tuple[FeatureView | None, list[Problem]]:
    """Validate a definition's header into a FeatureView; every problem is reported."""
    path = definition.path
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key, annotation in definition.annotations.items():
        if key in ANNOTATIONS:
            values[key] = annotation.value
            continue
        match = closest(key.lower(), ANNOTATIONS)
        problems.append(Problem(
            path, annotation.line, f"unknown annotation '{key}'",
            f"did you mean '{match}'?" if match else f"valid annotations: {', '.join(ANNOTATIONS)}",
            code="unknown-annotation"))
    for line, text in definition.comments:
        match = re.match(r"([A-Za-z_]+)\s*(:?)", text)
        word = match.group(1).lower() if match else ""
        if word in ANNOTATIONS and word not in definition.annotations:
            problem = (f"this comment looks like the annotation '{word}', but keys are lowercase"
                       if match and match.group(2)
                       else f"this comment looks like the annotation '{word}' without its colon")
            problems.append(Problem(path, line, problem, f"write `-- {word}: …`", code="annotation-syntax",
                                    severity="warning"))
    late = re.search(r"^\s*--\s*(entity|timestamp|owner)\s*:", definition.text, re.MULTILINE)
    for key in REQUIRED:
        if key not in definition.annotations:
            where = (" at the top of the file: annotations after the first SQL line are ordinary comments"
                     if late and not definition.annotations else f" to the header ({ANNOTATIONS[key]})")
            problems.append(Problem(path, 1, f"missing required annotation '{key}'",
                                    f"add `{_EXAMPLES[key]}`{where}", code="missing-annotation"))
    if definition.query is None:
        return None, problems
    lines = {key: a.line for key, a in definition.annotations.items()}
    try:
        view = FeatureView.model_validate({
            **values, "name": definition.name, "path": path, "query": definition.query, "text": definition.text,
            "lines": lines,
        })
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            if error["type"] == "missing":
                continue  # reported above, with an example
            message = str(error.get("ctx", {}).get("error", error["msg"]))
            line = lines.get(field, max(lines.get("windows", 1), 1))
            problems.append(Problem(path, line, f"{field or 'header'}: {message}" if field else message,
                                    _HINTS.get(field, ANNOTATIONS.get(field, "")), code="bad-annotation"))
        return None, problems
    if any(p.severity == "error" for p in problems):
        return None, problems
    return view, problems


_HINTS = {
    "available_after": "write a duration: an integer and a unit (s, m, h, d, w), combinable: `2h`, `1h30m`, `0`",
    "ttl": "write a duration: an integer and a unit (s, m, h, d, w), combinable: `3d`, `1d12h`",
    "windows": "write durations separated by commas: `3h, 1d, 7d`",
    "available_since": "write an ISO 8601 date or instant: `2024-01-01` or `2024-01-01T06:00:00Z`",
    "known_at": "name the timestamp column that records when each row arrived, e.g. `-- known_at: ingested_at`",
    "invalid": "write START..END intervals separated by commas: `2024-03-01..2024-03-02T12:00:00Z`",
    "deprecated": "write `YYYY-MM-DD` then an optional hint: `2026-12-31 use cards_added_v2`",
    "expect": "write SQL conditions on the view's features separated by commas: `amount >= 0, txn_count not null`",
}


def format_duration(length: timedelta) -> str:
    """The shortest label for a duration: 5400 s → `1h30m`, 7 days → `7d`."""
    seconds = int(length.total_seconds())
    if seconds == 0:
        return "0s"
    if seconds % DURATION_UNITS["d"] == 0:
        return f"{seconds // DURATION_UNITS['d']}d"
    parts = []
    for unit in "dhms":
        count, seconds = divmod(seconds, DURATION_UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def catalog_entry(view: FeatureView, root: Path) -> dict[str, Any]:
    """A view as plain JSON data: what the catalog, the registry and the HTTP service show of it."""
    return {
        "view": view.name, "kind": view.kind, "entity": list(view.entity), "timestamp": view.timestamp,
        "owner": view.owner, "description": view.description, "version": view.version, "tags": list(view.tags),
        "path": (view.path.relative_to(root) if view.path.is_relative_to(root) else view.path).as_posix(),
        "deprecated": None if view.deprecated is None else {"sunset": view.deprecated.sunset.isoformat(),
                                                            "hint": view.deprecated.hint},
        "consumers": list(view.consumers),
        "available_after": format_duration(view.available_after),
        "available_since": view.available_since.isoformat() if view.available_since else None,
        "ttl": format_duration(view.ttl) if view.ttl is not None else None,
        "invalid": [[i.start.isoformat(), i.end.isoformat()] for i in view.invalid],
        "created": view.created, "known_at": view.known_at, "windows": [w.label for w in view.windows],
        "reads": list(view.reads),
        "features": [{"name": f.name, "type": f.type} for f in view.features],
    }


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or instant; without a time zone it is UTC."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an ISO 8601 date or instant "
                         "(e.g. 2024-01-01 or 2024-01-01T06:00:00Z)") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _split_outside_parentheses(value: str) -> list[str]:
    """Parts between commas that are not inside parentheses or quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
