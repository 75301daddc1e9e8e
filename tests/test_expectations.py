"""`-- expect:` conditions: checked by validate, enforced by materialize (fail, or quarantine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pyarrow as pa
import pytest

from featurestore import FeatureStore, FeatureStoreError

from support import T0, ProjectDir, reset

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"
UNTIL = T0 + timedelta(hours=10)


@pytest.fixture
def project_with_events(project: ProjectDir, postgres_url: str,
                        monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectDir]:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    # user_id = i % 3, amount = i - 4 (negative for i < 4), ts = T0 + i hours; user 2's label is NULL
    project.parquet("events", pa.table({
        "user_id": pa.array([i % 3 for i in range(9)], pa.int64()),
        "amount": pa.array([float(i - 4) for i in range(9)]),
        "label": pa.array([None if i % 3 == 2 else "x" for i in range(9)], pa.string()),
        "ts": pa.array([T0 + timedelta(hours=i) for i in range(9)], pa.timestamp("us", tz="UTC"))}))
    yield project


def quarantined(postgres_url: str) -> list[tuple]:
    with psycopg.connect(postgres_url) as connection:
        return connection.execute("SELECT view, expectation, row FROM featurestore_online.quarantine "
                                  "ORDER BY row->>'user_id'").fetchall()


def test_validate_reports_bad_expectations_at_their_line(project_with_events: ProjectDir,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    project = project_with_events
    project.view("spend", HEADER + "-- expect: amont >= 0, label not null\n"
                                   "SELECT user_id, ts, amount, label FROM events\n")
    code, problems = project.validate(capsys)
    assert code == 1
    assert (problems[0]["line"], problems[0]["message"]) == (
        4, "expect: 'amont' in 'amont >= 0' is not a feature of the view")
    assert "did you mean 'amount'" in problems[0]["hint"]
    project.view("spend", HEADER + "-- expect: sum(amount) > 0\nSELECT user_id, ts, amount, label FROM events\n")
    code, problems = project.validate(capsys)
    assert code == 1 and "must be one condition on one row's features" in problems[0]["message"]
    project.view("spend", HEADER + "-- expect: amount > 0; DROP TABLE events\n"
                                   "SELECT user_id, ts, amount, label FROM events\n")
    code, problems = project.validate(capsys)
    assert code == 1 and "must be one condition" in problems[0]["message"]  # one condition, never a statement
    project.view("spend", HEADER + "-- expect: amount >= -10, coalesce(label, 'y') IN ('x', 'y'), label not null\n"
                                   "SELECT user_id, ts, amount, label FROM events\n")
    assert project.validate(capsys)[0] == 0


def test_a_failed_expectation_stops_the_run_and_writes_nothing(project_with_events: ProjectDir,
                                                               postgres_url: str) -> None:
    project = project_with_events
    project.view("spend", HEADER + "-- expect: amount >= 0, label not null\n"
                                   "SELECT user_id, ts, amount, label FROM events\n")
    store = FeatureStore(project.root, consumer="test")
    with pytest.raises(FeatureStoreError, match=r"spend.sql:4: view 'spend': 1 row fails `expect: NOT label IS NULL` "
                                                r"\(e.g. \{\"user_id\":2,.*nothing was written.*quarantine"):
        store.materialize(until=UNTIL)
    with psycopg.connect(postgres_url) as connection:  # the run left nothing behind
        assert connection.execute("SELECT count(*) FROM featurestore_online.watermarks").fetchone()[0] == 0
        assert connection.execute("SELECT to_regclass('featurestore_online.\"spend__' || %s || '\"')",
                                  [store.view("spend").version]).fetchone()[0] is None
    store.close()


def test_quarantine_sets_failing_rows_aside_and_serves_the_rest(project_with_events: ProjectDir,
                                                                postgres_url: str) -> None:
    project = project_with_events
    project.write_config('[online]\non_failed_expectation = "quarantine"\n')
    project.view("spend", HEADER + "-- expect: label not null\nSELECT user_id, ts, amount, label FROM events\n")
    store = FeatureStore(project.root, consumer="test")
    [run] = store.materialize(until=UNTIL)
    assert (run.read, run.written, run.quarantined) == (3, 2, 1)
    online = store.online({"user_id": [0, 1, 2]}, ["spend.*"], at=UNTIL)
    assert online["amount"].to_list() == [2.0, 3.0, None]  # user 2's latest row was set aside: not served
    [(view, expectation, row)] = quarantined(postgres_url)
    assert (view, expectation) == ("spend", "NOT label IS NULL")
    assert row == {"user_id": 2, "ts": "2026-01-01 08:00:00+00", "amount": 4.0, "label": None}
    store.close()


def test_quarantined_rows_keep_nan_as_null(project_with_events: ProjectDir, postgres_url: str) -> None:
    project = project_with_events
    project.write_config('[online]\non_failed_expectation = "quarantine"\n')
    project.view("spend", HEADER + "-- expect: ratio < 1\n"
                                   "SELECT user_id, ts, CASE WHEN user_id = 0 THEN 'NaN'::DOUBLE ELSE amount END "
                                   "AS ratio FROM events\n")
    store = FeatureStore(project.root, consumer="test")
    [run] = store.materialize(until=UNTIL)
    assert run.quarantined == 3  # NaN is greater than every number in DuckDB; users 1 and 2 have 3.0 and 4.0
    rows = {r[2]["user_id"]: r[2]["ratio"] for r in quarantined(postgres_url)}
    assert rows == {0: None, 1: 3.0, 2: 4.0}  # NaN is not JSON: recorded as null
    store.close()


def test_window_expectations_hold_for_the_features_served(project_with_events: ProjectDir,
                                                          postgres_url: str) -> None:
    project = project_with_events
    project.write_config('[online]\non_failed_expectation = "quarantine"\n')
    project.view("activity", HEADER + "-- windows: 6h\n-- expect: low_6h >= -2\n"
                                      "SELECT user_id, count(*) AS n, min(amount) AS low FROM events "
                                      "GROUP BY user_id\n")
    store = FeatureStore(project.root, consumer="test")
    # At 6h the window holds events 0..5: the lows are -4 (user 0), -3 (user 1) and -2 (user 2).
    [run] = store.materialize(until=T0 + timedelta(hours=6))
    assert run.quarantined == 2  # users 0 and 1
    assert {json.dumps(r[2], sort_keys=True) for r in quarantined(postgres_url)} == {
        json.dumps({"user_id": 0, "n_6h": 2, "low_6h": -4.0}, sort_keys=True),
        json.dumps({"user_id": 1, "n_6h": 2, "low_6h": -3.0}, sort_keys=True)}
    served = store.online({"user_id": [0, 1, 2]}, ["activity.*"], at=T0 + timedelta(hours=6))
    assert served["n_6h"].to_list() == [0, 0, 2]  # the set-aside entities' events are not online
    store.close()
