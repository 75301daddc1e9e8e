"""Push on a real PostgreSQL and DuckDB: rows into a source, all or nothing, exactly once, read after write.

A source names its arrival column; views over it declare `known_at`. After a push returns, the
online values of the views it reports as updated include its rows, frames include them, and the
next materialization counts them once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore, FeatureStoreError, PushRejected

from reference import Measure, Rules, as_of, window_aggregate
from reference import known as reference_known
from support import ProjectDir, reset, serve, wait_until_up

UTC_US = pa.timestamp("us", tz="UTC")
NOW = datetime.now(UTC).replace(microsecond=0)
MINUTE = timedelta(minutes=1)
HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n-- known_at: ingested_at\n"


@pytest.fixture(autouse=True)
def online_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    yield postgres_url


def card_events(rows: list[tuple[int, datetime, float]]) -> pa.Table:
    return pa.table({"user_id": pa.array([r[0] for r in rows], pa.int64()),
                     "ts": pa.array([r[1] for r in rows], UTC_US),
                     "amount": pa.array([r[2] for r in rows], pa.float64()),
                     "ingested_at": pa.array([None] * len(rows), UTC_US)})


@pytest.fixture
def pushing(project: ProjectDir) -> Iterator[FeatureStore]:
    """card_events accepts pushes; a window view and a row-wise snapshot view over it (updated by a push),
    and a view joining it with users (pending until materialize)."""
    project.parquet("card_events", card_events([(1, NOW - 50 * MINUTE, 10.0), (2, NOW - 40 * MINUTE, 20.0)]))
    project.sources["card_events"] = '{ path = "data/card_events.parquet", arrival = "ingested_at" }'
    project.parquet("users", pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "country": ["FR", "DE", "US"]}))
    project.view("cards_added", HEADER + "-- windows: 1h, 1d\nSELECT user_id, count(*) AS cards, sum(amount) AS spent\n"
                 "FROM card_events GROUP BY user_id\n")
    project.view("last_card", HEADER + "SELECT user_id, ts, ingested_at, amount FROM card_events\n")
    project.view("card_country", HEADER + "SELECT e.user_id, e.ts, e.ingested_at, u.country\n"
                 "FROM card_events AS e JOIN users AS u USING (user_id)\n")
    with FeatureStore(project.root, consumer="test") as store:
        yield store


def online_now(store: FeatureStore, users: list[int]) -> list[dict]:
    return store.online({"user_id": users}, ["cards_added.*", "last_card.amount"]).to_dicts()


def frame_now(store: FeatureStore, users: list[int]) -> list[dict]:
    at = datetime.now(UTC)
    spine = pl.DataFrame({"user_id": users, "ts": [at] * len(users)},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC")})
    return store.training_frame(spine, ["cards_added.*", "last_card.amount"], cache=False).to_polars() \
        .drop("ts").to_dicts()


def landed(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute('SELECT count(*) FROM featurestore_push."card_events"').fetchone()[0]


def test_a_push_is_served_at_once_and_read_by_frames_and_counted_once(pushing: FeatureStore,
                                                                      online_database: str) -> None:
    store = pushing
    store.materialize()
    before = online_now(store, [1, 2, 3])
    assert [r["cards_1h"] for r in before] == [1, 1, 0]
    result = store.push("card_events", [{"user_id": 3, "ts": NOW - 5 * MINUTE, "amount": 7.5},
                                        {"user_id": 1, "ts": NOW - MINUTE, "amount": 2.5}])
    assert (result.rows, result.views_updated, result.views_pending) == (2, ("cards_added", "last_card"),
                                                                        ("card_country",))
    assert abs(result.arrived - datetime.now(UTC)) < timedelta(minutes=1)
    after = online_now(store, [1, 2, 3])
    assert [(r["cards_1h"], r["spent_1d"], r["amount"]) for r in after] == [(2, 12.5, 2.5), (1, 20.0, 20.0),
                                                                             (1, 7.5, 7.5)]
    assert frame_now(store, [1, 2, 3]) == after
    [*runs] = store.materialize()
    assert online_now(store, [1, 2, 3]) == after  # read again by materialize, counted once
    assert {r.view for r in runs if r.mode != "unchanged"} >= {"card_country"}
    assert store.online({"user_id": [3]}, ["card_country.country"])["country"].to_list() == ["US"]
    assert landed(online_database) == 2


def test_the_same_idempotency_key_applies_a_batch_once(pushing: FeatureStore, online_database: str) -> None:
    store = pushing
    store.materialize()
    rows = [{"user_id": 2, "ts": NOW - 2 * MINUTE, "amount": 1.0}]
    first = store.push("card_events", rows, idempotency_key="batch-1")
    again = store.push("card_events", rows, idempotency_key="batch-1")
    assert again.replayed and not first.replayed
    assert (again.rows, again.arrived, again.views_updated, again.batch) == \
        (first.rows, first.arrived, first.views_updated, first.batch)
    assert landed(online_database) == 1
    assert online_now(store, [2])[0]["cards_1h"] == 2
    other = store.push("card_events", rows, idempotency_key="batch-2")  # another key: another batch
    assert other.batch != first.batch and landed(online_database) == 2


@pytest.mark.parametrize(("rows", "row", "column", "message"), [
    ([{"user_id": 1, "ts": NOW, "amount": 1.0, "colour": "red"}], None, "colour", "has no column 'colour'"),
    ([{"user_id": 1, "ts": NOW}], None, "amount", "missing column 'amount'"),
    ([{"user_id": 1, "ts": NOW, "amount": 1.0}, {"user_id": "two", "ts": NOW, "amount": 1.0}], 1, "user_id",
     "'two' is not a whole number"),
    ([{"user_id": 1, "ts": NOW, "amount": 1.0}, {"user_id": 1, "ts": "yesterday", "amount": 1.0}], 1, "ts",
     "'yesterday' is not a timestamp"),
    ([{"user_id": 1, "ts": NOW, "amount": 1.0}, {"user_id": None, "ts": NOW, "amount": 1.0}], 1, "user_id",
     "NULL, but views read it as an entity key (card_country, cards_added, last_card)"),
    ([{"user_id": 1, "ts": None, "amount": 1.0}], 0, "ts", "NULL, but views read it as their time"),
    ([{"user_id": True, "ts": NOW, "amount": 1.0}], 0, "user_id", "whole number"),
    (["not a row"], 0, None, "each row must be an object"),
])
def test_a_bad_batch_names_its_row_and_column_and_writes_nothing(pushing: FeatureStore, online_database: str,
                                                                 rows: list, row: int | None, column: str | None,
                                                                 message: str) -> None:
    pushing.materialize()
    pushing.push("card_events", [{"user_id": 1, "ts": NOW - MINUTE, "amount": 1.0}])
    before = online_now(pushing, [1, 2])
    with pytest.raises(PushRejected) as refused:
        pushing.push("card_events", rows)
    assert (refused.value.row, refused.value.column) == (row, column)
    assert message in str(refused.value)
    assert landed(online_database) == 1
    assert online_now(pushing, [1, 2]) == before


def test_only_sources_with_an_arrival_column_take_pushes(pushing: FeatureStore) -> None:
    with pytest.raises(FeatureStoreError, match=r"source 'users' does not accept pushes; .*arrival = "):
        pushing.push("users", [{"user_id": 9, "country": "IT"}])
    with pytest.raises(FeatureStoreError, match=r"unknown source 'card_event'.*card_events"):
        pushing.push("card_event", [])


def test_a_backfilled_arrival_is_kept_and_a_row_not_yet_known_waits(pushing: FeatureStore) -> None:
    """A row that carries its arrival keeps it; a row arriving in the future of the push is not served
    before it is known, offline or online."""
    store = pushing
    store.materialize()
    later = datetime.now(UTC) + timedelta(hours=1)
    result = store.push("card_events", [{"user_id": 2, "ts": NOW - 3 * MINUTE, "amount": 5.0,
                                         "ingested_at": later}])
    assert result.views_updated == ("cards_added", "last_card")
    assert online_now(store, [2])[0]["cards_1h"] == 1  # not yet known
    assert frame_now(store, [2])[0]["cards_1h"] == 1
    spine = pl.DataFrame({"user_id": [2], "ts": [later + MINUTE]},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC")})
    assert store.training_frame(spine, ["cards_added.cards_1d"], cache=False).to_polars()["cards_1d"].to_list() == [2]


def test_pushes_before_the_first_materialize_are_backfilled(pushing: FeatureStore) -> None:
    result = pushing.push("card_events", [{"user_id": 3, "ts": NOW - MINUTE, "amount": 4.0}])
    assert result.views_updated == () and set(result.views_pending) == {"cards_added", "last_card", "card_country"}
    pushing.materialize()
    assert online_now(pushing, [3])[0]["amount"] == 4.0
    assert online_now(pushing, [1, 2, 3]) == frame_now(pushing, [1, 2, 3])


def test_the_cli_pushes_a_file_and_names_a_bad_row(pushing: FeatureStore, project: ProjectDir,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    pushing.materialize()
    lines = project.root / "new.jsonl"
    lines.write_text(json.dumps({"user_id": 3, "ts": (NOW - MINUTE).isoformat(), "amount": 2.0}) + "\n")
    code, out, err = project.run("push", "card_events", str(lines), "--format", "json", "--idempotency-key", "k1",
                                 capsys=capsys)
    assert (code, err) == (0, "")
    answer = json.loads(out)
    assert (answer["rows"], answer["views_updated"], answer["replayed"]) == (1, ["cards_added", "last_card"], False)
    table = project.root / "more.csv"
    table.write_text(f"user_id,ts,amount\n3,{(NOW - MINUTE).isoformat()},3.0\nthree,{NOW.isoformat()},1.0\n")
    code, out, err = project.run("push", "card_events", str(table), capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert "row 1, column 'user_id': 'three' is not a" in err
    code, out, err = project.run("push", "card_events", str(lines), "--idempotency-key", "k1", capsys=capsys)
    assert code == 0 and "already, under this idempotency key" in out
    assert online_now(pushing, [3])[0]["cards_1h"] == 1


PUSH_KEY, READ_KEY = "fs_pusher_secret", "fs_reader_secret"


@pytest.fixture
def served(pushing: FeatureStore, project: ProjectDir) -> Iterator[tuple[Any, FeatureStore]]:
    """The lookup service over the pushing project, with a key that may push and one that only reads."""
    import hashlib

    from fastapi.testclient import TestClient

    from server import create_app

    digest = {key: hashlib.sha256(key.encode()).hexdigest() for key in (PUSH_KEY, READ_KEY)}
    with open(project.root / "featurestore.toml", "a") as config:
        config.write(f'\n[server.keys.ingest]\nsha256 = "{digest[PUSH_KEY]}"\npush = true\n'
                     f'[server.keys.model]\nsha256 = "{digest[READ_KEY]}"\n')
    with FeatureStore(project.root, consumer="test") as store:
        store.materialize()
        with TestClient(create_app(store=store)) as client:
            yield client, store


def test_http_push_needs_the_push_right_and_is_read_after_write(served: tuple[Any, FeatureStore]) -> None:
    client, _ = served
    body = {"rows": [{"user_id": 3, "ts": (NOW - MINUTE).isoformat(), "amount": 9.0}]}
    lookup = {"entities": {"user_id": [3]}, "features": ["cards_added.cards_1h", "last_card.amount"]}
    assert client.post("/v1/push/card_events", json=body).status_code == 401
    denied = client.post("/v1/push/card_events", json=body, headers={"X-API-Key": READ_KEY})
    assert denied.status_code == 403 and "may not push rows" in denied.json()["error"]
    sent = {"X-API-Key": PUSH_KEY, "Idempotency-Key": "http-1"}
    first = client.post("/v1/push/card_events", json=body, headers=sent)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["rows"], answer["views_updated"], answer["replayed"]) == (1, ["cards_added", "last_card"], False)
    served_now = client.post("/v1/features", json=lookup, headers={"X-API-Key": READ_KEY}).json()["features"]
    assert served_now == {"cards_added.cards_1h": [1], "last_card.amount": [9.0]}
    again = client.post("/v1/push/card_events", json=body, headers=sent).json()
    assert again == {**answer, "replayed": True}
    assert client.post("/v1/features", json=lookup, headers={"X-API-Key": READ_KEY}).json()["features"] == served_now


def test_http_push_errors_are_4xx_naming_row_and_column(served: tuple[Any, FeatureStore]) -> None:
    client, _ = served
    key = {"X-API-Key": PUSH_KEY}
    bad = client.post("/v1/push/card_events", headers=key, json={"rows": [
        {"user_id": 3, "ts": NOW.isoformat(), "amount": 1.0}, {"user_id": 3, "ts": NOW.isoformat(), "amount": "x"}]})
    assert bad.status_code == 422
    assert (bad.json()["row"], bad.json()["column"]) == (1, "amount")
    assert client.post("/v1/push/nowhere", headers=key, json={"rows": [{"a": 1}]}).status_code == 404
    assert client.post("/v1/push/users", headers=key, json={"rows": [{"user_id": 1}]}).status_code == 422
    assert client.post("/v1/push/card_events", headers=key, json={"rows": []}).status_code == 422
    assert client.post("/v1/push/card_events", headers=key, content=b"{not json").status_code == 422
    long_key = {**key, "Idempotency-Key": "k" * 201}
    assert client.post("/v1/push/card_events", headers=long_key, json={"rows": [
        {"user_id": 3, "ts": NOW.isoformat(), "amount": 1.0}]}).status_code == 422


def test_no_push_request_causes_a_server_error(served: tuple[Any, FeatureStore]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    client, _ = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operation = next(op for op in schema.get_all_operations() if op.ok().path == "/v1/push/{source}").ok()
    failures, statuses = [], set()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            case.path_parameters = {"source": "card_events"}  # the one source that takes pushes
            response = case.call(headers={"X-API-Key": PUSH_KEY})
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.body!r}: {response.status_code} {response.text[:200]}")

        check()
    assert failures == []
    assert 422 in statuses


def test_compaction_moves_pushed_rows_into_files_and_changes_no_answer(pushing: FeatureStore, project: ProjectDir,
                                                                       online_database: str) -> None:
    store = pushing
    store.materialize()
    for number in range(3):
        store.push("card_events", [{"user_id": 1 + number % 3, "ts": NOW - (10 - number) * MINUTE,
                                    "amount": float(number)}])
    backfill = datetime(2020, 5, 17, 12, tzinfo=UTC)  # a backfill from a log: arrivals on another day
    store.push("card_events", [{"user_id": 2, "ts": backfill, "amount": 99.0, "ingested_at": backfill}])
    before = (online_now(store, [1, 2, 3]), frame_now(store, [1, 2, 3]))
    stray = project.root / ".featurestore" / "pushed" / "card_events" / "left_by_a_crash.parquet"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"not listed in the manifest")
    [done] = store.compact()
    assert (done.rows, done.batches, done.files) == (4, 4, 2)  # two arrival days
    assert landed(online_database) == 0 and not stray.exists()
    days = sorted(p.parent.name for p in (project.root / ".featurestore" / "pushed" / "card_events").rglob("*.parquet"))
    assert days == ["ingested_at_date=2020-05-17", f"ingested_at_date={datetime.now(UTC).date()}"]
    assert (online_now(store, [1, 2, 3]), frame_now(store, [1, 2, 3])) == before
    store.materialize()  # reads the compacted rows once, as it read the landed ones
    assert (online_now(store, [1, 2, 3]), frame_now(store, [1, 2, 3])) == before
    assert store.compact()[0].rows == 0
    store.push("card_events", [{"user_id": 3, "ts": NOW - MINUTE, "amount": 1.0}])
    assert online_now(store, [3])[0]["cards_1h"] == 2 and frame_now(store, [3])[0]["cards_1h"] == 2
    assert store.compact(["card_events"])[0].rows == 1
    assert frame_now(store, [1, 2, 3]) == online_now(store, [1, 2, 3])
    with pytest.raises(FeatureStoreError, match="takes no pushes"):
        store.compact(["users"])


US = timedelta(microseconds=1)
FEATURES = ["cards_added.*", "last_card.amount"]
RULES = Rules(entity=("user_id",), timestamp="ts", known_at="ingested_at", created="ingested_at",
              features=("amount",))
PROPERTY_EXAMPLES = max(5, int(os.environ.get("FEATURESTORE_EXAMPLES", "1000")) // 40)


OFFSETS = [timedelta(seconds=1), timedelta(seconds=1, microseconds=1), timedelta(minutes=10),
           timedelta(minutes=59, seconds=59), timedelta(hours=1), timedelta(hours=2), timedelta(days=1, seconds=1)]


@st.composite
def operations(draw: st.DrawFn) -> list[tuple]:
    """Pushes (stamped, early, on-time or late backfilled arrivals; repeated rows; retries with the same
    key), materialize runs and compactions, in any order."""
    ops = []
    for number in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["push", "push", "push", "materialize", "compact"]))
        if kind != "push":
            ops.append((kind,))
            continue
        rows = draw(st.lists(st.fixed_dictionaries({
            "user_id": st.integers(1, 4), "offset": st.sampled_from(OFFSETS),
            "amount": st.sampled_from([0.5, 1.0, 2.5, -3.0]),
            "arrival": st.one_of(st.none(), st.sampled_from([-timedelta(minutes=1), timedelta(0),
                                                             timedelta(microseconds=1)]))}),
            min_size=1, max_size=4, unique_by=lambda r: (r["user_id"], r["offset"])))
        ops.append(("push", rows, draw(st.sampled_from([None, f"key-{number}"])), draw(st.booleans())))
    return ops


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(operations(), st.data())
def test_online_equals_frames_and_frames_equal_the_reference_after_any_pushes(
        project: ProjectDir, online_database: str, ops: list[tuple], data: st.DataObject) -> None:
    reset(online_database)
    start = datetime.now(UTC)
    initial = [(1, start - timedelta(hours=3), 10.0), (2, start - timedelta(minutes=30), 20.0),
               (3, start - timedelta(days=2), 30.0)]
    project.parquet("card_events", card_events(initial))
    project.sources["card_events"] = '{ path = "data/card_events.parquet", arrival = "ingested_at" }'
    project.write_config()
    project.view("cards_added", HEADER + "-- windows: 1h, 1d\nSELECT user_id, count(*) AS cards, sum(amount) AS spent"
                 "\nFROM card_events GROUP BY user_id\n")
    project.view("last_card", HEADER + "-- created: ingested_at\nSELECT user_id, ts, ingested_at, amount "
                 "FROM card_events\n")
    rows = [{"user_id": u, "ts": ts, "amount": a, "ingested_at": None} for u, ts, a in initial]
    with FeatureStore(project.root, consumer="test") as store:
        for op in [("materialize",), *ops]:  # a deployed store: materialized once, then pushed to
            if op[0] == "materialize":
                store.materialize()
            elif op[0] == "compact":
                store.compact()
            else:
                _, drawn, key, retry = op
                now = datetime.now(UTC)
                batch = [{"user_id": r["user_id"], "ts": now - r["offset"], "amount": r["amount"],
                          **({} if r["arrival"] is None else {"ingested_at": now - r["offset"] + r["arrival"]})}
                         for r in drawn]
                result = store.push("card_events", batch, idempotency_key=key)
                rows += [{"ingested_at": result.arrived, **r} for r in batch]
                if retry:
                    again = store.push("card_events", batch, idempotency_key=key)
                    assert again.replayed == (key is not None)
                    if key is None:  # without a key, a batch sent twice is two batches
                        rows += [{"ingested_at": again.arrived, **r} for r in batch]
        users = [1, 2, 3, 4, 5]
        done = datetime.now(UTC)
        for at in (done, done + timedelta(microseconds=1), done + timedelta(hours=1), done + timedelta(days=1)):
            online = store.online({"user_id": users}, FEATURES, at=at).to_dicts()
            assert online == frame_at(store, users, at), at
        times = sorted({known(r) + d for r in rows for d in (-US, timedelta(0), US)} | {done})
        for at in data.draw(st.lists(st.sampled_from(times), min_size=1, max_size=4, unique=True)):
            assert frame_at(store, users, at) == reference_at(rows, users, at), at


def known(row: dict) -> datetime:
    return reference_known(row, RULES)


def frame_at(store: FeatureStore, users: list[int], at: datetime) -> list[dict]:
    spine = pl.DataFrame({"user_id": users, "ts": [at] * len(users)},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC")})
    return store.training_frame(spine, FEATURES, cache=False).to_polars().drop("ts").to_dicts()


def reference_at(rows: list[dict], users: list[int], at: datetime) -> list[dict]:
    count, total = Measure("count", lambda e: 1), Measure("sum", lambda e: e["amount"])
    found = []
    for user in users:
        values: dict[str, Any] = {"user_id": user}
        for label, length in (("1h", timedelta(hours=1)), ("1d", timedelta(days=1))):
            values[f"cards_{label}"] = window_aggregate(rows, (user,), at, RULES, count, length)
            values[f"spent_{label}"] = window_aggregate(rows, (user,), at, RULES, total, length)
        found.append({**{k: values[k] for k in ("user_id", "cards_1h", "cards_1d", "spent_1h", "spent_1d")},
                      "amount": as_of(rows, (user,), at, RULES)["amount"]})
    return found


def _cli(project: ProjectDir, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "featurestore.cli.main", "--project", str(project.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _big_batch(project: ProjectDir, rows: int) -> str:
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    micros = rng.choice(np.arange(60_000_000, 86_400_000_000, 997), rows, replace=False)  # unique: no ties
    path = project.root / "big.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array(rng.integers(1, 1000, rows), pa.int64()),
        "ts": pa.array([NOW - timedelta(microseconds=int(m)) for m in micros], UTC_US),
        "amount": pa.array(rng.integers(0, 400, rows) / 4, pa.float64())}), path)  # sums exact in any order
    return str(path)


def _answers(store: FeatureStore, at: datetime) -> list[dict]:
    """Some users' window features at `at`, online; they must equal the training frame's."""
    users = [1, 2, 3, 500, 999]
    online = store.online({"user_id": users}, ["cards_added.*"], at=at).to_dicts()
    frame = store.training_frame(pl.DataFrame({"user_id": users, "ts": [at] * len(users)},
                                              schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC")}),
                                 ["cards_added.*"], cache=False).to_polars().drop("ts").to_dicts()
    assert online == frame
    return online


def _killed_at(project: ProjectDir, online_database: str, fraction: float, full: float, *args: str) -> bool:
    import signal
    import time

    run = _cli(project, *args)
    time.sleep(full * fraction)
    run.send_signal(signal.SIGKILL)
    return run.wait() == -signal.SIGKILL


def test_a_push_killed_at_any_point_then_sent_again_lands_once(pushing: FeatureStore, project: ProjectDir,
                                                               online_database: str) -> None:
    import shutil
    import time

    rows = 60_000
    batch = _big_batch(project, rows)
    pushing.materialize()
    started = time.perf_counter()
    first = _cli(project, "push", "card_events", batch, "--idempotency-key", "big")
    assert first.wait() == 0, first.stderr.read() if first.stderr else ""
    full = time.perf_counter() - started
    killed = 0
    for fraction in (0.3, 0.6, 0.85):
        reset(online_database)
        shutil.rmtree(project.root / ".featurestore" / "pushed", ignore_errors=True)
        pushing.materialize()
        killed += _killed_at(project, online_database, fraction, full, "push", "card_events", batch,
                             "--idempotency-key", "big")
        again = pushing.push("card_events", pl.read_parquet(batch), idempotency_key="big")
        assert again.rows == rows
        assert landed(online_database) == rows
        assert sum(r["cards_1d"] for r in _answers(pushing, datetime.now(UTC))) > 0
    assert killed >= 2  # the test did kill pushes in the middle


def test_a_compaction_killed_at_any_point_loses_and_doubles_nothing(pushing: FeatureStore, project: ProjectDir,
                                                                   online_database: str) -> None:
    import shutil
    import time

    import psycopg

    rows = 60_000
    batch = _big_batch(project, rows)
    pushing.materialize()
    pushing.push("card_events", pl.read_parquet(batch), idempotency_key="big")
    started = time.perf_counter()
    [done] = pushing.compact()
    full = time.perf_counter() - started
    assert done.rows == rows
    killed = 0
    for fraction in (0.2, 0.5, 0.8):
        reset(online_database)  # from the start: materialized, then the rows pushed
        shutil.rmtree(project.root / ".featurestore" / "pushed", ignore_errors=True)
        pushing.materialize()
        pushing.push("card_events", pl.read_parquet(batch), idempotency_key="big")
        at = datetime.now(UTC)
        expected = _answers(pushing, at)
        killed += _killed_at(project, online_database, fraction, full, "compact")
        assert _answers(pushing, at) == expected  # a reader between the kill and the next compaction
        pushing.compact()
        with psycopg.connect(online_database) as connection:
            kept = connection.execute("SELECT coalesce(sum(rows), 0) FROM featurestore_push.files").fetchone()[0]
        assert (landed(online_database), kept) == (0, rows)
        assert _answers(pushing, at) == expected
    assert killed >= 2


PUSHER = """
import sys
from datetime import UTC, datetime, timedelta

from featurestore import FeatureStore

root, number, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with FeatureStore(root, consumer="pusher") as store:
    for batch in range(batches):
        now = datetime.now(UTC)
        rows = [{"user_id": 1 + (number + row) % 4, "ts": now - timedelta(seconds=1 + row, microseconds=number),
                 "amount": 1.0} for row in range(3)]
        store.push("card_events", rows, idempotency_key=f"p{number}-b{batch}")
"""


def test_concurrent_pushes_from_processes_and_a_two_worker_server_all_land_once(
        pushing: FeatureStore, project: ProjectDir, online_database: str) -> None:
    import asyncio
    import hashlib
    import os
    import subprocess
    import sys

    import httpx
    with open(project.root / "featurestore.toml", "a") as config:
        config.write(f'\n[server.keys.ingest]\nsha256 = "{hashlib.sha256(PUSH_KEY.encode()).hexdigest()}"\n'
                     "push = true\n")
    pushing.materialize()
    environment = {**os.environ, "FEATURESTORE_POSTGRES_URL": online_database}
    server, base = serve(project.root, online_database)
    try:
        wait_until_up(base)
        pushers = [subprocess.Popen([sys.executable, "-c", PUSHER, str(project.root), str(n), "8"], env=environment,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(3)]

        async def over_http() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=30, headers={"X-API-Key": PUSH_KEY}) as client:
                async def one(number: int) -> int:
                    now = datetime.now(UTC)
                    body = {"rows": [{"user_id": 1 + number % 4, "ts": (now - timedelta(seconds=2)).isoformat(),
                                      "amount": 1.0}]}
                    key = {"Idempotency-Key": f"h{number}"}
                    first = await client.post("/v1/push/card_events", json=body, headers=key)
                    again = await client.post("/v1/push/card_events", json=body, headers=key)
                    assert again.json()["batch"] == first.json()["batch"], (first.text, again.text)
                    return first.status_code
                return list(await asyncio.gather(*(one(n) for n in range(24))))

        statuses = asyncio.run(over_http())
        pushing.materialize()  # a run among the pushes
        for process in pushers:
            assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
        assert statuses == [200] * 24
        assert landed(online_database) == 3 * 8 * 3 + 24
        at = datetime.now(UTC)
        users = [1, 2, 3, 4]
        online = pushing.online({"user_id": users}, ["cards_added.cards_1h"], at=at).to_dicts()
        assert online == frame_at_features(pushing, users, at, ["cards_added.cards_1h"])
        from_file = sum(at - timedelta(hours=1) <= ts for ts in (NOW - 50 * MINUTE, NOW - 40 * MINUTE))
        assert sum(r["cards_1h"] for r in online) == 3 * 8 * 3 + 24 + from_file
    finally:
        server.terminate()
        server.wait(timeout=20)


def frame_at_features(store: FeatureStore, users: list[int], at: datetime, features: list[str]) -> list[dict]:
    spine = pl.DataFrame({"user_id": users, "ts": [at] * len(users)},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC")})
    return store.training_frame(spine, features, cache=False).to_polars().drop("ts").to_dicts()


@pytest.mark.parametrize("on_failed", ["fail", "quarantine"])
def test_expectations_apply_to_pushed_rows(project: ProjectDir, online_database: str, on_failed: str) -> None:
    import psycopg

    project.parquet("card_events", card_events([(1, NOW - 50 * MINUTE, 10.0)]))
    project.sources["card_events"] = '{ path = "data/card_events.parquet", arrival = "ingested_at" }'
    project.write_config(f'[online]\non_failed_expectation = "{on_failed}"\n')
    project.view("last_card", HEADER + "-- expect: amount >= 0\nSELECT user_id, ts, ingested_at, amount "
                 "FROM card_events\n")
    project.view("cards_added", HEADER + "-- windows: 1h\n-- expect: spent_1h >= 0\n"
                 "SELECT user_id, count(*) AS cards, sum(amount) AS spent FROM card_events GROUP BY user_id\n")
    with FeatureStore(project.root, consumer="test") as store:
        store.materialize()
        bad = [{"user_id": 2, "ts": NOW - MINUTE, "amount": -5.0}]
        if on_failed == "fail":
            refused = r"cards_added.*fails `expect: spent_1h >= 0`.*nothing was written"
            with pytest.raises(FeatureStoreError, match=refused):
                store.push("card_events", bad)
            assert landed(online_database) == 0
        else:
            result = store.push("card_events", bad)
            assert result.views_updated == ("cards_added", "last_card")
            with psycopg.connect(online_database) as connection:
                set_aside = connection.execute("SELECT view, expectation FROM featurestore_online.quarantine "
                                               "ORDER BY view").fetchall()
            assert set_aside == [("cards_added", "spent_1h >= 0"), ("last_card", "amount >= 0")]
        served = store.online({"user_id": [2]}, ["last_card.amount", "cards_added.cards_1h"]).to_dicts()
        assert served == [{"user_id": 2, "amount": None, "cards_1h": 0}]


def test_an_unreachable_postgres_is_unavailable_not_an_internal_error(project: ProjectDir,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from featurestore.errors import UnavailableError

    project.parquet("card_events", card_events([(1, NOW - 50 * MINUTE, 10.0)]))
    project.sources["card_events"] = '{ path = "data/card_events.parquet", arrival = "ingested_at" }'
    project.write_config()
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:9/postgres?connect_timeout=1")
    with FeatureStore(project.root, consumer="test") as store, \
            pytest.raises(UnavailableError, match="cannot connect to PostgreSQL"):
        store.push("card_events", [{"user_id": 1, "ts": NOW, "amount": 1.0}])
