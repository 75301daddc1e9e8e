"""Load a whole project: config, definitions, source schemas, and resolved views.

`validate(settings)` collects every problem of the project in one run;
`load_project(settings)` returns the resolved project or raises with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError

from featurestore.compiler.checks import check_query
from featurestore.compiler.qualify import qualify_view
from featurestore.compiler.version import view_version
from featurestore.config import DuckDBSource, FileSource, PostgresSource, Settings
from featurestore.definitions.graph import build_graph
from featurestore.definitions.loader import line_of, load_definitions
from featurestore.definitions.spec import Column, FeatureView, build_view
from featurestore.engines import duckdb as duck
from featurestore.engines import postgres
from featurestore.errors import FeatureStoreError, InvalidProjectError, Problem, did_you_mean

__all__ = ["Project", "load_project", "validate"]


@dataclass(frozen=True)
class Project:
    """A project's settings, its source schemas and its views, resolved (dependencies first)."""

    settings: Settings
    views: dict[str, FeatureView]
    sources: dict[str, tuple[Column, ...]]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


def load_project(settings: Settings) -> Project:
    """The resolved project; raises InvalidProjectError listing every error."""
    project = validate(settings)
    if project.errors:
        raise InvalidProjectError(project.problems, settings.root)
    return project


def validate(settings: Settings) -> Project:
    """Check everything, reporting every problem; views that resolved are kept."""
    definitions, problems = load_definitions(settings.definitions)
    views: dict[str, FeatureView] = {}
    for definition in definitions:
        view, found = build_view(definition)
        problems += found
        if view is not None:
            views[view.name] = view
        problems += check_query(view or definition)
    broken = {d.name for d in definitions} - set(views)

    with duck.scratch(settings.temp_directory, spill=False) as connection:
        return _bind(settings, views, broken, problems, connection)


def _bind(settings: Settings, views: dict[str, FeatureView], broken: set[str],
          problems: list[Problem], connection: Any) -> Project:
    """Read the sources' schemas and bind each view, in dependency order, in `connection`."""
    schemas, found = _source_schemas(settings, connection)
    problems += found
    graph, found = build_graph(views, set(settings.sources), broken)
    problems += found
    # A view is bound only when all it reads is sound; its own problems are already reported.
    unsound = broken | {s for s in settings.sources if s not in schemas} | {
        p.path.stem for p in problems if p.severity == "error" and p.code in ("unknown-table", "cycle", "name-clash",
                                                                              "reads-window-view")}
    resolved: dict[str, FeatureView] = {}
    binder = duck.Binder(connection)
    for name, columns in schemas.items():
        binder.add_table(name, list(columns))
    for name in graph.order:
        view = views[name].model_copy(update={"reads": graph.reads[name]})
        if name in unsound or any(r in unsound or (r in views and r not in resolved) for r in view.reads):
            unsound.add(name)
            continue
        resolved_view, found = _resolve(view, binder, schemas, resolved)
        problems += found
        if resolved_view is None:
            unsound.add(name)
        else:
            resolved[name] = resolved_view
    problems += _arrival_warnings(settings, resolved)
    ordered = sorted(problems, key=lambda p: (str(p.path), p.line, p.column))
    return Project(settings=settings, views=resolved, sources=schemas, problems=tuple(ordered))


def _arrival_warnings(settings: Settings, views: dict[str, FeatureView]) -> list[Problem]:
    """A view reading a source that records arrivals, without declaring `known_at`, sees late rows as
    known when they were due: training would see rows no lookup could have served."""
    problems = []
    for view in views.values():
        for name in view.reads:
            source = settings.sources.get(name)
            if isinstance(source, FileSource) and source.arrival and not view.known_at:
                column = source.arrival
                problems.append(Problem(
                    view.path, 1, f"view '{view.name}' reads source '{name}', which records when rows arrive "
                    f"('{column}'), but does not declare known_at, so a late row counts as known when it was due",
                    f"add `-- known_at: {column}`" + ("" if view.windows else f" and select {column}"),
                    code="missing-known-at", severity="warning"))
    return problems


def _resolve(view: FeatureView, binder: duck.Binder,
             sources: dict[str, tuple[Column, ...]], resolved: dict[str, FeatureView]
             ) -> tuple[FeatureView | None, list[Problem]]:
    path, sql_line = view.path, line_of(view.query)
    try:
        columns = binder.describe(view.text)
    except duck.BindError as exc:
        return None, [Problem(path, exc.line or sql_line, exc.message, exc.hint, code="sql")]
    problems: list[Problem] = []
    names = [c.name for c in columns]
    output = {c.name: c for c in columns}
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(path, _projection_line(view, name, sql_line),
                                f"output column '{name}' appears more than once",
                                "give each output column its own name with AS", code="duplicate-column"))
    for column in columns:
        if column.type.upper() == "INTERVAL":
            problems.append(Problem(path, _projection_line(view, column.name, sql_line, occurrence=0),
                                    f"output column '{column.name}' is an INTERVAL, which training frames (polars) "
                                    "and lookups cannot hold exactly",
                                    f"give it as a number, e.g. epoch({column.name}) AS {column.name}_seconds",
                                    code="column-type"))
    listing = ", ".join(names)
    for key in view.entity:
        if key not in output:
            problems.append(Problem(path, view.line("entity"), f"entity key '{key}' is not an output column of the SQL",
                                    f"select it, or fix the annotation (output columns: {listing})",
                                    code="missing-column"))
    event_time_type = arrival_type = ""
    if view.windows:
        found, event_time_type = _check_source_time(view, binder, "timestamp")
        problems += found
        if view.known_at:
            found, arrival_type = _check_source_time(view, binder, "known_at")
            problems += found
    else:
        for role in ("timestamp", "created", "known_at"):
            column = getattr(view, role)
            if column is None:
                continue
            if column not in output:
                problems.append(Problem(path, view.line(role),
                                        f"{role} column '{column}' is not an output column of the SQL",
                                        f"select it, or fix the annotation (output columns: {listing})",
                                        code="missing-column"))
            elif role != "created" and not duck.is_time_type(output[column].type):
                problems.append(Problem(path, view.line(role),
                                        f"{role} column '{column}' has type {output[column].type}",
                                        f"make it a TIMESTAMP, TIMESTAMPTZ or DATE, e.g. CAST({column} AS TIMESTAMPTZ)",
                                        code="timestamp-type"))
    if problems:
        return None, problems
    if not view.windows:
        try:
            binder.add_view(view.name, view.text)
        except duck.BindError as exc:
            return None, [Problem(path, exc.line or sql_line, exc.message, exc.hint, code="sql")]
    schema = {name: {c.name: c.type for c in cols} for name, cols in sources.items()}
    schema.update({name: {c.name: c.type for c in v.columns} for name, v in resolved.items()})
    try:
        qualified = qualify_view(view, schema)
    except (OptimizeError, ValueError) as exc:
        return None, [Problem(path, sql_line, f"cannot resolve the columns: {exc}", "", code="sql")]
    version = view_version(view, {name: resolved[name].version for name in view.reads if name in resolved})
    view = view.model_copy(update={"columns": tuple(columns), "qualified": qualified, "version": version,
                                   "event_time_type": event_time_type, "arrival_type": arrival_type})
    problems = _expectation_problems(view)
    return (None, problems) if problems else (view, [])


def _expectation_problems(view: FeatureView) -> list[Problem]:
    """Each `expect` condition may name only the view's features and entity keys (what materialize checks)."""
    known = [*view.entity, *(f.name for f in view.features)]
    problems = []
    for condition in view.expect:
        for column in sqlglot.parse_one(condition, read="duckdb").find_all(exp.Column):
            if column.name not in known:
                hint = did_you_mean(column.name, known) or f"name one of the view's features: {', '.join(known)}"
                problems.append(Problem(view.path, view.line("expect"), f"expect: '{column.name}' in '{condition}' is "
                                        f"not a feature of the view", hint, code="missing-column"))
    return problems


def _check_source_time(view: FeatureView, binder: duck.Binder, role: str) -> tuple[list[Problem], str]:
    """A window view's `timestamp` (or `known_at`) names a time column of the rows it aggregates; and its type."""
    column = getattr(view, role)
    probe = view.query.copy()
    assert isinstance(probe, exp.Select)
    for clause in ("group", "having", "qualify", "order", "limit", "distinct"):
        probe.set(clause, None)
    probe.set("expressions", [exp.column(column, quoted=True)])
    what = "event-time" if role == "timestamp" else "arrival-time"
    try:
        columns = binder.describe(probe.sql(dialect="duckdb"))
    except duck.BindError:
        return [Problem(view.path, view.line(role),
                        f"{role} '{column}' is not a column of the table this window view aggregates",
                        f"name the {what} column of the source rows "
                        f"(a window view's {role} is not an output column)",
                        code="missing-column")], ""
    if not duck.is_time_type(columns[0].type):
        return [Problem(view.path, view.line(role),
                        f"{role} column '{column}' has type {columns[0].type}",
                        "name a TIMESTAMP, TIMESTAMPTZ or DATE column", code="timestamp-type")], ""
    return [], columns[0].type


def _projection_line(view: FeatureView, name: str, default: int, occurrence: int = 1) -> int:
    """The line of the output column `name` (its second occurrence by default: a duplicate)."""
    if isinstance(view.query, exp.Select):
        matches = [p for p in view.query.expressions if p.alias_or_name == name]
        if len(matches) > occurrence:
            return line_of(matches[occurrence], default)
    return default


def _source_schemas(settings: Settings, connection: Any) -> tuple[dict[str, tuple[Column, ...]], list[Problem]]:
    schemas: dict[str, tuple[Column, ...]] = {}
    problems: list[Problem] = []

    def problem(name: str, message: str, hint: str) -> None:
        problems.append(Problem(settings.config_path, settings.source_lines.get(name, 1), f"source '{name}': {message}",
                                hint, code="source"))

    pg_tables: dict[str, tuple[str, str]] = {}
    for name, source in settings.sources.items():
        if isinstance(source, PostgresSource):
            pg_tables[name] = (source.schema_name, source.table)
            continue
        try:
            if isinstance(source, FileSource):
                columns = duck.describe_files(connection, str(settings.root / source.path), source.format)
                types = {c.name: c.type for c in columns}
                if source.arrival is not None and not duck.is_time_type(types.get(source.arrival, "")):
                    problem(name, f"arrival column '{source.arrival}' " + (
                        f"has type {types[source.arrival]}" if source.arrival in types else "is not a column"),
                        f"name a TIMESTAMP or TIMESTAMPTZ column of the source (its columns: {', '.join(types)})")
                    continue
            else:
                assert isinstance(source, DuckDBSource)
                columns = duck.describe_duckdb_table(settings.offline_database, source.table)
        except duck.BindError as exc:
            problem(name, exc.message, exc.hint or "check the path, relative to the project root")
            continue
        schemas[name] = tuple(columns)
    if pg_tables:
        try:
            url = postgres.resolve_url(settings.postgres_url, settings.state_dir)
            found = postgres.describe_tables(url, list(pg_tables.values()))
        except FeatureStoreError as exc:
            for name in pg_tables:
                problem(name, f"cannot read its schema: {exc}", "start PostgreSQL or fix the URL")
            return schemas, problems
        for name, key in pg_tables.items():
            if key in found:
                schemas[name] = tuple(found[key])
            else:
                problem(name, f"no table {key[0]}.{key[1]} in PostgreSQL", "create it, or fix the table name")
    return schemas, problems

