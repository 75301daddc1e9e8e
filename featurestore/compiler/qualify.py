"""Resolve every column of a view against the schemas of what it reads.

    qualify_view(view, {"transactions": {"user_id": "BIGINT", "ts": "TIMESTAMP"}})
    SELECT user_id, ts FROM transactions
    →  SELECT "transactions"."user_id" AS "user_id", "transactions"."ts" AS "ts" FROM "transactions" AS "transactions"
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from featurestore.definitions.spec import FeatureView

__all__ = ["qualify_view"]


def qualify_view(view: FeatureView, schema: dict[str, dict[str, str]]) -> exp.Query:
    """The view's query with every column qualified and every star expanded (raises OptimizeError)."""
    mapping = MappingSchema(schema, dialect="duckdb")
    return qualify(view.query.copy(), schema=mapping, dialect="duckdb", validate_qualify_columns=True)
