"""The demo data generator against a real PostgreSQL and DuckDB."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.demo import write_demo_data

USERS = 500
TRANSACTIONS = 20_000
START = datetime(2026, 8, 3, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
UTC = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Demo:
    root: Path
    counts: dict[str, int]
    sources: dict[str, pa.Table]
    parquet_digests: dict[str, str]


@pytest.fixture(scope="module")
def postgres(postgres_url: str) -> str:
    return postgres_url


def _generate(root: Path, conninfo: str, seed: int = 7) -> Demo:
    """Run the generator and read back everything it wrote, before another run replaces the tables."""
    database = root / ".featurestore" / "offline.duckdb"
    counts = write_demo_data(
        root, conninfo=conninfo, offline_database=database, users=USERS, transactions=TRANSACTIONS, seed=seed
    )
    with psycopg.connect(conninfo) as conn:
        cursor = conn.execute(
            "SELECT user_id, country, signup_ts, account_type, updated_at FROM public.accounts"
            " ORDER BY user_id, updated_at"
        )
        names = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    accounts = pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})
    conn = duckdb.connect(str(database), read_only=True)
    try:
        merchants = conn.sql("SELECT * FROM merchants ORDER BY merchant_id").to_arrow_table()
    finally:
        conn.close()
    files = sorted((root / "data").rglob("*.parquet"))
    return Demo(
        root=root,
        counts=counts,
        sources={
            "transactions": pq.read_table(root / "data" / "transactions.parquet"),
            "card_events": pq.read_table(root / "data" / "card_events"),
            "accounts": accounts,
            "merchants": merchants,
        },
        parquet_digests={
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files
        },
    )


@pytest.fixture(scope="module")
def demo(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return _generate(tmp_path_factory.mktemp("demo"), postgres)


def _events(demo: Demo) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    for name, table in demo.sources.items():
        conn.register(name, table)
    return conn


def _scalar(conn: duckdb.DuckDBPyConnection, sql: str):
    return conn.execute(sql).fetchall()[0][0]


def test_returned_counts_match_what_was_written(demo: Demo) -> None:
    assert demo.counts == {name: table.num_rows for name, table in demo.sources.items()}
    assert demo.counts["transactions"] == TRANSACTIONS
    assert all(count > 0 for count in demo.counts.values())


def test_sources_have_the_documented_schemas(demo: Demo) -> None:
    assert demo.sources["transactions"].schema == pa.schema([
        ("transaction_id", pa.int64()),
        ("user_id", pa.int64()),
        ("merchant_id", pa.int64()),
        ("country", pa.string()),
        ("amount", pa.float64()),
        ("ts", UTC),
        ("is_fraud", pa.bool_()),
    ])
    card_events = pq.read_schema(next((demo.root / "data" / "card_events").glob("*.parquet")))
    assert card_events == pa.schema([
        ("event_id", pa.int64()), ("user_id", pa.int64()), ("card_id", pa.int64()), ("ts", UTC), ("ingested_at", UTC)
    ])
    merchants = demo.sources["merchants"].schema
    assert merchants.names == ["merchant_id", "country", "category", "onboarded_at"]
    assert merchants.field("merchant_id").type == pa.int64()
    assert pa.types.is_timestamp(merchants.field("onboarded_at").type)
    assert merchants.field("onboarded_at").type.tz is not None
    assert demo.sources["accounts"].column_names == ["user_id", "country", "signup_ts", "account_type", "updated_at"]


def test_card_events_are_partitioned_by_month(demo: Demo) -> None:
    parts = sorted((demo.root / "data" / "card_events").glob("*.parquet"))
    assert [part.stem for part in parts] == ["2026-08", "2026-09", "2026-10"]
    for part in parts:
        months = {ts.strftime("%Y-%m") for ts in pq.read_table(part)["ts"].to_pylist()}
        assert months == {part.stem}


def test_keys_are_unique_and_never_null(demo: Demo) -> None:
    conn = _events(demo)
    for table, key in [("transactions", "transaction_id"), ("card_events", "event_id"), ("merchants", "merchant_id")]:
        assert _scalar(conn, f"SELECT count(DISTINCT {key}) = count(*) FROM {table}"), table
    assert _scalar(conn, "SELECT count(*) FROM (SELECT DISTINCT user_id, updated_at FROM accounts)") == len(
        demo.sources["accounts"]
    )
    for table, column in [("transactions", "user_id"), ("transactions", "merchant_id"), ("card_events", "user_id")]:
        assert demo.sources[table][column].null_count == 0
    # Every reference resolves: no orphan users or merchants.
    assert _scalar(conn, "SELECT count(*) FROM transactions ANTI JOIN merchants USING (merchant_id)") == 0
    assert _scalar(conn, "SELECT count(*) FROM transactions ANTI JOIN accounts USING (user_id)") == 0


def test_accounts_keep_a_profile_history(demo: Demo) -> None:
    conn = _events(demo)
    assert _scalar(conn, "SELECT count(DISTINCT user_id) FROM accounts") == USERS
    assert _scalar(conn, "SELECT count(*) FROM (SELECT user_id FROM accounts GROUP BY 1 HAVING count(*) > 1)") > 0
    assert _scalar(conn, "SELECT count(*) FROM accounts WHERE updated_at < signup_ts") == 0


def test_card_events_include_same_instant_ties(demo: Demo) -> None:
    conn = _events(demo)
    assert _scalar(conn, "SELECT count(*) FROM (SELECT 1 FROM card_events GROUP BY user_id, ts "
                         "HAVING count(*) > 1)") > 0
    assert _scalar(conn, "SELECT count(DISTINCT card_id) < count(*) FROM card_events")


def test_timestamps_are_utc_microseconds_in_the_documented_range(demo: Demo) -> None:
    for name in ("transactions", "card_events"):
        ts = demo.sources[name]["ts"]
        assert ts.type == UTC
        assert min(ts.to_pylist()) >= START and max(ts.to_pylist()) < END, name
        # Sub-second precision survives: not everything is on a whole second.
        assert any(value.microsecond for value in ts.to_pylist()[:100]), name
    for column in ("signup_ts", "updated_at"):
        values = demo.sources["accounts"][column].to_pylist()
        assert all(value.utcoffset() is not None for value in values)
        assert max(values) < END
    assert max(demo.sources["accounts"]["signup_ts"].to_pylist()) < START
    assert max(demo.sources["merchants"]["onboarded_at"].to_pylist()) < START


def test_label_rate_is_in_a_learnable_band(demo: Demo) -> None:
    labels = demo.sources["transactions"]["is_fraud"].to_pylist()
    assert 0.005 <= sum(labels) / len(labels) <= 0.04


def test_fraud_follows_bursts_of_added_cards(demo: Demo) -> None:
    conn = _events(demo)
    cards_per_user = """
        SELECT u.fraudster, avg(coalesce(c.n, 0)) AS cards
        FROM (SELECT user_id, bool_or(is_fraud) AS fraudster FROM transactions GROUP BY 1) AS u
        LEFT JOIN (SELECT user_id, count(*) AS n FROM card_events GROUP BY 1) AS c USING (user_id)
        GROUP BY 1
    """
    cards = dict(conn.execute(cards_per_user).fetchall())
    assert cards[True] > 3 * cards[False]
    burst_share = """
        SELECT t.is_fraud, avg(((SELECT count(*) FROM card_events AS e WHERE e.user_id = t.user_id
                                AND e.ts < t.ts AND e.ts >= t.ts - INTERVAL 1 DAY) >= 3)::DOUBLE) AS share
        FROM transactions AS t GROUP BY 1
    """
    share = dict(conn.execute(burst_share).fetchall())
    assert share[True] > 0.3
    assert share[False] < 0.05


def test_risky_merchants_and_high_amounts_carry_more_fraud(demo: Demo) -> None:
    conn = _events(demo)
    by_category = dict(conn.execute("""
        SELECT m.category IN ('electronics', 'gift_cards', 'crypto'), avg(t.is_fraud::INT)
        FROM transactions AS t JOIN merchants AS m USING (merchant_id) GROUP BY 1
    """).fetchall())
    assert by_category[True] > 2 * by_category[False]
    by_amount = dict(conn.execute("SELECT amount > 150, avg(is_fraud::INT) FROM transactions GROUP BY 1").fetchall())
    assert by_amount[True] > 2 * by_amount[False]


def test_same_seed_gives_identical_data(demo: Demo, postgres: str, tmp_path: Path) -> None:
    again = _generate(tmp_path, postgres)
    assert again.parquet_digests == demo.parquet_digests
    assert again.counts == demo.counts
    for name, table in demo.sources.items():
        assert again.sources[name].equals(table), name


def test_another_seed_gives_different_data(demo: Demo, postgres: str, tmp_path: Path) -> None:
    other = _generate(tmp_path, postgres, seed=8)
    assert other.parquet_digests.keys() == demo.parquet_digests.keys()
    assert all(other.parquet_digests[path] != digest for path, digest in demo.parquet_digests.items())
    for name, table in demo.sources.items():
        assert not other.sources[name].equals(table), name


def test_a_rerun_replaces_tables_and_stale_partitions(postgres: str, tmp_path: Path) -> None:
    stale = tmp_path / "data" / "card_events" / "1999-01.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not parquet")
    first = _generate(tmp_path, postgres)
    second = _generate(tmp_path, postgres, seed=8)
    assert not stale.exists()
    assert second.counts["accounts"] == second.sources["accounts"].num_rows != 0
    assert second.counts["merchants"] == second.sources["merchants"].num_rows
    assert not second.sources["accounts"].equals(first.sources["accounts"])
