"""Apache Spark through PySpark: a session, Arrow in and out, Spark's errors as FeatureStoreErrors.

    with session(spark) as spark:               # the caller's SparkSession, or a local one
        load_arrow(spark, "__fs_spine", table)   # a temporary view
        result = arrow(spark, sql)

Times are UTC: the session's time zone is UTC while the block runs, then put back, so
TIMESTAMP values (Spark's instants) print and convert as UTC, like DuckDB's TIMESTAMPTZ here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureStoreError, first_line

__all__ = ["arrow", "execute", "has_table", "load_arrow", "local_session", "session"]

_INSTALL = "pip install 'featurestore[spark]'"
# Spark's log (warnings, and errors with Java stack traces) hidden: failures reach the caller as errors.
_LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")


@contextlib.contextmanager
def session(spark: Any = None, master: str | None = None) -> Iterator[Any]:
    """`spark`, or the process's local session (started on first use: a few seconds), in UTC.

    The time zone is the session's: frames built at once on one session from several threads
    could put it back under each other. Build them one at a time per session."""
    if spark is None:
        spark = local_session(master)
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        yield spark
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)


def local_session(master: str | None = None) -> Any:
    """The process's active SparkSession, or a new one on `master` (default local[*]: every core here).

    Started on first use (a few seconds), with Spark's log silenced: its errors reach callers as
    FeatureStoreErrors."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise FeatureStoreError(f"engine 'spark' needs PySpark, which is not installed; {_INSTALL}") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise FeatureStoreError("engine 'spark' needs Java 17 or later, which was not found; install it "
                                "(e.g. apt install openjdk-17-jre-headless) or set JAVA_HOME")
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    # The JVM's own options come from the environment PySpark launches it with (not from the builder).
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-java-options -Dlog4j2.configurationFile="
                                                 f"{_LOG_CONFIG.as_uri()} pyspark-shell")
    builder = SparkSession.builder.master(master or "local[*]").appName("featurestore") \
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false") \
        .config("spark.sql.session.timeZone", "UTC") \
        .config("spark.sql.warehouse.dir", str(Path(tempfile.gettempdir()) / "featurestore-spark-warehouse"))
    try:
        with _quiet():
            spark = builder.getOrCreate()
    except Exception as exc:  # PySpark's start-up errors share no base class
        raise FeatureStoreError(f"Spark could not start ({first_line(exc)}); check that Java 17+ works "
                                "(`java -version`) and that PySpark is installed") from None
    spark.sparkContext.setLogLevel("FATAL")
    return spark


def load_arrow(spark: Any, name: str, table: Any) -> None:
    """Make an Arrow table readable as the temporary view `name`."""
    with _errors():
        spark.createDataFrame(table).createOrReplaceTempView(name)


def arrow(spark: Any, sql: str) -> Any:
    """Run one query and return its result as an Arrow table."""
    with _errors():
        return spark.sql(sql).toArrow()


def execute(spark: Any, sql: str) -> None:
    """Run one statement (DDL) for its effect."""
    with _errors():
        spark.sql(sql)


def has_table(spark: Any, name: str) -> bool:
    """Whether the session's catalog has a table or temporary view `name`."""
    with _errors():
        return bool(spark.catalog.tableExists(name))


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    from pyspark.errors import PySparkException

    try:
        with _quiet():
            yield
    except PySparkException as exc:
        raise FeatureStoreError(f"Spark refused the query: {first_line(exc)}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without PySpark's warning that it does not fully support pandas 3: frames do not go through pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        yield
