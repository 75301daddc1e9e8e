"""Views and sources as a graph, from the tables each view's SQL reads."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass

from sqlglot import exp

from featurestore.definitions.loader import column_of, line_of
from featurestore.definitions.spec import FeatureView
from featurestore.errors import Problem, did_you_mean

__all__ = ["Graph", "build_graph", "table_references"]


@dataclass(frozen=True)
class Graph:
    """`reads[v]`: the sources and views view `v` reads; `order`: views, dependencies first."""

    reads: dict[str, tuple[str, ...]]
    order: tuple[str, ...]


def table_references(query: exp.Query) -> list[exp.Table]:
    """The named tables a query reads (scope by scope, so a CTE hides a name only where it is visible)."""
    try:
        from sqlglot.optimizer.scope import traverse_scope

        tables = [source for scope in traverse_scope(query) for source in scope.sources.values()
                  if isinstance(source, exp.Table)]
    except Exception:  # sqlglot cannot scope every DuckDB construct; fall back to names
        ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
        tables = [t for t in query.find_all(exp.Table) if t.args.get("db") or t.name.lower() not in ctes]
    # Table functions such as read_parquet(…) are no names; checks.py reports them.
    return [t for t in dict.fromkeys(tables) if isinstance(t.this, exp.Identifier)]


def build_graph(views: dict[str, FeatureView], sources: set[str], broken: set[str] = frozenset()
                ) -> tuple[Graph, list[Problem]]:
    """Resolve every table reference to a source or view; report unknown ones and cycles.

    `broken` names views whose definitions failed: reading them is not reported again.
    """
    problems: list[Problem] = []
    known = set(sources) | set(views) | set(broken)
    reads: dict[str, tuple[str, ...]] = {}
    for name, view in views.items():
        if name in sources:
            problems.append(Problem(view.path, 1, f"view '{name}' has the name of a source",
                                    "rename the file, or the source in featurestore.toml; names must be unique",
                                    code="name-clash"))
        found: list[str] = []
        for table in table_references(view.query):
            where = dict(path=view.path, line=line_of(table), column=column_of(table))
            if table.args.get("db") or table.args.get("catalog"):
                problems.append(Problem(**where, message=f"'{table.sql(dialect='duckdb')}' is qualified with a schema",
                                        hint=f"read sources and views by their bare name, e.g. `{table.name}`",
                                        code="unknown-table"))
                continue
            target = table.name.lower()
            if target not in known:
                problems.append(Problem(**where, message=f"'{table.name}' is neither a source nor a view",
                                        hint=did_you_mean(target, known)
                                        or ("declare it under [sources] in featurestore.toml, "
                                            "or add a view of that name"),
                                        code="unknown-table"))
                continue
            if target in views and views[target].windows:
                problems.append(Problem(**where, message=f"'{target}' is a window view, which has no rows to read",
                                        hint="read the source it aggregates instead", code="reads-window-view"))
            if target not in found:
                found.append(target)
        reads[name] = tuple(found)

    edges = {v: [r for r in reads[v] if r in views] for v in views}
    sorter = graphlib.TopologicalSorter(edges)
    try:
        order = tuple(sorter.static_order())
    except graphlib.CycleError:
        order = _order_around_cycles(edges)
        for name in views:
            cycle = _cycle_through(name, edges)
            if cycle:
                problems.append(Problem(views[name].path, line_of(views[name].query),
                                        f"views read each other in a cycle: {' → '.join(cycle)}",
                                        "break the cycle: a view may read only views that do not read it back",
                                        code="cycle"))
    return Graph(reads=reads, order=order), problems


def _order_around_cycles(edges: dict[str, list[str]]) -> tuple[str, ...]:
    """Dependencies first for every view not on or behind a cycle; the rest after, in any order."""
    done: list[str] = []
    remaining = dict(edges)
    while True:
        ready = [v for v, deps in remaining.items() if all(d in done for d in deps)]
        if not ready:
            break
        for view in ready:
            done.append(view)
            del remaining[view]
    return (*done, *remaining)


def _cycle_through(start: str, edges: dict[str, list[str]]) -> list[str]:
    """A path start → … → start, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, []):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []
