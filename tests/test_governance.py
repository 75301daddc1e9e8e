"""Governance on a real PostgreSQL: registry, plan (registry and git), usage, unused, deprecation, describe."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from featurestore import FeatureStore
from featurestore.errors import FeatureDeprecationWarning, SunsetError
from featurestore.governance.describe import DataSpan
from featurestore.governance.plan import OwnerChange
from featurestore.governance.registry import SCHEMA
from featurestore.governance.unused import UnusedFeature, UnusedSource

from support import T0, ProjectDir, events_table

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: {owner}\n"
SPEND = HEADER.format(owner="fraud@example.com") + "SELECT user_id, ts, amount, card_id FROM events\n"
RISK = HEADER.format(owner="risk@example.com") + "SELECT user_id, ts, amount * 2 AS doubled FROM events\n"
PROFILE = (HEADER.format(owner="identity@example.com")
           + "-- tags: pii\nSELECT user_id, ts, 'c' || card_id AS card FROM events\n")


@pytest.fixture(autouse=True)
def database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test on the session's PostgreSQL, with empty registry and online schemas."""
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    monkeypatch.delenv("FEATURESTORE_CONSUMER", raising=False)
    sql(postgres_url, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; DROP SCHEMA IF EXISTS featurestore_online CASCADE")
    yield postgres_url


def sql(url: str, statement: str, parameters: list[Any] | None = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(project: ProjectDir) -> ProjectDir:
    """The project as a git repository whose first commit holds three views."""
    project.view("spend", SPEND)
    project.view("risk", RISK)
    project.view("profile", PROFILE)
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(project.root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base")
    return project


def read_spend(project: ProjectDir, consumer: str) -> None:
    with FeatureStore(project.root, consumer=consumer) as store:
        store.online({"user_id": [1, 2]}, ["spend.amount"], at=T0 + timedelta(hours=6))


def test_apply_records_views_versions_and_commit(repo: ProjectDir, database: str) -> None:
    store = FeatureStore(repo.root)
    summary = store.apply()
    head = git(repo.root, "rev-parse", "HEAD").strip()
    assert (summary["added"], summary["commit"], summary["to_materialize"]) == (
        ["profile", "risk", "spend"], head, ["profile", "risk", "spend"])
    rows = sql(database, f"SELECT view, version, entry->>'owner', commit, compiled_sql ILIKE '%read_parquet%' "
                         f"FROM {SCHEMA}.views ORDER BY view")
    assert rows == [(name, store.views[name].version, owner, head, True) for name, owner in
                    (("profile", "identity@example.com"), ("risk", "risk@example.com"), ("spend", "fraud@example.com"))]
    applied = {v["view"]: v for v in FeatureStore(repo.root).applied()}
    assert (applied["spend"]["version"], applied["spend"]["commit"]) == (store.views["spend"].version, head)
    store.materialize(until=T0 + timedelta(hours=6))
    again = FeatureStore(repo.root).apply()
    assert (again["unchanged"], again["to_materialize"]) == (["profile", "risk", "spend"], [])
    # A logic change: a new version, and the old one stays in the history.
    repo.view("spend", SPEND.replace("amount, card_id", "amount + 1 AS amount, card_id"))
    changed = FeatureStore(repo.root).apply()
    assert (changed["changed"], changed["commit"], changed["to_materialize"]) == (["spend"], f"{head}-dirty", ["spend"])
    assert sql(database, f"SELECT count(*) FROM {SCHEMA}.versions WHERE view = 'spend'") == [(2,)]
    assert sql(database, f"SELECT count(*) FROM {SCHEMA}.applies") == [(3,)]


def test_a_pull_request_is_planned_against_the_registry_and_git(repo: ProjectDir, database: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    store = FeatureStore(repo.root)
    store.apply()
    store.materialize(until=T0 + timedelta(hours=6))
    read_spend(repo, "fraud_model")
    # The pull request: a cosmetic edit, a logic change with a consumer, a removal, a new deprecation.
    repo.view("profile", "-- tags: pii\n" + HEADER.format(owner="identity@example.com")
              + "-- the card, as printed\nSELECT\n    user_id,\n    ts,\n    'c' || card_id AS card\nFROM events\n")
    repo.view("spend", SPEND.replace("amount, card_id", "amount, card_id * 10 AS card_number"))
    (repo.root / "definitions" / "risk.sql").unlink()
    repo.view("legacy", "-- deprecated: 2099-06-30 use spend.amount\n" + HEADER.format(owner="fraud@example.com")
              + "SELECT user_id, ts, amount AS old_amount FROM events\n")

    for against in (None, "main"):
        arguments = ["plan", "--format", "json"] + (["--against", against] if against else [])
        code, out, _ = repo.run(*arguments, "--fail-on", "breaking", capsys=capsys)
        result = json.loads(out)
        assert code == 3 and result["breaking"] is True
        assert [a["view"] for a in result["added"]] == ["legacy"]
        assert [(r["view"], r["features"], r["consumers"]) for r in result["removed"]] == [
            ("risk", ["doubled"], [])]
        [change] = result["changed"]
        assert (change["view"], change["because"], change["features_added"], change["features_removed"]) == (
            "spend", "logic", ["card_number"], ["card_id"])
        assert [c["consumer"] for c in change["consumers"]] == ["fraud_model"] and change["breaking"]
        assert change["backfill"]["online_table"] == \
            f'featurestore_online."spend__{FeatureStore(repo.root).views["spend"].version}"'
        assert [r["view"] for r in result["reformatted"]] == ["profile"]
        assert [(d["view"], d["sunset"], d["hint"]) for d in result["deprecations"]] == [
            ("legacy", "2099-06-30", "use spend.amount")]
        assert result["owner_changes"] == []
        typed = FeatureStore(repo.root).plan(against=against)  # the SDK's model is what --format json prints
        assert typed.model_dump(mode="json") == result
        assert (typed.breaking, typed.changed[0].features_removed, typed.changed[0].consumers[0].consumer) == (
            True, ("card_id",), "fraud_model")
        code, markdown, _ = repo.run(*(["plan"] + (["--against", against] if against else [])), capsys=capsys)
        assert code == 0
        assert "## Feature store plan: 1 added, 1 removed, 1 changed, 1 reformatted" in markdown
        assert "**Breaking:** `spend` has consumers." in markdown
        assert "| `spend` | " in markdown and "fraud_model (last read " in markdown
        assert "### Changed in form only (same version, no backfill)\n\n- `profile`" in markdown
        assert "| `legacy` | 2099-06-30 | use spend.amount | none |" in markdown
        assert "| `risk` | risk@example.com | `doubled` | none |" in markdown


def test_plan_against_git_needs_no_database_and_reports_owners(repo: ProjectDir, database: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", "postgresql://nobody:secret@127.0.0.1:9/none")
    repo.view("risk", RISK.replace("risk@example.com", "fraud@example.com"))
    code, out, _ = repo.run("plan", "--against", "main", "--format", "json", capsys=capsys)
    result = json.loads(out)
    assert code == 0 and result["usage"] == "declared only" and result["changed"] == []
    assert result["owner_changes"] == [{"view": "risk", "from": "risk@example.com", "to": "fraud@example.com"}]
    assert FeatureStore(repo.root).plan(against="main").owner_changes == (
        OwnerChange(view="risk", from_="risk@example.com", to="fraud@example.com"),)
    code, _, err = repo.run("plan", "--against", "no-such-branch", capsys=capsys)
    assert code == 1 and "'no-such-branch' names no commit" in err


def test_usage_is_recorded_per_feature_consumer_and_mode(repo: ProjectDir, database: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("featurestore.governance.usage.FLUSH_SECONDS", 3600.0)  # no background write during the test
    store = FeatureStore(repo.root, consumer="fraud_model")
    store.materialize(until=T0 + timedelta(hours=6))
    for _ in range(3):
        store.online({"user_id": [1, 2]}, ["spend.*"], at=T0 + timedelta(hours=6))
    spine = pl.DataFrame({"user_id": [0, 1, 2, 0], "ts": [T0 + timedelta(hours=h) for h in (1, 2, 3, 4)]})
    store.training_frame(spine, ["spend.amount"])
    written = sql(database, f"SELECT count(*) FROM {SCHEMA}.usage") if sql(
        database, f"SELECT to_regclass('{SCHEMA}.usage') IS NOT NULL")[0][0] else [(0,)]
    assert written == [(0,)]  # batched in memory, not yet written
    store.close()
    version = store.views["spend"].version
    rows = sql(database, f"SELECT view, feature, version, consumer, mode, reads, rows, first_seen <= last_seen "
                         f"FROM {SCHEMA}.usage ORDER BY mode, feature")
    assert rows == [("spend", "amount", version, "fraud_model", "offline", 1, 4, True),
                    ("spend", "amount", version, "fraud_model", "online", 3, 6, True),
                    ("spend", "card_id", version, "fraud_model", "online", 3, 6, True)]


def test_a_read_without_consumer_is_unknown_and_warns_once(repo: ProjectDir, database: str) -> None:
    import featurestore.store as module

    module._unknown_consumer_warned = False
    store = FeatureStore(repo.root)
    store.materialize(until=T0 + timedelta(hours=6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.online({"user_id": [1]}, ["spend.amount"])
        store.online({"user_id": [1]}, ["spend.amount"])
    assert [str(w.message)[:44] for w in caught] == ["this FeatureStore names no consumer, so its "]
    store.close()
    assert sql(database, f"SELECT consumer, reads FROM {SCHEMA}.usage") == [("unknown", 2)]


def test_usage_kept_on_disk_is_sent_once(repo: ProjectDir, database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featurestore.config import load_settings
    from featurestore.governance.usage import UsageRecorder, ingest_spool

    key = (("spend", "amount", "v1"),)
    monkeypatch.delenv("FEATURESTORE_POSTGRES_URL")  # embedded, and not running in this process: kept on disk
    offline = UsageRecorder(load_settings(repo.root))
    offline.record(key, "batch_job", "offline", 10)
    offline.close()
    spool = repo.root / ".featurestore" / "usage"
    [kept] = list(spool.glob("*.json"))
    saved = kept.read_text()
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", database)
    online = UsageRecorder(load_settings(repo.root))
    online.record(key, "batch_job", "offline", 5)
    online.close()  # writes its own batch and sends the kept one
    assert not kept.exists()
    kept.write_text(saved)  # as if a crash struck between the commit and the file's removal
    import psycopg

    with psycopg.connect(database) as connection:
        assert ingest_spool(connection, spool) == 0
    assert not kept.exists()
    assert sql(database, f"SELECT reads, rows FROM {SCHEMA}.usage WHERE consumer = 'batch_job'") == [(2, 15)]


def test_unused_lists_unread_features_and_sources(repo: ProjectDir, database: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    repo.parquet("orphan", events_table())
    store = FeatureStore(repo.root)
    store.materialize(until=T0 + timedelta(hours=6))
    read_spend(repo, "fraud_model")
    code, out, _ = repo.run("unused", "--format", "json", capsys=capsys)
    found = json.loads(out)
    features = {f["feature"]: f for f in found if f["kind"] == "feature"}
    assert code == 0 and sorted(features) == ["profile.card", "risk.doubled", "spend.card_id"]
    assert features["risk.doubled"]["owner"] == "risk@example.com" and features["risk.doubled"]["last_read"] is None
    assert features["risk.doubled"]["online_bytes"] > 0
    assert [f["source"] for f in found if f["kind"] == "source"] == ["orphan"]
    typed = FeatureStore(repo.root).unused()
    assert [item.model_dump(mode="json") for item in typed] == found
    assert [u.feature for u in typed if isinstance(u, UnusedFeature)] == [f["feature"] for f in found[:-1]]
    assert [u.source for u in typed if isinstance(u, UnusedSource)] == ["orphan"]
    # A read 40 days ago is not a read in the last 30 days, and shows as the last read.
    long_ago = datetime.now(UTC) - timedelta(days=40)
    sql(database, f"UPDATE {SCHEMA}.usage SET last_seen = %s, first_seen = %s", [long_ago, long_ago])
    code, out, _ = repo.run("unused", "--days", "30", "--format", "json", capsys=capsys)
    amount = next(f for f in json.loads(out) if f["feature"] == "spend.amount")
    assert datetime.fromisoformat(amount["last_read"]) == long_ago and amount["last_consumers"] == ["fraud_model"]
    code, out, _ = repo.run("unused", "--days", "60", capsys=capsys)
    assert "spend.amount" not in out and "risk.doubled" in out and "sources no view reads: orphan" in out


def test_deprecated_views_warn_then_are_refused_after_their_sunset(project: ProjectDir, database: str) -> None:
    project.view("soon", HEADER.format(owner="a@example.com") + "-- deprecated: 2099-01-01 use spend.amount\n"
                 "SELECT user_id, ts, amount AS soon_amount FROM events\n")
    project.view("past", HEADER.format(owner="a@example.com") + "-- deprecated: 2020-01-01 use spend.amount\n"
                 "SELECT user_id, ts, amount AS past_amount FROM events\n")
    store = FeatureStore(project.root, consumer="model")
    store.materialize(until=T0 + timedelta(hours=6))
    spine = pl.DataFrame({"user_id": [1], "ts": [T0 + timedelta(hours=5)]})
    with pytest.warns(FeatureDeprecationWarning, match="view 'soon' is deprecated and will be removed on 2099-01-01; "
                                                       "use spend.amount"):
        store.training_frame(spine, ["soon.*"])
    for read in (lambda **k: store.training_frame(spine, ["past.*"], **k),
                 lambda **k: store.online({"user_id": [1]}, ["past.past_amount"], **k)):
        with pytest.raises(SunsetError, match=r"view 'past' reached its sunset on 2020-01-01 and is no longer served; "
                                              r"use spend\.amount.*allow_deprecated=True"):
            read()
        with pytest.warns(FeatureDeprecationWarning, match="was to be removed on 2020-01-01"):
            assert len(read(allow_deprecated=True)) == 1
    store.close()


def test_describe_shows_annotations_span_freshness_and_consumers(repo: ProjectDir, database: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = repo.run("describe", "spend", "--format", "json", capsys=capsys)
    described = json.loads(out)
    assert code == 0 and described["online"] is None and described["recorded_consumers"] == []
    assert described["data"]["rows"] == 6 and described["data"]["first"].startswith("2026-01-01 00:00:00")
    assert described["data"]["last"].startswith("2026-01-01 05:00:00") and described["owner"] == "fraud@example.com"
    [source] = described["data"]["sources"]  # the source column the view's timestamp comes from
    assert (source["column"], source["rows"], source["first"][:19], source["last"][:19]) == (
        "events.ts", 6, "2026-01-01 00:00:00", "2026-01-01 05:00:00")
    typed = FeatureStore(repo.root).describe("spend")
    assert typed.model_dump(mode="json") == described
    assert typed.data is not None
    assert (typed.data.count, typed.data.unit, typed.owner) == (6, "rows", "fraud@example.com")
    FeatureStore(repo.root).materialize(until=T0 + timedelta(hours=6))
    read_spend(repo, "fraud_model")
    code, out, _ = repo.run("describe", "spend", "--format", "json", capsys=capsys)
    described = json.loads(out)
    assert described["online"]["watermark"] == (T0 + timedelta(hours=6)).isoformat()
    assert described["online"]["lag_seconds"] > 0
    assert [(c["consumer"], c["reads"]) for c in described["recorded_consumers"]] == [("fraud_model", 1)]
    code, out, _ = repo.run("describe", "spend", capsys=capsys)
    assert "read in the last 30 days by: fraud_model (1 reads" in out and "data: 6 rows, from 2026-01-01" in out
    code, _, err = repo.run("describe", "spned", capsys=capsys)
    assert code == 1 and "did you mean 'spend'" in err


def test_a_data_span_counts_rows_or_events_and_its_json_shows_that_one() -> None:
    span = {"first": None, "last": None, "sources": [], "invalid": [["2026-01-01T00:00:00+00:00",
                                                                      "2026-01-02T00:00:00+00:00"]],
            "available_since": None}
    events = DataSpan(events=3, **span)
    assert (events.count, events.unit) == (3, "events")
    assert events.model_dump(mode="json") == {"events": 3, **span}
    assert list(DataSpan(rows=0, **span).model_dump()) == ["rows", *span]
    with pytest.raises(ValueError, match="either rows or events"):
        DataSpan(**span)


def test_lineage_command(repo: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = repo.run("lineage", "risk.doubled", "--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)["sources"] == ["events.amount"]
    code, out, _ = repo.run("lineage", "--source", "events.card_id", "--format", "json", capsys=capsys)
    assert json.loads(out)["features"] == ["profile.card", "spend.card_id"]
    code, _, err = repo.run("lineage", capsys=capsys)
    assert code == 1 and "give either a feature" in err


def test_http_reads_are_recorded_with_their_consumer(repo: ProjectDir, database: str) -> None:
    from fastapi.testclient import TestClient

    from server import create_app

    store = FeatureStore(repo.root)
    store.materialize(until=T0 + timedelta(hours=6))
    with TestClient(create_app(store=store)) as client:
        for _ in range(2):
            assert client.post("/v1/features", json={"entities": {"user_id": [1, 2, 3]}, "features": ["spend.amount"]},
                               headers={"X-Consumer": "scoring"}).status_code == 200
        assert client.get("/v1/features/risk/1").status_code == 200
    store.close()
    rows = sql(database, f"SELECT view, feature, consumer, mode, reads, rows FROM {SCHEMA}.usage ORDER BY 1, 2")
    assert rows == [("risk", "doubled", "unknown", "online", 1, 1), ("spend", "amount", "scoring", "online", 2, 6)]
