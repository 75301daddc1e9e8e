"""`featurestore.toml` (or `[tool.featurestore]` in pyproject.toml) → frozen settings.

    definitions = "definitions"
    [offline]
    database = ".featurestore/offline.duckdb"
    [online]
    postgres_url = ""                 # empty: embedded PostgreSQL under .featurestore/
    [sources]
    transactions = "data/transactions.parquet"
    accounts = { postgres = "public.accounts" }
    merchants = { duckdb = "merchants" }

Relative paths are relative to the project root (the folder holding the file).
`FEATURESTORE_POSTGRES_URL` overrides `postgres_url`.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from featurestore.errors import ConfigError, InvalidProjectError, Problem, did_you_mean

__all__ = [
    "CONFIG_FILE",
    "DURATION_UNITS",
    "ApiKey",
    "DuckDBSource",
    "FileSource",
    "PostgresSource",
    "ServerSettings",
    "Settings",
    "Source",
    "find_root",
    "load_settings",
    "parse_duration",
]

CONFIG_FILE = "featurestore.toml"
POSTGRES_URL_ENV = "FEATURESTORE_POSTGRES_URL"
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".csv.gz": "csv"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileSource(_Frozen):
    """Parquet or CSV files: one path or a glob, relative to the project root."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["parquet", "csv"]
    arrival: str | None = None  # the column recording when each row arrived (the store stamps pushed rows)


class PostgresSource(_Frozen):
    """A table in the configured PostgreSQL (`schema.table`, default schema `public`)."""

    kind: Literal["postgres"] = "postgres"
    schema_name: str
    table: str


class DuckDBSource(_Frozen):
    """A table in the offline DuckDB database file."""

    kind: Literal["duckdb"] = "duckdb"
    table: str


Source = Annotated[FileSource | PostgresSource | DuckDBSource, Field(discriminator="kind")]


_DURATION = re.compile(r"^(\d+)([smhdw])")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`1h30m` → 1:30:00. Units s m h d w; `0` alone is zero; nothing negative."""
    text = text.strip().lower().replace(" ", "")
    if text.startswith("-"):
        raise ValueError(f"'{text}' is negative; a duration must be zero or more")
    if text == "0":
        return timedelta(0)
    seconds, rest = 0, text
    if not rest:
        raise ValueError("the duration is empty")
    while rest:
        match = _DURATION.match(rest)
        if not match:
            raise ValueError(f"'{text}' is not a duration")
        seconds += int(match.group(1)) * DURATION_UNITS[match.group(2)]
        rest = rest[match.end():]
    return timedelta(seconds=seconds)



class ApiKey(_Frozen):
    """An API key of the lookup service, stored as the SHA-256 of the key, never the key itself."""

    consumer: str
    sha256: str
    tags: tuple[str, ...] | None = None  # the tags of views it may read; None: every view
    push: bool = False  # may push rows into sources (POST /v1/push/{source})


class ServerSettings(_Frozen):
    """The HTTP lookup service: limits, keys, and who may still read past a sunset."""

    max_entities: int = 10_000
    keys: tuple[ApiKey, ...] = ()
    allow_after_sunset: tuple[str, ...] = ()


class Settings(_Frozen):
    """Everything the store needs to know about a project; absolute paths only."""

    root: Path
    config_path: Path
    definitions: Path
    offline_database: Path
    postgres_url: str | None
    offline_cache: Literal["on_first_read", "on_second_read", "off"] = "on_second_read"
    online_lookback: timedelta = timedelta(days=1)
    on_failed_expectation: Literal["fail", "quarantine"] = "fail"
    server: ServerSettings = ServerSettings()
    sources: dict[str, Source]
    source_lines: dict[str, int] = {}

    @property
    def state_dir(self) -> Path:
        """Where the store keeps its own files (embedded PostgreSQL, temp space)."""
        return self.root / ".featurestore"

    @property
    def temp_directory(self) -> Path:
        """Where DuckDB spills what does not fit in memory; it also names the project's DuckDB (engines.duckdb.hold)."""
        return self.state_dir / "tmp"


def find_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above `start` holding a project config."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file() or _pyproject_section(folder / "pyproject.toml"):
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it; "
        f"run `featurestore init DIR` to create a project, or pass --project DIR"
    )


def load_settings(start: Path | str | None = None, *, search_parents: bool = True) -> Settings:
    """Read the project config found from `start` (default: the current folder)."""
    root = find_root(start) if search_parents else Path(start or Path.cwd()).resolve()
    path = root / CONFIG_FILE
    section_prefix = ""
    if not path.is_file():
        path, section_prefix = root / "pyproject.toml", "tool.featurestore."
        if not path.is_file():
            raise ConfigError(f"no {CONFIG_FILE} in {root}; run `featurestore init {root}` to create one")
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise InvalidProjectError([Problem(path, 1, f"not UTF-8 text: {exc.reason} at byte {exc.start}",
                                           "save the file as UTF-8", code="config")], root) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidProjectError([_toml_problem(path, exc)], root) from None
    if section_prefix:
        raw = raw.get("tool", {}).get("featurestore", {}) if isinstance(raw.get("tool"), dict) else {}
        if not isinstance(raw, dict):
            raise InvalidProjectError([Problem(path, _line_of(text, "tool", "featurestore"),
                                               "[tool.featurestore] must be a table",
                                               "write it as a [tool.featurestore] section", code="config")], root)
    return _parse(raw, root, path, text, section_prefix)


def _parse(raw: dict[str, Any], root: Path, path: Path, text: str, prefix: str) -> Settings:
    problems: list[Problem] = []

    def problem(section: str, key: str, message: str, hint: str = "") -> None:
        line = _line_of(text, prefix + section if section else prefix.rstrip("."), key)
        problems.append(Problem(path, line, message, hint, code="config"))

    allowed = {"definitions": None, "offline": {"database", "cache"},
               "online": {"postgres_url", "lookback", "on_failed_expectation"}, "sources": None,
               "server": {"max_entities", "keys", "allow_after_sunset"}}
    raw = dict(raw)
    for key, value in list(raw.items()):
        if key not in allowed:
            problem("", key, f"unknown setting '{key}'",
                    did_you_mean(key, allowed) or f"valid settings: {', '.join(allowed)}")
            continue
        keys = allowed[key]
        if (keys is not None or key == "sources") and not isinstance(value, dict):
            problem("", key, f"'{key}' must be a table ([{key}])")
            raw[key] = {}
            continue
        if keys is not None:
            for sub in value:
                if sub not in keys:
                    problem(key, sub, f"unknown setting '{key}.{sub}'",
                            did_you_mean(sub, keys) or f"valid: {', '.join(sorted(keys))}")

    definitions = _string(raw.get("definitions", "definitions"), problem, "", "definitions")
    database = _string(raw.get("offline", {}).get("database", ".featurestore/offline.duckdb"), problem,
                       "offline", "database")
    offline_cache = _string(raw.get("offline", {}).get("cache", "on_second_read"), problem, "offline", "cache")
    if offline_cache not in _CACHE_CHOICES:
        problem("offline", "cache", f"offline.cache: '{offline_cache}' is not a choice",
                "write \"on_second_read\" (a frame that reads a view a second time caches its rows), "
                "\"on_first_read\" (the first frame caches them) or \"off\"")
        offline_cache = "on_second_read"
    url = _string(raw.get("online", {}).get("postgres_url", ""), problem, "online", "postgres_url")
    url = os.environ.get(POSTGRES_URL_ENV) or url or None
    lookback = timedelta(days=1)
    try:
        lookback = parse_duration(_string(raw.get("online", {}).get("lookback", "1d"), problem, "online", "lookback"))
    except ValueError as exc:
        problem("online", "lookback", f"online.lookback: {exc}",
                "write a duration: an integer and a unit (s, m, h, d, w), e.g. `1d` or `6h`")

    on_failed = _string(raw.get("online", {}).get("on_failed_expectation", "fail"), problem, "online",
                        "on_failed_expectation")
    if on_failed not in ("fail", "quarantine"):
        problem("online", "on_failed_expectation", f"online.on_failed_expectation: '{on_failed}' is not a choice",
                "write \"fail\" (the run stops, nothing is written) or \"quarantine\" (failing rows are set aside)")
        on_failed = "fail"

    server = _server(raw.get("server", {}), problem)

    sources: dict[str, Source] = {}
    source_lines: dict[str, int] = {}
    raw_sources = raw.get("sources", {})
    for name, spec in raw_sources.items():
        source_lines[name] = _line_of(text, prefix + "sources", name)
        if not NAME.match(name):
            problem("sources", name, f"source name '{name}' is not a lowercase SQL identifier",
                    "use lowercase letters, digits and underscores, starting with a letter")
            continue
        try:
            sources[name] = _source(name, spec)
        except ValueError as exc:
            problem("sources", name, str(exc).split("\n")[0], _SOURCE_FORMS)

    if problems:
        raise InvalidProjectError(problems, root)
    return Settings(
        root=root,
        config_path=path,
        definitions=(root / definitions).resolve(),
        offline_database=(root / database).resolve(),
        offline_cache=offline_cache,
        postgres_url=url,
        online_lookback=lookback,
        on_failed_expectation=on_failed,
        server=server,
        sources=sources,
        source_lines=source_lines,
    )


_CACHE_CHOICES = ("on_second_read", "on_first_read", "off")

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SOURCE_FORMS = (
    'write `name = "data/file.parquet"` (a Parquet or CSV file or glob), '
    '`name = { path = "data/x.txt", format = "csv", arrival = "ingested_at" }`, '
    '`name = { postgres = "schema.table" }` or `name = { duckdb = "table" }`'
)


def _source(name: str, spec: object) -> Source:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"source '{name}' must be a path string or an inline table")
    keys = set(spec)
    if keys == {"postgres"} and isinstance(spec["postgres"], str):
        schema, _, table = spec["postgres"].rpartition(".")
        return PostgresSource(schema_name=schema or "public", table=table)
    if keys == {"duckdb"} and isinstance(spec["duckdb"], str):
        return DuckDBSource(table=spec["duckdb"])
    if "path" in keys and keys <= {"path", "format", "arrival"} and isinstance(spec["path"], str):
        fmt = spec.get("format") or _format_of(spec["path"])
        if fmt not in ("parquet", "csv"):
            raise ValueError(
                f"source '{name}': cannot tell the format of '{spec['path']}' "
                f"(format must be parquet or csv)"
            )
        arrival = spec.get("arrival")
        if arrival is not None and not (isinstance(arrival, str) and _COLUMN.match(arrival)):
            raise ValueError(f"source '{name}': arrival must name a column of the source, e.g. arrival = "
                             f"\"ingested_at\"")
        return FileSource(path=spec["path"], format=fmt, arrival=arrival)
    raise ValueError(f"source '{name}' has unexpected keys {sorted(keys)}")


def _format_of(path: str) -> str | None:
    lowered = path.lower()
    for suffix, fmt in _FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def _server(raw: dict[str, Any], problem: Any) -> ServerSettings:
    """[server] max_entities = N, allow_after_sunset = [consumers], and [server.keys.<consumer>] tables
    with `sha256 = "<hex digest of the key>"`, optional `tags = [...]` and `push = true`."""
    limit = raw.get("max_entities", 10_000)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        problem("server", "max_entities", "server.max_entities must be a positive integer")
        limit = 10_000
    allowed = raw.get("allow_after_sunset", [])
    if not isinstance(allowed, list) or not all(isinstance(c, str) for c in allowed):
        problem("server", "allow_after_sunset", "server.allow_after_sunset must be a list of consumer names")
        allowed = []
    keys = []
    table = raw.get("keys", {})
    if not isinstance(table, dict):
        problem("server", "keys", "server.keys must be a table: [server.keys.<consumer>]")
        table = {}
    for consumer, spec in table.items():
        digest = spec.get("sha256") if isinstance(spec, dict) else None
        tags = spec.get("tags") if isinstance(spec, dict) else None
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            problem("server.keys", consumer, f"key of consumer '{consumer}' needs sha256 = \"<64 hex digits>\"",
                    "create a key with `featurestore key new <consumer>`; it prints the lines to paste")
            continue
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            problem("server.keys", consumer, f"tags of key '{consumer}' must be a list of strings")
            continue
        pushes = spec.get("push", False)
        if not isinstance(pushes, bool):
            problem("server.keys", consumer, f"push of key '{consumer}' must be true or false")
            continue
        keys.append(ApiKey(consumer=consumer, sha256=digest, tags=None if tags is None else tuple(tags), push=pushes))
    return ServerSettings(max_entities=limit, keys=tuple(keys), allow_after_sunset=tuple(allowed))


def _string(value: object, problem: Any, section: str, key: str) -> str:
    if isinstance(value, str):
        return value
    problem(section, key, f"'{key}' must be a string, not {type(value).__name__}")
    return ""


def _line_of(text: str, section: str, key: str) -> int:
    """The line of `key = …` inside `[section]` (1 when it cannot be found)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[([^\[\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            if f"{section}.{key}".lstrip(".") == current:
                return number
            continue
        if current == section and re.match(rf'^"?{re.escape(key)}"?\s*[=.]', stripped):
            return number
    return 1


def _toml_problem(path: Path, exc: tomllib.TOMLDecodeError) -> Problem:
    line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
    return Problem(path, line, f"not valid TOML: {getattr(exc, 'msg', str(exc))}",
                   "fix the syntax; see https://toml.io", code="config")


def _line_from_message(message: str) -> int:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


def _pyproject_section(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        return "featurestore" in tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
    except (tomllib.TOMLDecodeError, OSError):
        return False
