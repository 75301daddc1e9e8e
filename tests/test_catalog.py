"""The feature catalog page (`featurestore docs`) in a real headless Chromium: content, lineage, search.

Run by scripts/test-browser.sh (marker `browser`), which installs Chromium and its driver. The
screenshot is written to test-artifacts/catalog.png and its path printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.catalog.page import build_site

from support import T0, ProjectDir, reset

pytestmark = pytest.mark.browser
HEADER = "-- entity: user_id\n-- timestamp: ts\n-- owner: {owner}\n"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture
def site(project: ProjectDir, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    reset(postgres_url)
    project.parquet("events", pa.table({"user_id": pa.array([i % 3 for i in range(6)], pa.int64()),
                                        "amount": pa.array([float(i) for i in range(6)]),
                                        "ts": pa.array([T0 + timedelta(hours=i) for i in range(6)],
                                                       pa.timestamp("us", tz="UTC"))}))
    project.view("spend", HEADER.format(owner="payments@example.com") + "-- tags: money\n-- description: what users "
                          "spend\nSELECT user_id, ts, amount, amount * 2 AS doubled FROM events\n")
    project.view("cards", HEADER.format(owner="cards@example.com") + "-- windows: 3h\n-- deprecated: 2099-01-01 use "
                          "spend\nSELECT user_id, count(*) AS n FROM events GROUP BY user_id\n")
    with FeatureStore(project.root, consumer="fraud_model") as store:
        store.materialize(until=T0 + timedelta(hours=6))
        store.online({"user_id": [1]}, ["spend.amount"])  # a recorded read: spend.amount is used, the rest is not
        spine = pa.table({"user_id": [0, 1, 2, 0], "ts": pa.array([T0 + timedelta(hours=h) for h in (1, 2, 3, 4)],
                                                                   pa.timestamp("us", tz="UTC"))})
        snapshot = store.training_frame(spine, ["spend.amount"]).save_snapshot(project.root / "snap")
        return build_site(store, project.root / "site", snapshot=snapshot)


def test_the_catalog_page_in_chromium(browser: Any, site: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.as_uri())
    assert browser.title.startswith("Feature catalog")
    views = browser.find_elements(By.CSS_SELECTOR, "section.view")
    assert [v.find_element(By.TAG_NAME, "h2").text.split()[0] for v in views] == ["cards", "spend"]
    spend = browser.find_element(By.ID, "view-spend")
    assert "payments@example.com" in spend.text and "what users spend" in spend.text and "money" in spend.text
    assert "online up to 2026-01-01T06:00:00+00:00" in spend.text  # freshness
    rows = {row.find_element(By.TAG_NAME, "code").text: row
            for row in spend.find_elements(By.CSS_SELECTOR, "tr.feature")}
    assert "fraud_model" in rows["amount"].text and "unused" not in rows["amount"].get_attribute("class")
    assert "unused" in rows["doubled"].get_attribute("class") and rows["doubled"].find_element(By.CLASS_NAME, "badge")
    assert "events.amount" in rows["doubled"].text  # lineage to the source column
    # Drift against the snapshot, drawn: a bar and the PSI for the feature the snapshot holds.
    assert rows["amount"].find_element(By.CSS_SELECTOR, "svg.psi") and "PSI" in rows["amount"].find_element(
        By.CSS_SELECTOR, "svg.psi").get_attribute("aria-label")
    assert not rows["doubled"].find_elements(By.CSS_SELECTOR, "svg.psi")
    assert "Deprecated: sunset 2099-01-01 use spend" in browser.find_element(By.ID, "view-cards").text
    nodes = {n.get_attribute("data-node") for n in browser.find_elements(By.CSS_SELECTOR, "svg.lineage g.node")}
    assert nodes == {"events", "spend", "cards", "spend.amount", "spend.doubled", "cards.n_3h"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.lineage line")) == 5  # 2 source→view, 3 view→feature
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "catalog.png"))
    print(f"screenshot: {ARTIFACTS / 'catalog.png'}")
    box = browser.find_element(By.ID, "search")
    box.send_keys("doubled")
    assert not browser.find_element(By.ID, "view-cards").is_displayed()
    assert not rows["amount"].is_displayed() and rows["doubled"].is_displayed()
    assert browser.find_element(By.ID, "count").text == "1 views match"
    box.clear()
    box.send_keys("cards@")  # an owner
    assert browser.find_element(By.ID, "view-cards").is_displayed() and not spend.is_displayed()
