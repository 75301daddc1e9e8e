"""The HTTP lookup service on a real PostgreSQL: values, errors, keys, deprecation, metrics, faults."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from featurestore import FeatureStore

from support import T0, ProjectDir, free_port, serve, wait_until_up

HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: team@example.com\n"
KEYS = {"fraud": "fs_fraud_secret", "analytics": "fs_analytics_secret"}


def write_project(project: ProjectDir, server: str = "") -> None:
    # events: user_id = i % 3, card_id = i, amount = i, ts = T0 + i hours, for i in 0..5
    project.view("spend", HEADER + "SELECT user_id, ts, amount, card_id, amount > 2 AS big FROM events\n")
    project.view("profile", HEADER + "-- tags: pii\nSELECT user_id, ts, 'c' || card_id AS card FROM events\n")
    project.view("old", HEADER + "-- deprecated: 2099-01-01 use spend.amount\nSELECT user_id, ts, amount AS old_amount "
                                 "FROM events\n")
    project.view("gone", HEADER + "-- deprecated: 2020-01-01\nSELECT user_id, ts, amount AS gone_amount FROM events\n")
    project.view("cards", HEADER + "-- windows: 3h, 30000d\nSELECT user_id, count(*) AS cards, max(amount) AS top "
                                   "FROM events GROUP BY user_id\n")
    project.write_config(server)


@pytest.fixture
def served(project: ProjectDir, postgres_url: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, FeatureStore]]:
    from fastapi.testclient import TestClient

    from server import create_app

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    write_project(project, "[server]\nmax_entities = 5\nallow_after_sunset = [\"legacy\"]\n")
    store = FeatureStore(project.root)
    store.materialize(until=T0 + timedelta(hours=5))
    with TestClient(create_app(store=store)) as client:
        yield client, store
    store.close()


def test_values_equal_the_sdk(served: tuple[Any, FeatureStore]) -> None:
    client, store = served
    response = client.post("/v1/features", json={"entities": {"user_id": [2, 0, 99]},
                                                  "features": ["spend.*", "profile.card"]},
                           headers={"X-Consumer": "fraud_model"})
    assert response.status_code == 200, response.text
    sdk = store.online({"user_id": [2, 0, 99]}, ["spend.*", "profile.card"])
    assert response.json() == {"entities": {"user_id": [2, 0, 99]}, "warnings": [], "features": {
        "spend.amount": sdk["amount"].to_list(), "spend.card_id": sdk["card_id"].to_list(),
        "spend.big": sdk["big"].to_list(), "profile.card": sdk["card"].to_list()}}
    assert response.json()["features"]["spend.amount"] == [5.0, 3.0, None]
    windows = client.post("/v1/features", json={"entities": {"user_id": [2, 99]},
                                                "features": ["cards.*", "spend.amount"]})
    sdk = store.online({"user_id": [2, 99]}, ["cards.*", "spend.amount"])
    assert windows.json()["features"] == {name: sdk[name.split(".")[1]].to_list() for name in (
        "cards.cards_3h", "cards.cards_30000d", "cards.top_3h", "cards.top_30000d", "spend.amount")}
    # Asked now, long after the events: none in the last 3 hours, both of user 2's in the last 30,000 days.
    assert windows.json()["features"]["cards.cards_3h"] == [0, 0]
    assert windows.json()["features"]["cards.cards_30000d"] == [2, 0]
    assert client.get("/v1/features/cards/2").json()["features"] == {"cards_3h": 0, "cards_30000d": 2, "top_3h": None,
                                                                      "top_30000d": 5.0}
    one = client.get("/v1/features/spend/2")
    assert one.json() == {"view": "spend", "entity": {"user_id": 2}, "warnings": [],
                          "features": {"amount": 5.0, "card_id": 5, "big": True}}
    catalog = client.get("/v1/views").json()["views"]
    assert [v["view"] for v in catalog] == list(store.views)
    assert client.get("/v1/views/profile").json()["tags"] == ["pii"]
    metrics = scraped(client.get("/metrics").text)
    assert metrics[("featurestore_lookups_total", (("consumer", "fraud_model"), ("feature", "spend.amount")))] == 3
    assert metrics[("featurestore_requests_total", (("route", "/v1/features"), ("status", "200")))] == 2
    # Lookup time by view: each lookup counts once for every view it read (two POSTs, two GETs above).
    assert {view: metrics[("featurestore_lookup_seconds_count", (("view", view),))]
            for view in ("spend", "profile", "cards")} == {"spend": 3, "profile": 1, "cards": 2}
    assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").status_code == 200


def test_the_catalog_page_is_served_at_the_root(served: tuple[Any, FeatureStore]) -> None:
    client, store = served
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<section class=view") == len(store.views)
    assert 'data-node="spend.amount"' in page.text and "/" not in client.get("/openapi.json").json()["paths"]


def test_values_as_of_a_past_instant(served: tuple[Any, FeatureStore]) -> None:
    client, store = served
    at = T0 + timedelta(hours=3, minutes=30)
    body = {"entities": {"user_id": [2, 0]}, "features": ["spend.amount", "cards.cards_3h"]}
    replay = client.post("/v1/features", json={**body, "at": at.isoformat()})
    assert replay.status_code == 200, replay.text
    sdk = store.online({"user_id": [2, 0]}, ["spend.amount", "cards.cards_3h"], at=at)
    assert replay.json()["features"] == {"spend.amount": sdk["amount"].to_list(),
                                         "cards.cards_3h": sdk["cards_3h"].to_list()}
    # At 3h30, from what the online store holds (materialized until 5h: each user's latest row, and the
    # events): user 2's latest row is from 5h, not known yet; user 0's from 3h. One event each in 3 hours.
    assert replay.json()["features"] == {"spend.amount": [None, 3.0], "cards.cards_3h": [1, 1]}
    offset = client.post("/v1/features", json={**body, "at": "2026-01-01T05:30:00+02:00"})  # the same instant
    assert offset.json()["features"] == replay.json()["features"]
    naive = client.post("/v1/features", json={**body, "at": "2026-01-01T03:30:00"})
    assert naive.status_code == 422 and naive.json()["error"].startswith("body.at: Input should have timezone info")
    edge = client.post("/v1/features", json={**body, "at": "0001-01-01T00:00:00+14:00"})
    assert edge.status_code == 422 and "body.at: Value error, is out of range" in edge.json()["error"]


def test_client_errors_say_what_and_where(served: tuple[Any, FeatureStore]) -> None:
    client, _ = served

    def post(body: Any, **kwargs: Any) -> Any:
        return client.post("/v1/features", json=body, **kwargs)

    response = post({"entities": {"user_id": [1]}, "features": ["spnd.amount"]})
    assert (response.status_code, response.json()["error"]) == (404, "unknown view 'spnd' in 'spnd.amount'; did you "
                                                                      "mean 'spend'?")
    assert "did you mean 'amount'" in post({"entities": {"user_id": [1]}, "features": ["spend.amont"]}).json()["error"]
    assert client.get("/v1/views/spnd").status_code == 404 and client.get("/v1/features/spnd/1").status_code == 404
    bad = client.post("/v1/features", content=b'{"entities": ', headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "body" in bad.json()["error"]
    wrong = post({"entities": {"user_id": [1.5]}, "features": ["spend.amount"]})
    assert wrong.status_code == 422 and wrong.json()["error"].startswith("body.entities.user_id.0")
    text_key = post({"entities": {"user_id": ["x"]}, "features": ["spend.amount"]})
    assert text_key.status_code == 422 and "keys 'user_id' as BIGINT" in text_key.json()["error"]
    assert post({"entities": {"user_id": [1]}, "features": []}).status_code == 422
    assert post({"entities": {"card": [1]}, "features": ["spend.amount"]}).json()["error"].startswith(
        "the entities lack 'user_id'")
    assert post({"entities": {"user_id": [1, 2]}, "features": ["spend.amount"], "extra": 1}).status_code == 422
    assert post({"entities": {"user_id": [2**70]}, "features": ["spend.amount"]}).status_code == 422
    too_many = post({"entities": {"user_id": list(range(6))}, "features": ["spend.amount"]})
    assert too_many.status_code == 413 and "limit is 5" in too_many.json()["error"]
    assert client.get("/v1/features/spend/abc").status_code == 422


def test_deprecation_headers_and_sunset(served: tuple[Any, FeatureStore]) -> None:
    client, _ = served
    response = client.post("/v1/features", json={"entities": {"user_id": [2]}, "features": ["old.old_amount"]})
    assert response.status_code == 200
    assert response.headers["Deprecation"] == "true"
    assert response.headers["Sunset"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    assert response.json()["warnings"] == ["view 'old' is deprecated and will be removed on 2099-01-01; use "
                                           "spend.amount"]
    gone = client.post("/v1/features", json={"entities": {"user_id": [2]}, "features": ["gone.*"]})
    assert gone.status_code == 410
    assert gone.json()["error"].startswith("view 'gone' reached its sunset on 2020-01-01 and is no longer served")
    assert "X-Allow-Deprecated: true" in gone.json()["error"]  # how to opt in
    allowed = client.post("/v1/features", json={"entities": {"user_id": [2]}, "features": ["gone.*"]},
                          headers={"X-Consumer": "legacy"})  # server.allow_after_sunset
    assert allowed.status_code == 200 and "Deprecation" in allowed.headers
    assert allowed.json()["warnings"] == ["view 'gone' is deprecated and was to be removed on 2020-01-01"]
    opted_in = client.get("/v1/features/gone/2", headers={"X-Consumer": "batch", "X-Allow-Deprecated": "true"})
    assert opted_in.status_code == 200 and opted_in.headers["Sunset"] == "Wed, 01 Jan 2020 00:00:00 GMT"
    assert client.get("/v1/features/gone/2", headers={"X-Consumer": "batch"}).status_code == 410


def test_api_keys_and_tags(project: ProjectDir, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from server import create_app

    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    digest = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in KEYS.items()}
    write_project(project, f'[server.keys.fraud]\nsha256 = "{digest["fraud"]}"\n'
                           f'[server.keys.analytics]\nsha256 = "{digest["analytics"]}"\ntags = ["spend"]\n')
    store = FeatureStore(project.root)
    store.materialize(until=T0 + timedelta(hours=5))
    body = {"entities": {"user_id": [2]}, "features": ["profile.card"]}
    with TestClient(create_app(store=store)) as client:
        assert client.post("/v1/features", json=body).status_code == 401
        assert client.post("/v1/features", json=body, headers={"X-API-Key": "nope"}).status_code == 401
        assert client.get("/v1/views").status_code == 401
        ok = client.post("/v1/features", json=body, headers={"Authorization": f"Bearer {KEYS['fraud']}",
                                                              "X-Consumer": "someone_else"})
        assert ok.status_code == 200 and ok.json()["features"]["profile.card"] == ["c5"]
        denied = client.post("/v1/features", json=body, headers={"X-API-Key": KEYS["analytics"]})
        assert denied.status_code == 403
        assert denied.json()["error"] == "the key of consumer 'analytics' may not read view 'profile': it is tagged pii"
        metrics = client.get("/metrics", headers={"X-API-Key": KEYS["fraud"]}).text
        assert 'consumer="fraud"' in metrics and "someone_else" not in metrics  # the key names the consumer
        assert KEYS["fraud"] not in metrics
        # The catalog page too needs a key, and shows only the views the key's tags allow.
        assert client.get("/").status_code == 401
        everything = client.get("/", headers={"X-API-Key": KEYS["fraud"]}).text
        limited = client.get("/", headers={"X-API-Key": KEYS["analytics"]}).text
        assert 'id="view-profile"' in everything and 'id="view-profile"' not in limited
        assert f"{len(store.views)} views" in everything and f"{len(store.views) - 1} views" in limited
        assert 'id="view-spend"' in limited  # untagged views are open to every key
    store.close()


def test_postgres_down_is_503_and_the_service_recovers(project: ProjectDir, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pgserver
    from fastapi.testclient import TestClient

    from server import create_app

    data = tmp_path / "pg"
    server = pgserver.get_server(data, cleanup_mode="stop")
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", server.get_uri())
    write_project(project)
    store = FeatureStore(project.root)
    store.materialize(until=T0 + timedelta(hours=5))
    body = {"entities": {"user_id": [2]}, "features": ["spend.amount"]}
    with TestClient(create_app(store=store)) as client:
        assert client.post("/v1/features", json=body).status_code == 200
        server.cleanup()  # PostgreSQL stops
        down = client.post("/v1/features", json=body)
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert "unreachable" in down.json()["error"]
        assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
        server = pgserver.get_server(data, cleanup_mode="stop")  # and comes back
        deadline = time.monotonic() + 30
        while (status := client.post("/v1/features", json=body).status_code) != 200 and time.monotonic() < deadline:
            assert status == 503
            time.sleep(0.5)
        assert status == 200
    store.close()
    server.cleanup()


def test_no_request_causes_a_server_error(served: tuple[Any, FeatureStore]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    client, _ = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures, calls = [], 0
    for operation in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):  # valid requests, and invalid ones
            @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.ok().as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call()
                if response.status_code >= 500 and response.status_code != 503:
                    failures.append(f"{case.method} {case.formatted_path} {case.body!r}: {response.status_code}")

            try:
                check()
            except Unsatisfiable:  # an operation without input has no invalid form
                assert mode == GenerationMode.NEGATIVE
    assert failures == [] and calls > 150


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus text exposition as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_add_up_over_workers(project: ProjectDir, postgres_url: str) -> None:
    """With two workers, every scrape (whichever worker answers it) counts every worker's requests."""
    import httpx

    process, base = serve_two_workers(project, postgres_url)
    folder = project.root / ".featurestore" / "metrics"
    body = {"entities": {"user_id": [2, 0, 1]}, "features": ["spend.amount", "profile.card"]}
    try:
        sent, deadline = 0, time.monotonic() + 60
        # New connections until both workers have served some (each writes files named after its pid).
        while len({path.stem.rsplit("_", 1)[-1] for path in folder.glob("*.db")}) < 2 or sent < 20:
            assert time.monotonic() < deadline, "both workers should serve within 60 s"
            try:
                assert httpx.post(f"{base}/v1/features", json=body, headers={"X-Consumer": "m"}).status_code == 200
                sent += 1
            except httpx.TransportError:
                time.sleep(0.2)
        for _ in range(8):  # each scrape on a new connection: both workers answer some
            metrics = scraped(httpx.get(f"{base}/metrics").text)
            assert metrics[("featurestore_requests_total", (("route", "/v1/features"), ("status", "200")))] == sent
            assert metrics[("featurestore_lookups_total", (("consumer", "m"), ("feature", "spend.amount")))] == 3 * sent
            assert metrics[("featurestore_request_seconds_count", (("route", "/v1/features"),))] == sent
            for view in ("spend", "profile"):
                assert metrics[("featurestore_lookup_seconds_count", (("view", view),))] == sent
    finally:
        process.terminate()
        process.wait(timeout=20)


def serve_two_workers(project: ProjectDir, postgres_url: str) -> tuple[subprocess.Popen, str]:
    """`featurestore serve --workers 2` on the project, materialized; the process and its base URL."""
    write_project(project)
    environment = {**os.environ, "FEATURESTORE_POSTGRES_URL": postgres_url}
    subprocess.run([sys.executable, "-m", "featurestore.cli.main", "--project", str(project.root), "materialize",
                    "--until", "2026-01-01T05:00:00Z"], check=True, env=environment, capture_output=True)
    return serve(project.root, postgres_url)


def test_the_real_server_under_load(project: ProjectDir, postgres_url: str) -> None:
    import httpx

    process, base = serve_two_workers(project, postgres_url)
    try:
        wait_until_up(base, 30)
        body = {"entities": {"user_id": [2, 0]}, "features": ["spend.amount", "profile.card"]}
        response = httpx.post(f"{base}/v1/features", json=body)
        assert response.json()["features"] == {"spend.amount": [5.0, 3.0], "profile.card": ["c5", "c3"]}

        async def load(seconds: float, concurrency: int) -> tuple[int, list[str]]:
            done, errors = 0, []
            stop = time.monotonic() + seconds
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                async def worker() -> None:
                    nonlocal done
                    while time.monotonic() < stop:
                        reply = await client.post("/v1/features", json=body)
                        if reply.status_code != 200:
                            errors.append(f"{reply.status_code} {reply.text[:200]}")
                        done += 1
                await asyncio.gather(*(worker() for _ in range(concurrency)))
            return done, errors

        done, errors = asyncio.run(load(20.0, 16))
        assert errors == [] and done > 100
    finally:
        process.terminate()
        process.wait(timeout=10)


PID_APP = """
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def test_workers_share_connections_opened_at_once(tmp_path: Path) -> None:
    """Long-lived connections opened together (a client's pool) spread over the workers, rather
    than all landing on whichever worker woke first, as with one shared listening socket."""
    import http.client

    (tmp_path / "pid_app.py").write_text(PID_APP)
    port = free_port()
    script = ("import sys, uvicorn\nfrom server.workers import run_workers\n"
              "run_workers(uvicorn.Config('pid_app:app', host='127.0.0.1', port=int(sys.argv[1]), workers=2, "
              "log_level='warning', lifespan='off'))\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    process = subprocess.Popen([sys.executable, "-c", script, str(port)], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)

    def pid(connection: http.client.HTTPConnection) -> int:
        connection.request("GET", "/")
        return int(connection.getresponse().read())

    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:  # until both workers listen
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                seen.add(pid(connection))
                connection.close()
            except OSError:
                time.sleep(0.1)
        assert len(seen) == 2, f"two workers should answer within 30 s; saw {seen}"
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(64)]
        for connection in connections:
            connection.connect()
        served: dict[int, int] = {}  # worker → connections
        for connection in connections:
            (worker,) = {pid(connection) for _ in range(3)}  # a connection stays with its worker
            served[worker] = served.get(worker, 0) + 1
            connection.close()
        # An even split is 32 each; with the kernel's hash, fewer than 16 on one has odds ~1e-5.
        assert len(served) == 2 and min(served.values()) >= 16, served
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_on_a_taken_port_says_so(project: ProjectDir) -> None:
    write_project(project)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            result = subprocess.run([sys.executable, "-m", "featurestore.cli.main", "--project", str(project.root),
                                     "serve", "--port", str(port), "--workers", workers],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode != 0
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr, \
                result.stderr
