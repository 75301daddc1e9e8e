"""The engines featurestore runs SQL on: DuckDB (offline), PostgreSQL (online), Spark (frames at scale).

(The names only, here, so that the CLI lists them without importing an engine.)
"""

ENGINES = ("duckdb", "spark")  # where a training frame's join can run
