"""Source schemas from PostgreSQL, the offline DuckDB file and CSV, checked against definitions."""

from __future__ import annotations

import duckdb
import psycopg
import pytest

from support import ProjectDir


@pytest.fixture
def accounts(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS crm")
        connection.execute("DROP TABLE IF EXISTS crm.accounts")
        connection.execute("CREATE TABLE crm.accounts (user_id bigint, updated_at timestamptz, "
                           "tier varchar(10), balance numeric(12,2), flags int[])")
    return postgres_url


def test_postgres_source_types(project: ProjectDir, accounts: str, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", accounts)
    project.sources["accounts"] = '{ postgres = "crm.accounts" }'
    project.write_config()
    project.view("profile", "-- entity: user_id\n-- timestamp: updated_at\n-- owner: a@b.c\n"
                            "SELECT user_id, updated_at, tier, balance, flags FROM accounts\n")
    code, out, _ = project.run("views", "--format", "json", capsys=capsys)
    assert code == 0, out
    import json

    [view] = json.loads(out)
    assert view["features"] == [{"name": "tier", "type": "VARCHAR"}, {"name": "balance", "type": "DECIMAL(12,2)"},
                                {"name": "flags", "type": "INTEGER[]"}]
    project.view("profile", "-- entity: user_id\n-- timestamp: updated_at\n-- owner: a@b.c\n"
                            "SELECT user_id, updated_at, tier_name FROM accounts\n")
    code, problems = project.validate(capsys)
    assert code == 1 and problems[0]["line"] == 4 and '"tier_name" not found' in problems[0]["message"]


def test_missing_postgres_table_is_located_in_config(project: ProjectDir, accounts: str,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", accounts)
    project.sources["accounts"] = '{ postgres = "crm.acounts" }'
    project.write_config()
    code, problems = project.validate(capsys)
    assert code == 1
    assert [(p["path"], p["line"], p["message"]) for p in problems] == [
        ("featurestore.toml", 4, "source 'accounts': no table crm.acounts in PostgreSQL")]


def test_unreachable_postgres_is_a_clear_error(project: ProjectDir, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", "postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    project.sources["accounts"] = '{ postgres = "public.accounts" }'
    project.write_config()
    code, problems = project.validate(capsys)
    assert code == 1
    assert "cannot connect to PostgreSQL" in problems[0]["message"]
    assert "secret" not in problems[0]["message"]


def test_duckdb_and_csv_sources(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    database = project.root / ".featurestore" / "offline.duckdb"
    database.parent.mkdir()
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE TABLE merchants (merchant_id BIGINT, country VARCHAR, onboarded_at TIMESTAMPTZ)")
    (project.root / "data" / "rates.csv").write_text("country,day,rate\nDE,2026-01-01,0.5\nFR,2026-01-02,0.25\n")
    project.sources["merchants"] = '{ duckdb = "merchants" }'
    project.sources["rates"] = '"data/rates.csv"'
    project.write_config()
    project.view("merchant", "-- entity: merchant_id, country\n-- timestamp: onboarded_at\n-- owner: a@b.c\n"
                             "SELECT m.merchant_id, m.country, m.onboarded_at, r.rate\n"
                             "FROM merchants m JOIN rates r ON r.country = m.country\n")
    code, problems = project.validate(capsys)
    assert (code, problems) == (0, [])
    project.sources["merchants"] = '{ duckdb = "merchant" }'
    project.sources["rates"] = '"data/rate*.parquet"'
    project.write_config()
    code, problems = project.validate(capsys)
    assert code == 1
    assert [(p["line"], p["message"].split(":")[0]) for p in problems] == [
        (4, "source 'merchants'"), (5, "source 'rates'")]
    assert "no table 'merchant'" in problems[0]["message"]
    assert "No files found" in problems[1]["message"]


def test_a_compiled_postgres_frame_runs_there_and_equals_the_training_frame(
        project: ProjectDir, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    import pyarrow as pa

    from featurestore import FeatureStore

    from support import SNAPSHOT, T0, WINDOW

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    labels = [(0, T0 + timedelta(hours=3)), (1, T0 + timedelta(hours=4, microseconds=1)), (2, T0),
              (0, T0 + timedelta(hours=40)), (None, T0), (1, None), (7, T0 + timedelta(hours=2))]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS shop")
        connection.execute("DROP TABLE IF EXISTS shop.events, shop.labels")
        connection.execute("CREATE TABLE shop.events (user_id bigint, ts timestamptz, amount double precision)")
        connection.execute("CREATE TABLE shop.labels (user_id bigint, at timestamptz)")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO shop.events VALUES (%s, %s, %s)",
                               [(i % 3, T0 + timedelta(hours=i), float(i)) for i in range(8)])
            cursor.executemany("INSERT INTO shop.labels VALUES (%s, %s)", labels)
    project.sources["events"] = '{ postgres = "shop.events" }'
    project.write_config()
    project.view("spend", SNAPSHOT.replace("-- owner:", "-- ttl: 2h\n    -- owner:"))
    project.view("activity", WINDOW)
    store = FeatureStore(project.root, consumer="test")
    sql = store.compile_frame(["spend.*", "activity.*"], dialect="postgres", spine="shop.labels", timestamp="at")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        cursor = connection.execute(sql)
        columns = [c.name for c in cursor.description]
        compiled = [dict(zip(columns, row)) for row in cursor.fetchall()]
    spine = pa.table({"user_id": pa.array([k for k, _ in labels], pa.int64()),
                      "at": pa.array([t for _, t in labels], pa.timestamp("us", tz="UTC"))})
    frame = store.training_frame(spine, ["spend.*", "activity.*"], timestamp="at", cache=False).to_arrow().to_pylist()
    assert columns == ["user_id", "at", "amount", "n_3h", "n_1d", "total_3h", "total_1d"]
    order = lambda row: (row["at"] is None, row["at"] or T0, row["user_id"] is None, row["user_id"] or 0)  # noqa: E731
    assert compiled == sorted(frame, key=order)
    # A SQL spine reads the sources: the PostgreSQL table is copied in once, though the views read it too.
    from_sql = store.training_frame("SELECT user_id, ts AS at FROM events WHERE user_id = 0 ORDER BY ts",
                                    ["spend.amount", "activity.n_3h"], timestamp="at", cache=False).to_arrow()
    assert from_sql.column("amount").to_pylist() == [0.0, 3.0, 6.0] and from_sql.column("n_3h").to_pylist() == [0, 1, 1]
    assert compiled[3] == {"user_id": 0, "at": T0 + timedelta(hours=3), "amount": 3.0, "n_3h": 1, "n_1d": 1,
                           "total_3h": 0.0, "total_1d": 0.0}
