"""SQL passes over sqlglot trees: one module per pass, one public function each.

    checks.check_query(view)               structural checks: leakage and shape
    qualify.qualify_view(view, schema)     columns resolved against source schemas
    version.view_version(view, upstream)   the hash that changes when values can change
    render.render_view(view, …, dialect)   the runnable SQL of a view for one engine
"""

# The engines `render` writes SQL for (here, so that the CLI lists them without importing sqlglot).
DIALECTS = ("duckdb", "postgres", "spark", "trino", "snowflake", "bigquery")
