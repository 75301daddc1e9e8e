"""Views and sources as a graph, from the tables each view's SQL reads."""

from __future__ import annotations

import graphlib
from dataclasses import dataclass

from sqlglot import exp

from featurestore.errors import Problem, did_you_mean
from featurestore.loader import column_of, line_of
from featurestore.spec import FeatureView

__all__ = ["Graph", "build_graph", "table_references"]


@dataclass(frozen=True)
class Graph:
    """`reads[v]`: the sources and views view `v` reads; `order`: views, dependencies first."""

    reads: dict[str, tuple[str, ...]]
    order: tuple[str, ...]


def table_references(query: exp.Query) -> list[exp.Table]:
    """The named tables a query reads, CTEs and table functions excluded."""
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    tables = []
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function such as read_parquet(…); checks.py reports it
        if not table.args.get("db") and table.name.lower() in ctes:
            continue
        tables.append(table)
    return tables


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
                                        or "declare it under [sources] in featurestore.toml, or add a view of that name",
                                        code="unknown-table"))
                continue
            if target in views and views[target].windows:
                problems.append(Problem(**where, message=f"'{target}' is a window view, which has no rows to read",
                                        hint="read the source it aggregates instead", code="reads-window-view"))
            if target not in found:
                found.append(target)
        reads[name] = tuple(found)

    sorter = graphlib.TopologicalSorter({v: [r for r in reads[v] if r in views] for v in views})
    try:
        order = tuple(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        text = " → ".join(cycle)
        for name in dict.fromkeys(cycle):
            problems.append(Problem(views[name].path, line_of(views[name].query),
                                    f"views read each other in a cycle: {text}",
                                    "break the cycle: a view may read only views that do not read it back",
                                    code="cycle"))
        order = tuple(views)
    return Graph(reads=reads, order=order), problems
