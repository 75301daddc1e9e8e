"""Column-level lineage: which source columns feed a feature, through any views, derived by sqlglot.

    feature_lineage(project.views, project.sources, "user_spend_trend.avg_daily_amount_7d")
    →  Lineage(feature="user_spend_trend.avg_daily_amount_7d",
               sources=["transactions.amount", "transactions.ts", "transactions.user_id"],
               views=["user_daily_stats"],
               graph=[("user_daily_stats.day_end", "user_spend_trend.avg_daily_amount_7d"),
                      ("user_daily_stats.total_amount", "user_spend_trend.avg_daily_amount_7d"),
                      ("user_daily_stats.user_id", "user_spend_trend.avg_daily_amount_7d"),
                      ("transactions.ts", "user_daily_stats.day_end"), …])

    reverse_lineage(project.views, project.sources, "transactions.amount")
    →  ["merchant_risk.avg_amount", "user_daily_stats.max_amount", "user_daily_stats.total_amount", …]

What counts as lineage: the columns a feature's SELECT expression reads, as `sqlglot.lineage`
follows them through CTEs and subqueries, then through the views it reads, down to sources.
Everything inside the expression counts, so a CASE condition, an aggregate's FILTER and a window
function's PARTITION BY / ORDER BY are part of it. Columns that only choose rows for the whole
query (WHERE, JOIN … ON, GROUP BY, HAVING, QUALIFY) are not, and neither is a window view's
event-time column. `count(*)` reads no column but counts rows: it depends on every table in its
FROM and JOINs, written `table.*` (through a view, `view.*` depends on the tables that view reads
rows from).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage as sqlglot_lineage
from sqlglot.optimizer.scope import find_all_in_scope, traverse_scope

from featurestore.definitions.selection import view_named
from featurestore.definitions.spec import Column, Feature, FeatureView
from featurestore.errors import BadRequestError, FeatureStoreError, UnknownNameError, did_you_mean

__all__ = ["Lineage", "column_sources", "feature_lineage", "reverse_lineage"]

_Ref = tuple[str, str]  # (source or view, column or "*"); columns lower-cased, as DuckDB compares them


@dataclass(frozen=True)
class Lineage:
    """A feature's lineage. `graph` holds edges (from, to), from the feature upstream, for drawing."""

    feature: str
    sources: list[str]
    views: list[str]
    graph: list[tuple[str, str]]


def feature_lineage(project_views: dict[str, FeatureView],
                    source_names: Mapping[str, Iterable[Column]] | Iterable[str], feature: str) -> Lineage:
    """The source columns `feature` ("view.feature") is computed from, and the views in between.

    `source_names` may be a mapping of source name → columns (such as `Project.sources`); then
    source columns are spelled as the source spells them. A window feature (`cards_added_3h`)
    has the lineage of the SQL column it aggregates (`cards_added`).

        SELECT user_id, ts, amount * rate AS fee FROM payments        -- view `fees`
        feature_lineage(views, {"payments"}, "fees.fee")
        →  Lineage(feature="fees.fee", sources=["payments.amount", "payments.rate"], views=[],
                   graph=[("payments.amount", "fees.fee"), ("payments.rate", "fees.fee")])
    """
    walker = _Walker(project_views, source_names)
    target = walker.feature(feature)
    start = walker.direct(target.view, target.column)
    edges = [(walker.name(ref), target.qualified) for ref in start]
    seen, queue = set(start), list(start)
    while queue:
        ref = queue.pop(0)
        for upstream in walker.inputs(ref):
            edges.append((walker.name(upstream), walker.name(ref)))
            if upstream not in seen:
                seen.add(upstream)
                queue.append(upstream)
    sources = sorted(walker.name(ref) for ref in seen if ref[0] not in project_views)
    views = walker.downstream_first({ref[0] for ref in seen if ref[0] in project_views})
    graph = list(dict.fromkeys(edges))
    return Lineage(feature=target.qualified, sources=sources, views=views, graph=graph)


def reverse_lineage(project_views: dict[str, FeatureView],
                    source_names: Mapping[str, Iterable[Column]] | Iterable[str], column: str) -> list[str]:
    """The features ("view.feature", sorted) computed from `column`, directly or through other views.

    `column` is "source.column", "view.column", or "source.*" / "view.*" for what counts its rows.
    A view's own features are not listed for its own column. With a mapping of source name →
    columns for `source_names`, an existing column that no feature reads gives []; with names
    only, a source's columns are known from what the views read.

        reverse_lineage(views, {"payments"}, "payments.rate")  →  ["fees.fee"]
    """
    walker = _Walker(project_views, source_names)
    target = walker.column(column)
    return sorted(f.qualified for view in project_views.values() for f in view.features
                  if view.name != target[0] and target in walker.upstream(view.name, f.column))


def column_sources(project_views: dict[str, FeatureView],
                   source_names: Mapping[str, Iterable[Column]] | Iterable[str], view: str, column: str) -> list[str]:
    """The source columns ("source.column", sorted) output column `column` of `view` is computed from."""
    walker = _Walker(project_views, source_names)
    return sorted(walker.name(ref) for ref in walker.upstream(view, column) if ref[0] not in project_views)


class _Walker:
    """Lineage through a project, each view's SQL traced by sqlglot at most once per call."""

    def __init__(self, views: dict[str, FeatureView],
                 source_names: Mapping[str, Iterable[Column]] | Iterable[str]) -> None:
        self.views = views
        self.schemas: dict[str, dict[str, str]] | None = None
        if isinstance(source_names, Mapping):
            self.schemas = {}
            for name, columns in source_names.items():
                spelled = [getattr(c, "name", c) for c in columns]  # Column objects or plain names
                self.schemas[name] = {_lower(c): c for c in spelled}
        self.sources = list(source_names)
        self.tables = {name.lower(): name for name in [*self.sources, *views]}
        self._direct: dict[str, dict[str, tuple[_Ref, ...]]] = {}
        self._rows: dict[str, tuple[_Ref, ...]] = {}
        self._upstream: dict[_Ref, frozenset[_Ref]] = {}
        self._read: dict[str, set[str]] | None = None

    def feature(self, reference: str) -> Feature:
        view_name, dot, feature_name = reference.strip().partition(".")
        if not dot or not view_name or not feature_name:
            raise BadRequestError(f"feature reference '{reference}' must be 'view.feature', "
                                  "e.g. 'user_daily_stats.txn_count'")
        view = view_named(self.views, view_name, f" in '{reference}'")
        for feature in view.features:
            if feature.name == feature_name:
                return feature
        names = [f.name for f in view.features]
        if view.windows and feature_name in {f.column for f in view.features}:
            hint = f"'{feature_name}' is the column the window view aggregates; name one window: " + ", ".join(
                f.name for f in view.features if f.column == feature_name)
        else:
            hint = did_you_mean(feature_name, names) or f"its features: {', '.join(names)}"
        raise UnknownNameError(f"view '{view_name}' has no feature '{feature_name}'; {hint}")

    def column(self, reference: str) -> _Ref:
        table_name, dot, column_name = reference.strip().partition(".")
        if not dot or not table_name or not column_name:
            raise BadRequestError(f"column reference '{reference}' must be 'source.column' or 'view.column', "
                                  "e.g. 'transactions.amount'")
        table = self.tables.get(table_name.lower())
        if table is None:
            hint = did_you_mean(table_name, self.tables.values()) or (
                f"known sources: {', '.join(sorted(self.sources)) or 'none'}; "
                f"known views: {', '.join(sorted(self.views)) or 'none'}")
            raise UnknownNameError(f"unknown source or view '{table_name}' in '{reference}'; {hint}")
        if column_name == "*":
            return table, "*"
        if table in self.views:
            view = self.views[table]
            names = list(dict.fromkeys([*(c.name for c in view.columns), *(f.name for f in view.features)]))
            what = f"view '{table}' has no column '{column_name}'"
            listing = f"its columns: {', '.join(names)}"
        elif self.schemas is not None and table in self.schemas:
            names = list(self.schemas[table].values())
            what = f"source '{table}' has no column '{column_name}'"
            listing = f"its columns: {', '.join(names)}"
        else:
            names = sorted(self.read_columns().get(table, set()))
            what = f"no view reads a column '{column_name}' of source '{table}'"
            listing = f"the columns the views read: {', '.join(names) or 'none'}"
        if _lower(column_name) not in {_lower(n) for n in names}:
            raise UnknownNameError(f"{what}; {did_you_mean(column_name, names) or listing}")
        return table, _lower(column_name)

    def name(self, ref: _Ref) -> str:
        """"table.column", with the column spelled as the view's or source's schema spells it."""
        table, column = ref
        if table in self.views:
            spelled = {_lower(c.name): c.name for c in self.views[table].columns}
        else:
            spelled = (self.schemas or {}).get(table, {})
        return f"{table}.{spelled.get(column, column)}"

    def upstream(self, view: str, column: str) -> frozenset[_Ref]:
        """Every column and table a view's output column is computed from, all the way down."""
        found: set[_Ref] = set()
        for ref in self.direct(view, column):
            found |= {ref, *self._all_inputs(ref)}
        return frozenset(found)

    def _all_inputs(self, ref: _Ref) -> frozenset[_Ref]:
        if ref not in self._upstream:
            self._upstream[ref] = frozenset()  # resolved views have no cycle; this only stops a runaway
            found: set[_Ref] = set()
            for upstream in self.inputs(ref):
                found |= {upstream, *self._all_inputs(upstream)}
            self._upstream[ref] = frozenset(found)
        return self._upstream[ref]

    def inputs(self, ref: _Ref) -> tuple[_Ref, ...]:
        """What a view's column (or its rows, for `*`) is computed from; a source's columns are leaves."""
        table, column = ref
        if table not in self.views:
            return ()
        if column == "*":
            if table not in self._rows:
                query = self._query(self.views[table])
                self._rows[table] = tuple(sorted((t, "*") for t in self._row_tables(query, _ctes(query))))
            return self._rows[table]
        return self.direct(table, column)

    def direct(self, view: str, column: str) -> tuple[_Ref, ...]:
        """The columns and tables one output column reads in the view's own SQL, sorted."""
        if view not in self._direct:
            self._direct[view] = self._trace(self.views[view])
        return self._direct[view].get(_lower(column), ())

    def _trace(self, view: FeatureView) -> dict[str, tuple[_Ref, ...]]:
        query = self._query(view)
        ctes = _ctes(query)
        try:
            # The qualified tree already has every column resolved, so sqlglot needs no schema.
            roots = sqlglot_lineage(None, query, schema={}, dialect="duckdb")
        except SqlglotError as exc:
            raise FeatureStoreError(f"cannot derive the column lineage of view '{view.name}' ({view.path}): {exc}; "
                                    "sqlglot's lineage does not follow a construct of its SQL") from exc
        traced: dict[str, tuple[_Ref, ...]] = {}
        for output, root in roots.items():
            refs: set[_Ref] = set()
            for node in root.walk():
                if isinstance(node.expression, exp.Table):  # a leaf: its name is the column's generic SQL
                    refs.add((self._table(node.expression), _lower(exp.to_column(node.name).name)))
                elif any(find_all_in_scope(node.expression, exp.Star)):
                    refs |= {(t, "*") for t in self._row_tables(node.source, ctes)}
            traced[_lower(output)] = tuple(sorted(refs))
        return traced

    def _row_tables(self, query: exp.Expr, ctes: dict[str, exp.Query], seen: frozenset[str] = frozenset()) -> set[str]:
        """The sources and views whose rows make a query's rows: its FROM and JOINs, through CTEs and subqueries."""
        if isinstance(query, exp.Subquery):
            return self._row_tables(query.this, ctes, seen)
        if isinstance(query, exp.SetOperation):
            return self._row_tables(query.left, ctes, seen) | self._row_tables(query.right, ctes, seen)
        if not isinstance(query, exp.Select):
            return set()
        from_ = query.args.get("from_")
        found: set[str] = set()
        for item in [from_.this] if from_ else []:
            found |= self._from_item(item, ctes, seen)
        for join in query.args.get("joins") or []:
            found |= self._from_item(join.this, ctes, seen)
        return found

    def _from_item(self, item: exp.Expr, ctes: dict[str, exp.Query], seen: frozenset[str]) -> set[str]:
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            if not item.args.get("db") and item.name.lower() in ctes and item.name.lower() not in seen:
                name = item.name.lower()
                return self._row_tables(ctes[name], ctes, seen | {name})
            return {self._table(item)}
        if isinstance(item, exp.Subquery):
            return self._row_tables(item.this, ctes, seen)
        return set()  # table functions, VALUES, UNNEST: no named table's rows

    def _table(self, table: exp.Table) -> str:
        return self.tables.get(table.name.lower(), table.name)

    def _query(self, view: FeatureView) -> exp.Query:
        return view.qualified if view.qualified is not None else view.query

    def read_columns(self) -> dict[str, set[str]]:
        """Every column of each source that some view references anywhere (values, filters, keys)."""
        if self._read is None:
            self._read = {}
            for view in self.views.values():
                for scope in traverse_scope(self._query(view).copy()):
                    for column in scope.columns:
                        source = scope.sources.get(column.table)
                        if isinstance(source, exp.Table) and self._table(source) not in self.views:
                            self._read.setdefault(self._table(source), set()).add(column.name)
        return self._read

    def downstream_first(self, names: set[str]) -> list[str]:
        """Views in order from the ones reading others down to the ones reading only sources."""
        edges = {name: [r for r in self.views[name].reads if r in names] for name in sorted(names)}
        return list(reversed(list(graphlib.TopologicalSorter(edges).static_order())))


def _ctes(query: exp.Expr) -> dict[str, exp.Query]:
    return {cte.alias_or_name.lower(): cte.this for cte in query.find_all(exp.CTE)}


def _lower(name: str) -> str:
    # DuckDB compares identifiers case-insensitively, and sqlglot lower-cases them when it qualifies.
    return name.lower()
