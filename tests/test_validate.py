"""Every class of definition error: exit code, file, line and an actionable message."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest

from support import SNAPSHOT, T0, WINDOW, ProjectDir

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"


def only(problems: list[dict], code: str) -> dict:
    found = [p for p in problems if p["code"] == code]
    assert len(found) == 1, problems
    return found[0]


def test_valid_views_pass(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", SNAPSHOT)
    project.view("activity", WINDOW, folder="sub/dir")
    code, problems = project.validate(capsys)
    assert (code, problems) == (0, [])


CASES = [
    # (name, file text, code, line, message part, hint part)
    ("missing_owner", "-- entity: user_id\n-- timestamp: ts\nSELECT user_id, ts FROM events\n",
     "missing-annotation", 1, "missing required annotation 'owner'", "-- owner:"),
    ("typo_key", HEADER + "-- ttll: 3d\nSELECT user_id, ts FROM events\n",
     "unknown-annotation", 4, "unknown annotation 'ttll'", "did you mean 'ttl'"),
    ("bad_duration", HEADER + "-- available_after: 2hours\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "'2hours' is not a duration", "integer and a unit"),
    ("negative_lag", HEADER + "-- available_after: -2h\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "negative", "duration"),
    ("bad_date", HEADER + "-- available_since: 2026-13-01\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "not an ISO 8601", "2024-01-01"),
    ("interval_backwards", HEADER + "-- invalid: 2026-02-01..2026-01-01\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "ends before it starts", "START..END"),
    ("bad_deprecated", HEADER + "-- deprecated: soon use v2\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "'soon' is not a date", "YYYY-MM-DD"),
    ("syntax", HEADER + "SELECT user_id,\n  ts\nFROM WHERE\n",
     "syntax", 6, "SQL does not parse", "syntax"),
    ("unclosed_string", HEADER + "SELECT user_id, ts,\n  'abc AS x\nFROM events\n", "syntax", 5,
     "a string opened here is never closed", "close every string"),
    ("unclosed_comment", HEADER + "SELECT user_id, ts -- it's fine\nFROM events /* note\n", "syntax", 5,
     "a comment opened here is never closed", "close every string"),
    ("two_statements", HEADER + "SELECT user_id, ts FROM events;\n\nSELECT 1;\n",
     "statements", 6, "2 statements", "exactly one SELECT"),
    ("ddl", HEADER + "DROP TABLE events\n", "not-select", 4, "only a SELECT is allowed, found DROP", "no DDL"),
    ("dml", HEADER + "\nINSERT INTO events VALUES (1, 2, 3, NULL)\n", "not-select", 5, "found INSERT", "no DDL"),
    ("empty", "", "empty", 1, "holds no SQL", "write one SELECT"),
    ("header_only", HEADER, "empty", 1, "holds no SQL", "write one SELECT"),
    ("entity_missing", "-- entity: account_id\n-- timestamp: ts\n-- owner: a@b.c\nSELECT user_id, ts FROM events\n",
     "missing-column", 1, "entity key 'account_id' is not an output column", "output columns: user_id, ts"),
    ("timestamp_missing", "-- entity: user_id\n-- owner: a@b.c\n-- timestamp: event_time\n"
     "SELECT user_id, ts FROM events\n",
     "missing-column", 3, "timestamp column 'event_time' is not an output column", "select it"),
    ("timestamp_type", HEADER + "SELECT user_id, amount AS ts FROM events\n",
     "timestamp-type", 2, "has type DOUBLE", "TIMESTAMP"),
    ("known_at_missing", HEADER + "-- known_at: arrived\nSELECT user_id, ts FROM events\n",
     "missing-column", 4, "known_at column 'arrived' is not an output column", "select it"),
    ("known_at_type", HEADER + "-- known_at: amount\nSELECT user_id, ts, amount FROM events\n",
     "timestamp-type", 4, "known_at column 'amount' has type DOUBLE", "TIMESTAMP"),
    ("known_at_is_the_timestamp", HEADER + "-- known_at: ts\nSELECT user_id, ts FROM events\n",
     "bad-annotation", 4, "'ts' is also the view's key or timestamp", "ingested_at"),
    ("window_timestamp", "-- entity: user_id\n-- timestamp: created_at\n-- owner: a@b.c\n-- windows: 1d\n"
     "SELECT user_id, count(*) AS n FROM events GROUP BY user_id\n",
     "missing-column", 2, "'created_at' is not a column of the table this window view aggregates", "event-time"),
    # A window view's known_at, like its timestamp, names a time column of the rows it aggregates.
    ("window_known_at_missing", "-- entity: user_id\n-- known_at: arrived_at\n-- timestamp: ts\n-- owner: a@b.c\n"
     "-- windows: 1d\nSELECT user_id, count(*) AS n FROM events GROUP BY user_id\n", "missing-column", 2,
     "known_at 'arrived_at' is not a column of the table this window view aggregates", "arrival-time column"),
    ("window_known_at_output", HEADER + "-- windows: 1d\n-- known_at: last_seen\n"
     "SELECT user_id, max(ts) AS last_seen FROM events GROUP BY user_id\n", "missing-column", 5,
     "known_at 'last_seen' is not a column of the table this window view aggregates", "not an output column"),
    ("window_known_at_type", HEADER + "-- windows: 1d\n-- known_at: amount\n"
     "SELECT user_id, count(*) AS n FROM events GROUP BY user_id\n", "timestamp-type", 5,
     "known_at column 'amount' has type DOUBLE", "TIMESTAMP, TIMESTAMPTZ or DATE"),
    ("unknown_source", HEADER + "SELECT user_id, ts\nFROM evnts\n", "unknown-table", 5,
     "'evnts' is neither a source nor a view", "did you mean 'events'"),
    ("schema_qualified", HEADER + "SELECT user_id, ts FROM main.events\n", "unknown-table", 4,
     "qualified with a schema", "bare name"),
    ("unknown_column", HEADER + "SELECT user_id, ts,\n  amout\nFROM events\n", "sql", 5,
     'Referenced column "amout" not found', 'did you mean "amount"'),
    ("duplicate_column", HEADER + "SELECT user_id, ts, amount,\n  card_id AS amount\nFROM events\n",
     "duplicate-column", 5, "output column 'amount' appears more than once", "AS"),
    ("interval_feature", HEADER + "SELECT user_id, ts,\n  ts - ts AS age\nFROM events\n", "column-type", 5,
     "output column 'age' is an INTERVAL", "epoch(age) AS age_seconds"),
    ("aggregate_no_windows", HEADER + "SELECT user_id, max(ts) AS ts, sum(amount) AS total\nFROM events\n"
     "GROUP BY user_id\n", "aggregate-without-windows", 6, "aggregates over all of history", "-- windows:"),
    ("windows_not_grouped", HEADER + "-- windows: 1d\nSELECT user_id, amount FROM events\n",
     "window-shape", 4, "GROUP BY over exactly the entity keys", "GROUP BY user_id"),
    ("windows_wrong_group", HEADER + "-- windows: 1d\n"
     "SELECT user_id, count(*) AS n FROM events GROUP BY user_id, card_id\n",
     "window-shape", 4, "GROUP BY over exactly the entity keys", "GROUP BY user_id"),
    ("window_unsupported_aggregate", HEADER + "-- windows: 1d\nSELECT user_id,\n  median(amount) AS m\n"
     "FROM events GROUP BY user_id\n", "window-aggregate", 6, "not a supported window aggregate", "arg_max"),
    ("window_top_n", HEADER + "-- windows: 1d\nSELECT user_id,\n  arg_max(card_id, ts, 3) AS last3\n"
     "FROM events GROUP BY user_id\n", "window-aggregate", 6, "not a supported window aggregate", "last(x)"),
    ("window_last_descending", HEADER + "-- windows: 1d\nSELECT user_id,\n  last(card_id ORDER BY ts DESC) AS first\n"
     "FROM events GROUP BY user_id\n", "window-aggregate", 6, "not a supported window aggregate", "count(DISTINCT x)"),
    ("following", HEADER + "SELECT user_id, ts,\n  sum(amount) OVER (PARTITION BY user_id ORDER BY ts\n"
     "    ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS s\nFROM events\n",
     "reads-future", 5, "FOLLOWING", "CURRENT ROW"),
    ("lead", HEADER + "SELECT user_id, ts,\n  lead(amount) OVER (PARTITION BY user_id ORDER BY ts) AS nxt\n"
     "FROM events\n", "reads-future", 5, "lead() reads a later row", "lag()"),
    ("negative_lag_fn", HEADER + "SELECT user_id, ts,\n"
     "  lag(amount, -1) OVER (PARTITION BY user_id ORDER BY ts) AS nxt\nFROM events\n",
     "reads-future", 5, "positive whole-number offset", "lag(x, 2)"),
    ("now", HEADER + "SELECT user_id, ts\nFROM events\nWHERE ts < now()\n",
     "reads-clock", 6, "NOW() reads the clock", "as of t"),
    ("current_timestamp", HEADER + "SELECT user_id, ts,\n  current_timestamp - ts AS age\nFROM events\n",
     "reads-clock", 5, "CURRENT_TIMESTAMP reads the clock", "as of t"),
    ("current_date", HEADER + "SELECT user_id, ts\nFROM events\nWHERE ts::DATE = current_date\n",
     "reads-clock", 6, "CURRENT_DATE reads the clock", "as of t"),
    ("random", HEADER + "SELECT user_id, ts,\n  random() AS r\nFROM events\n", "random", 5, "is random", "hash"),
    ("read_file", HEADER + "SELECT user_id, ts FROM read_parquet('x.parquet')\n", "undeclared-source", 4,
     "not a declared source", "[sources]"),
    ("events", SNAPSHOT.replace("    ", ""), "name-clash", 1, "has the name of a source", "rename"),
    ("Bad-Name", SNAPSHOT.replace("    ", ""), "view-name", 1, "not a lowercase SQL identifier", "bad_name.sql"),
]


@pytest.mark.parametrize(("name", "text", "code", "line", "message", "hint"), CASES, ids=[c[0] for c in CASES])
def test_error_is_located_and_actionable(project: ProjectDir, capsys: pytest.CaptureFixture[str], name: str,
                                         text: str, code: str, line: int, message: str, hint: str) -> None:
    path = project.view(name, text)
    exit_code, problems = project.validate(capsys)
    assert exit_code == 1
    problem = only(problems, code)
    assert problem["path"] == f"definitions/{path.name}"
    assert problem["line"] == line
    assert message in problem["message"]
    assert hint in problem["hint"]
    assert problem["severity"] == "error"


def test_a_window_view_with_arrival_times_validates(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    """known_at may name a source column of any time type (here a DATE), not selected by the view."""
    project.parquet("late", pa.table({"user_id": pa.array([1], pa.int64()), "ts": pa.array([T0], pa.timestamp("us")),
                                      "arrived": pa.array([T0.date()], pa.date32())}))
    project.view("late_counts", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n-- windows: 1d\n"
                                "-- known_at: arrived\nSELECT user_id, count(*) AS n FROM late GROUP BY user_id\n")
    assert project.validate(capsys) == (0, [])


def test_cycle_names_every_view_in_it(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("a", HEADER + "SELECT user_id, ts FROM b\n")
    project.view("b", HEADER + "SELECT user_id, ts FROM a\n")
    code, problems = project.validate(capsys)
    assert code == 1
    cycle = [p for p in problems if p["code"] == "cycle"]
    assert sorted(p["path"] for p in cycle) == ["definitions/a.sql", "definitions/b.sql"]
    assert all(p["line"] == 4 and "cycle" in p["message"] for p in cycle)


def test_views_read_views(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("base", SNAPSHOT)
    project.view("derived", HEADER + "SELECT user_id, ts, amount * 2 AS doubled FROM base\n")
    project.view("bad", HEADER + "SELECT user_id, ts, tripled FROM base\n")
    code, problems = project.validate(capsys)
    assert code == 1
    assert [(p["path"], p["code"], p["line"]) for p in problems] == [("definitions/bad.sql", "sql", 4)]


def test_reading_a_window_view_is_an_error(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("activity", WINDOW)
    project.view("reader", HEADER + "SELECT user_id, ts FROM activity\n")
    code, problems = project.validate(capsys)
    assert (code, [p["code"] for p in problems]) == (1, ["reads-window-view"])


def test_every_problem_in_one_run(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("one", "-- entity: user_id\n-- timestamp: ts\nSELECT user_id, ts, now() AS t FROM events\n")
    project.view("two", HEADER + "-- ttl: forever\n-- colour: blue\nSELECT user_id, ts FROM events\n")
    project.view("three", HEADER + "SELECT user_id, ts FROM nowhere\n")
    project.view("fine", SNAPSHOT)
    code, problems = project.validate(capsys)
    assert code == 1
    assert sorted((p["path"], p["code"]) for p in problems) == [
        ("definitions/one.sql", "missing-annotation"),
        ("definitions/one.sql", "reads-clock"),
        ("definitions/three.sql", "unknown-table"),
        ("definitions/two.sql", "bad-annotation"),
        ("definitions/two.sql", "unknown-annotation"),
    ]


def test_comment_that_looks_like_an_annotation_warns(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", "-- ttl 3d\n" + SNAPSHOT.replace("    ", ""))
    code, problems = project.validate(capsys)
    assert code == 0
    assert [(p["severity"], p["line"], p["code"]) for p in problems] == [("warning", 1, "annotation-syntax")]


def test_duplicate_view_names_across_folders(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", SNAPSHOT, folder="a")
    project.view("spend", SNAPSHOT, folder="b")
    code, problems = project.validate(capsys)
    assert code == 1
    problem = only(problems, "duplicate-view")
    assert problem["path"] == "definitions/b/spend.sql" and "definitions/a/spend.sql" in problem["message"]


def test_text_and_github_formats(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", HEADER + "SELECT user_id, ts,\n  lead(amount) OVER (ORDER BY ts) AS x\nFROM events\n")
    code, out, _ = project.run("validate", capsys=capsys)
    assert code == 1
    assert "definitions/spend.sql:5:3: error[reads-future] lead() reads a later row" in out
    assert "fix: use lag()" in out
    code, out, _ = project.run("validate", "--format", "github", capsys=capsys)
    assert code == 1
    assert out.splitlines()[0].startswith("::error file=definitions/spend.sql,line=5,col=3,title=reads-future::lead()")


def test_cli_never_shows_a_traceback(project: ProjectDir) -> None:
    project.view("broken", "-- entity: user_id\nSELECT (((\n")
    (project.root / "featurestore.toml").write_text("colour = 1\n" + (project.root / "featurestore.toml").read_text())
    result = subprocess.run([sys.executable, "-m", "featurestore.cli.main", "--project", str(project.root), "validate"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "featurestore.toml:1:1: error[config] unknown setting 'colour'" in result.stdout


LEAKS = [
    ("partition_no_order", "SELECT user_id, ts,\n  count(*) OVER (PARTITION BY user_id) AS n\nFROM events\n", 5,
     "whole partition"),
    ("order_desc", "SELECT user_id, ts,\n  sum(amount) OVER (PARTITION BY user_id ORDER BY ts DESC) AS s\n"
     "FROM events\n", 5, "DESC"),
    ("qualify_latest", "SELECT user_id, ts, amount FROM events\n"
     "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ts DESC) = 1\n", 5, "DESC"),
    ("percent_rank", "SELECT user_id, ts,\n  percent_rank() OVER (PARTITION BY user_id ORDER BY ts) AS p\n"
     "FROM events\n", 5, "whole partition"),
    ("lag_expression", "SELECT user_id, ts,\n  lag(amount, 0 - 1) OVER (ORDER BY ts) AS p\nFROM events\n", 5,
     "positive"),
    ("now_string", "SELECT user_id, ts\nFROM events\nWHERE ts < 'now'::TIMESTAMP\n", 6, "reads the clock"),
    ("age_one_argument", "SELECT user_id, ts,\n  epoch(age(ts)) AS a\nFROM events\n", 5, "measures from today"),
    ("sample", "SELECT user_id, ts\nFROM events USING SAMPLE 10%\n", 5, "sampling is random"),
    ("bucket_start", "SELECT user_id,\n  date_trunc('day', ts) AS ts, count(*) AS n\nFROM events\nGROUP BY 1, 2\n", 5,
     "rounded down to the start of its period"),
    ("truncated_row", "SELECT user_id,\n  ts::DATE AS ts, amount\nFROM events\n", 5, "rounded down"),
    ("shifted_back", "SELECT user_id,\n  ts - INTERVAL 1 HOUR AS ts, amount\nFROM events\n", 5, "shifted back"),
]


@pytest.mark.parametrize(("name", "sql", "line", "message"), LEAKS, ids=[c[0] for c in LEAKS])
def test_leaks_are_refused(project: ProjectDir, capsys: pytest.CaptureFixture[str], name: str, sql: str, line: int,
                           message: str) -> None:
    project.view(name, HEADER + sql)
    code, problems = project.validate(capsys)
    assert code == 1
    assert [(p["line"], message in p["message"]) for p in problems] == [(line, True)], problems


SAFE = [
    ("partition_by_time", "SELECT user_id, ts, amount FROM events\n"
     "QUALIFY row_number() OVER (PARTITION BY user_id, ts ORDER BY card_id DESC) = 1\n"),
    ("ignore_nulls", "SELECT user_id, ts,\n"
     "  last_value(amount IGNORE NULLS) OVER (PARTITION BY user_id ORDER BY ts) AS a\nFROM events\n"),
    ("bounded_subquery", "SELECT e.user_id, e.ts,\n"
     "  (SELECT count(*) FROM events o WHERE o.user_id = e.user_id AND o.ts <= e.ts) AS n\nFROM events e\n"),
    ("trailing_comment", "SELECT user_id, ts FROM events;  -- the end\n"),
    ("bucket_end", "SELECT user_id, date_trunc('day', ts) + INTERVAL 1 DAY AS ts, count(*) AS n\n"
     "FROM events\nGROUP BY ALL\n"),
    ("todo_comment", "-- TODO: add more features\n-- see https://example.com/docs\nSELECT user_id, ts FROM events\n"),
]


@pytest.mark.parametrize(("name", "sql"), SAFE, ids=[c[0] for c in SAFE])
def test_leak_free_sql_is_accepted(project: ProjectDir, capsys: pytest.CaptureFixture[str], name: str,
                                   sql: str) -> None:
    project.view(name, HEADER + sql)
    assert project.validate(capsys) == (0, [])


@pytest.mark.parametrize("group", ["GROUP BY 1", "GROUP BY ALL", "GROUP BY user_id"])
def test_window_views_group_by_positions_and_all(project: ProjectDir, capsys: pytest.CaptureFixture[str],
                                                 group: str) -> None:
    project.view("activity", HEADER + f"-- windows: 1d\nSELECT user_id, count(*) AS n FROM events {group}\n")
    assert project.validate(capsys) == (0, [])


def test_header_errors_do_not_hide_sql_errors(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("spend", HEADER + "-- ttl: 3x\nSELECT user_id, ts,\n  lead(amount) OVER (ORDER BY ts) AS x\n"
                                   "FROM events\n")
    code, problems = project.validate(capsys)
    assert code == 1
    assert [(p["line"], p["code"]) for p in problems] == [(4, "bad-annotation"), (6, "reads-future")]


def test_a_cycle_does_not_hide_other_views(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("selfy", HEADER + "SELECT user_id, ts FROM selfy\n")
    project.view("z_base", SNAPSHOT)
    project.view("b_reader", HEADER + "SELECT user_id, ts, nothing FROM z_base\n")
    code, problems = project.validate(capsys)
    assert code == 1
    assert sorted((p["path"], p["code"]) for p in problems) == [
        ("definitions/b_reader.sql", "sql"), ("definitions/selfy.sql", "cycle")]


def test_a_cte_inside_a_subquery_does_not_hide_a_view(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("a1", SNAPSHOT)
    project.view("zz", HEADER + "SELECT a.user_id, a.ts FROM a1 a\n"
                                "WHERE EXISTS (WITH a1 AS (SELECT 1 AS z) SELECT z FROM a1)\n")
    assert project.validate(capsys) == (0, [])
    code, out, _ = project.run("compile", "zz", capsys=capsys)
    assert code == 0 and 'WITH "a1" AS (' in out
    import duckdb

    assert len(duckdb.sql(out).project("user_id").fetchall()) == 6


def test_validate_data_finds_duplicate_rows(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    project.view("dup", HEADER + "SELECT user_id, TIMESTAMPTZ '2026-01-01' AS ts, amount FROM events\n")
    project.view("fine", SNAPSHOT)
    assert project.validate(capsys) == (0, [])  # the definitions are fine; only the data is not
    code, out, _ = project.run("validate", "--data", "--format", "json", capsys=capsys)
    problems = json.loads(out)["problems"]
    assert code == 1
    assert [(p["path"], p["line"], p["code"]) for p in problems] == [("definitions/dup.sql", 2, "duplicate-rows")]
    assert "several rows with user_id=" in problems[0]["message"] and "-- created:" in problems[0]["hint"]


def test_a_source_with_arrivals_asks_its_views_to_declare_known_at(project: ProjectDir,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    from support import T0

    project.parquet("ledger", pa.table({"user_id": [1], "ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
                                        "ingested_at": pa.array([T0], pa.timestamp("us", tz="UTC")),
                                        "amount": [1.0]}))
    project.sources["ledger"] = '{ path = "data/ledger.parquet", arrival = "ingested_at" }'
    project.write_config()
    project.view("plain", HEADER + "SELECT user_id, ts, amount FROM ledger\n")
    project.view("honest", HEADER + "-- known_at: ingested_at\nSELECT user_id, ts, ingested_at, amount FROM ledger\n")
    exit_code, problems = project.validate(capsys)
    assert exit_code == 0
    warning = only(problems, "missing-known-at")
    assert (warning["path"], warning["severity"]) == ("definitions/plain.sql", "warning")
    assert "'ledger', which records when rows arrive ('ingested_at')" in warning["message"]
    assert warning["hint"] == "add `-- known_at: ingested_at` and select ingested_at"
    project.sources["ledger"] = '{ path = "data/ledger.parquet", arrival = "amount" }'
    project.write_config()
    exit_code, problems = project.validate(capsys)
    assert exit_code == 1
    assert "arrival column 'amount' has type DOUBLE" in only(problems, "source")["message"]
