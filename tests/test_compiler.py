"""Versions, qualification and the compiled SQL of views (golden files per dialect)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlglot

from featurestore.compiler.render import DIALECTS
from featurestore.config import load_settings
from featurestore.project import load_project

from support import SNAPSHOT, T0, WINDOW, ProjectDir

GOLDEN = Path(__file__).parent / "golden"


def versions(project: ProjectDir) -> dict[str, str]:
    return {name: view.version for name, view in load_project(load_settings(project.root)).views.items()}


def test_form_does_not_change_the_version(project: ProjectDir) -> None:
    project.view("spend", SNAPSHOT)
    project.view("activity", WINDOW)
    before = versions(project)
    project.view("spend", """
        -- owner: someone-else@example.com
        -- entity: user_id
        -- description: now with a description and reordered header
        -- timestamp: ts
        -- tags: pii
        select USER_ID,   ts,
               amount   -- the amount
        from EVENTS
    """)
    project.view("activity",
                 WINDOW.replace("count(*) AS n", "COUNT(*)  as  n").replace("-- windows: 3h, 1d", "-- windows: 3h,1d"))
    assert versions(project) == before


@pytest.mark.parametrize("change", [
    lambda s: s.replace("SELECT user_id, ts, amount", "SELECT user_id, ts, amount * 2 AS amount"),
    lambda s: s.replace("FROM events", "FROM events WHERE amount > 0"),
    lambda s: s.replace("-- owner:", "-- available_after: 1h\n    -- owner:"),
    lambda s: s.replace("-- owner:", "-- ttl: 3d\n    -- owner:"),
    lambda s: s.replace("-- owner:", "-- available_since: 2026-01-01\n    -- owner:"),
    lambda s: s.replace("-- owner:", "-- invalid: 2026-01-01..2026-01-02\n    -- owner:"),
    lambda s: s.replace("-- owner:", "-- created: amount\n    -- owner:"),
], ids=["expression", "filter", "lag", "ttl", "since", "invalid", "created"])
def test_logic_changes_the_version(project: ProjectDir, change) -> None:
    project.view("spend", SNAPSHOT)
    before = versions(project)["spend"]
    project.view("spend", change(SNAPSHOT))
    assert versions(project)["spend"] != before


def test_windows_change_the_version_and_upstream_changes_propagate(project: ProjectDir) -> None:
    project.view("activity", WINDOW)
    project.view("spend", SNAPSHOT)
    project.view("doubled", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n"
                            "SELECT user_id, ts, amount * 2 AS d FROM spend\n")
    before = versions(project)
    project.view("activity", WINDOW.replace("3h, 1d", "3h, 7d"))
    project.view("spend", SNAPSHOT.replace("FROM events", "FROM events WHERE amount > 1"))
    after = versions(project)
    assert all(after[name] != before[name] for name in ("activity", "spend", "doubled"))


def golden_project(project: ProjectDir) -> ProjectDir:
    project.sources["accounts"] = '{ postgres = "crm.accounts" }'
    project.write_config()
    project.view("spend", SNAPSHOT)
    project.view("activity", WINDOW)
    project.view("trend", """
        -- entity: user_id
        -- timestamp: ts
        -- owner: team@example.com
        WITH recent AS (SELECT * FROM spend WHERE amount > 1)
        SELECT user_id, ts, avg(amount) OVER (PARTITION BY user_id ORDER BY ts
                                              ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg3
        FROM recent
    """)
    return project


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("view", ["spend", "activity", "trend"])
def test_compiled_sql_matches_golden(project: ProjectDir, capsys: pytest.CaptureFixture[str], view: str,
                                     dialect: str) -> None:
    golden_project(project)
    project.sources.pop("accounts")  # keeps the test free of PostgreSQL; rendering does not need it
    project.write_config()
    code, out, err = project.run("compile", view, "--dialect", dialect, capsys=capsys)
    if (view, dialect) == ("trend", "bigquery"):  # BigQuery's windows sort NULLs first, with no way to say otherwise
        assert code == 1 and out == ""
        assert err == (f"error: {project.root / 'definitions' / 'trend.sql'}: view 'trend' cannot be written in "
                       "bigquery SQL: 'NULLS LAST' translation not supported in window function AVG; rewrite "
                       "that part, or compile for another dialect\n")
        return
    assert (code, err) == (0, "")
    text = out.replace(str(project.root), "{root}")
    expected = (GOLDEN / f"{view}.{dialect}.sql")
    if not expected.exists():  # first run writes the file for review; the test still fails
        expected.write_text(text)
        pytest.fail(f"wrote {expected}; review it and run again")
    assert text == expected.read_text()
    assert sqlglot.parse_one(out, read=dialect) is not None


def test_compiled_duckdb_sql_runs(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    import duckdb

    golden_project(project)
    project.sources.pop("accounts")
    project.write_config()
    code, out, _ = project.run("compile", "trend", capsys=capsys)
    assert code == 0
    rows = duckdb.sql(out).project("user_id, avg3").fetchall()
    assert sorted(r for r in rows if r[0] == 2) == [(2, 2.0), (2, 3.5)]


def test_compile_unknown_view_suggests(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", SNAPSHOT)
    code, _, err = project.run("compile", "spnd", capsys=capsys)
    assert code == 1
    assert "unknown view 'spnd'; did you mean 'spend'?" in err


def test_compile_json(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    project.view("spend", SNAPSHOT)
    code, out, _ = project.run("compile", "spend", "--dialect", "postgres", "--format", "json", capsys=capsys)
    assert code == 0
    result = json.loads(out)
    assert (result["view"], result["kind"], result["dialect"]) == ("spend", "snapshot", "postgres")
    assert len(result["version"]) == 12 and result["sql"].startswith("SELECT")


def test_a_duckdb_only_function_is_an_error_in_other_dialects(project: ProjectDir,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    project.view("micros", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n"
                           "SELECT user_id, ts, epoch_us(ts) AS us, list_sum([amount, 1]) AS s FROM events\n")
    assert project.run("compile", "micros", "--dialect", "duckdb", capsys=capsys)[0] == 0
    for dialect in DIALECTS[1:]:
        code, out, err = project.run("compile", "micros", "--dialect", dialect, capsys=capsys)
        assert (code, out) == (1, "")
        assert f"view 'micros' cannot be written in {dialect} SQL: it calls epoch_us(), list_sum(), which " \
               "sqlglot cannot translate from DuckDB" in err


@pytest.mark.parametrize("dialect", DIALECTS)
def test_compiled_frame_matches_golden(project: ProjectDir, capsys: pytest.CaptureFixture[str], dialect: str) -> None:
    golden_project(project)
    project.sources.pop("accounts")
    project.write_config()
    code, out, err = project.run("compile", "--frame", "spend.*,activity.*", "--dialect", dialect,
                                 "--spine", "labels", "--timestamp", "at", capsys=capsys)
    assert (code, err) == (0, "")
    text = out.replace(str(project.root), "{root}")
    expected = GOLDEN / f"frame.{dialect}.sql"
    if not expected.exists():  # first run writes the file for review; the test still fails
        expected.write_text(text)
        pytest.fail(f"wrote {expected}; review it and run again")
    assert text == expected.read_text()
    assert sqlglot.parse_one(out, read=dialect) is not None
    assert ("ASOF" in out) == (dialect == "duckdb")


def test_a_compiled_duckdb_frame_equals_the_training_frame(project: ProjectDir,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import duckdb
    import pyarrow as pa

    from featurestore import FeatureStore

    golden_project(project)
    project.sources.pop("accounts")
    project.write_config()
    code, out, _ = project.run("compile", "--frame", "spend.*,activity.*", "--spine", "labels", "--timestamp", "at",
                               capsys=capsys)
    assert code == 0
    labels = pa.table({"user_id": [0, 1, 2, 0, None], "at": pa.array(
        [T0 + timedelta(hours=h) for h in (0, 2, 5, 30, 4)], pa.timestamp("us", tz="UTC"))})
    frame = FeatureStore(project.root, consumer="test").training_frame(labels, ["spend.*", "activity.*"],
                                                                        timestamp="at", cache=False).to_arrow()
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("labels", labels)
        compiled = connection.sql(out).to_arrow_table()
    assert compiled.column_names == frame.column_names
    key = lambda row: (row["at"], row["user_id"] is None, row["user_id"] or 0)  # noqa: E731  the compiled order
    assert compiled.to_pylist() == sorted(frame.to_pylist(), key=key)


def test_compile_takes_a_view_or_a_frame(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", SNAPSHOT)
    for args in ([], ["spend", "--frame", "spend.*"]):
        code, _, err = project.run("compile", *args, capsys=capsys)
        assert code == 1 and "compile takes a view's name, or --frame FEATURES, and not both" in err


def test_a_latest_value_in_a_frame_is_refused_where_it_has_no_form(project: ProjectDir,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    project.view("last_amount", WINDOW.replace("count(*) AS n, sum(amount) AS total", "last(amount) AS latest"))
    code, out, _ = project.run("compile", "--frame", "last_amount.*", "--dialect", "spark", capsys=capsys)
    assert code == 0 and "MAX(CASE WHEN" in out and "STRUCT(" in out
    code, _, err = project.run("compile", "--frame", "last_amount.*", "--dialect", "postgres", capsys=capsys)
    assert code == 1
    assert "last_amount.sql: view 'last_amount' takes a latest value (arg_max or last), which featurestore writes " \
           "for duckdb and spark only" in err
