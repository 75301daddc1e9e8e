"""Column-level lineage derived by sqlglot: forward from a feature, backward from a column, and its errors."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import BadRequestError, FeatureStore, UnknownNameError
from featurestore.compiler.lineage import Lineage, feature_lineage, reverse_lineage
from featurestore.demo import write_demo_data
from featurestore.project import Project

from support import SNAPSHOT, WINDOW, ProjectDir

REPO = Path(__file__).parent.parent

SPEND = """
    -- entity: user_id
    -- timestamp: day
    -- owner: team@example.com
    SELECT
        user_id,
        date_trunc('day', ts) + INTERVAL 1 DAY AS day,
        sum(amount) AS total,
        count(*) AS n,
        max(amount * card_id) AS top
    FROM events
    WHERE card_id > 0
    GROUP BY user_id, date_trunc('day', ts) + INTERVAL 1 DAY
"""

ENRICHED = """
    -- entity: user_id
    -- timestamp: ts
    -- owner: team@example.com
    SELECT e.user_id, e.ts, e.amount * u.fee_rate AS fee, u.country
    FROM events AS e
    JOIN users AS u ON u.user_id = e.user_id AND u.signup_ts <= e.ts
"""

TREND = """
    -- entity: user_id
    -- timestamp: day
    -- owner: team@example.com
    SELECT
        user_id,
        day,
        total / n AS avg_amount,
        avg(total) OVER (PARTITION BY user_id ORDER BY day ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_total_3d
    FROM spend
"""

SPIKE = """
    -- entity: user_id
    -- timestamp: day
    -- owner: team@example.com
    WITH recent AS (SELECT user_id, day, avg_amount FROM trend)
    SELECT r.user_id, r.day, s.total > 2 * r.avg_amount AS spike
    FROM recent AS r
    JOIN spend AS s ON s.user_id = r.user_id AND s.day = r.day
"""


@pytest.fixture
def lineage_project(project: ProjectDir) -> Project:
    """events(user_id, card_id, amount, ts) and users(user_id, country, fee_rate, signup_ts), and views over them.

    payments: a plain column; spend: aggregates and count(*) under a WHERE; enriched: a join;
    trend: reads spend; spike: reads trend (through a CTE) and spend; w: a window view.
    """
    project.parquet("users", pa.table({
        "user_id": pa.array([0, 1, 2], pa.int64()),
        "country": ["US", "GB", "DE"],
        "fee_rate": [0.01, 0.02, 0.03],
        "signup_ts": pa.array([datetime(2025, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
    }))
    for name, text in {"payments": SNAPSHOT, "spend": SPEND, "enriched": ENRICHED, "trend": TREND, "spike": SPIKE,
                       "w": WINDOW}.items():
        project.view(name, text)
    return FeatureStore(project.root).project


def lineage(project: Project, feature: str) -> Lineage:
    return feature_lineage(project.views, project.sources, feature)


def test_a_plain_column_comes_from_its_source_column(lineage_project: Project) -> None:
    assert lineage(lineage_project, "payments.amount") == Lineage(
        feature="payments.amount", sources=["events.amount"], views=[], graph=[("events.amount", "payments.amount")])


def test_an_expression_reads_both_columns_and_the_where_clause_is_not_lineage(lineage_project: Project) -> None:
    # card_id is read by `amount * card_id` here; in `total` it only filters rows (WHERE) and is left out.
    assert lineage(lineage_project, "spend.top").sources == ["events.amount", "events.card_id"]
    assert lineage(lineage_project, "spend.total") == Lineage(
        feature="spend.total", sources=["events.amount"], views=[], graph=[("events.amount", "spend.total")])


def test_count_star_depends_on_the_rows_of_its_table(lineage_project: Project) -> None:
    assert lineage(lineage_project, "spend.n") == Lineage(
        feature="spend.n", sources=["events.*"], views=[], graph=[("events.*", "spend.n")])


def test_a_join_reads_columns_of_both_sources_but_not_its_condition(lineage_project: Project) -> None:
    assert lineage(lineage_project, "enriched.fee") == Lineage(
        feature="enriched.fee", sources=["events.amount", "users.fee_rate"], views=[],
        graph=[("events.amount", "enriched.fee"), ("users.fee_rate", "enriched.fee")])
    assert lineage(lineage_project, "enriched.country").sources == ["users.country"]


def test_a_view_reading_a_view_is_traced_through_it(lineage_project: Project) -> None:
    assert lineage(lineage_project, "trend.avg_amount") == Lineage(
        feature="trend.avg_amount",
        sources=["events.*", "events.amount"],
        views=["spend"],
        graph=[("spend.n", "trend.avg_amount"), ("spend.total", "trend.avg_amount"),
               ("events.*", "spend.n"), ("events.amount", "spend.total")])


def test_a_window_functions_partition_and_order_columns_are_part_of_its_value(lineage_project: Project) -> None:
    # PARTITION BY user_id ORDER BY day sit inside the expression, so sqlglot follows them.
    result = lineage(lineage_project, "trend.avg_total_3d")
    assert result.sources == ["events.amount", "events.ts", "events.user_id"]
    assert result.views == ["spend"]
    assert ("events.ts", "spend.day") in result.graph


def test_views_are_listed_from_the_feature_down_to_the_sources(lineage_project: Project) -> None:
    result = lineage(lineage_project, "spike.spike")
    assert result.views == ["trend", "spend"]  # trend reads spend, so it comes first
    assert result.sources == ["events.*", "events.amount"]
    assert result.graph == [
        ("spend.total", "spike.spike"), ("trend.avg_amount", "spike.spike"),
        ("events.amount", "spend.total"),
        ("spend.n", "trend.avg_amount"), ("spend.total", "trend.avg_amount"),
        ("events.*", "spend.n"),
    ]


def test_a_window_feature_has_the_lineage_of_the_column_it_aggregates(lineage_project: Project) -> None:
    assert lineage(lineage_project, "w.total_3h") == Lineage(
        feature="w.total_3h", sources=["events.amount"], views=[], graph=[("events.amount", "w.total_3h")])
    assert lineage(lineage_project, "w.n_1d").sources == ["events.*"]


def test_reverse_lineage_lists_every_feature_computed_from_a_column(lineage_project: Project) -> None:
    views, sources = lineage_project.views, lineage_project.sources
    assert reverse_lineage(views, sources, "events.amount") == [
        "enriched.fee", "payments.amount", "spend.top", "spend.total", "spike.spike", "trend.avg_amount",
        "trend.avg_total_3d", "w.total_1d", "w.total_3h"]
    assert reverse_lineage(views, sources, "events.*") == [
        "spend.n", "spike.spike", "trend.avg_amount", "w.n_1d", "w.n_3h"]
    assert reverse_lineage(views, sources, "users.fee_rate") == ["enriched.fee"]
    assert reverse_lineage(views, sources, "spend.total") == ["spike.spike", "trend.avg_amount", "trend.avg_total_3d"]
    assert reverse_lineage(views, sources, "trend.avg_amount") == ["spike.spike"]


def test_reverse_lineage_of_a_column_that_only_joins_or_filters_is_empty(lineage_project: Project) -> None:
    views, sources = lineage_project.views, lineage_project.sources
    assert reverse_lineage(views, sources, "users.signup_ts") == []
    assert reverse_lineage(views, set(sources), "users.signup_ts") == []  # names only: known from the JOIN


def test_unknown_views_and_features_suggest_the_closest_name(lineage_project: Project) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown view 'spnd' in 'spnd.total'; did you mean 'spend'\?"):
        lineage(lineage_project, "spnd.total")
    with pytest.raises(UnknownNameError, match=r"view 'spend' has no feature 'totl'; did you mean 'total'\?"):
        lineage(lineage_project, "spend.totl")
    with pytest.raises(UnknownNameError, match=r"view 'spend' has no feature 'x'; its features: total, n, top"):
        lineage(lineage_project, "spend.x")
    with pytest.raises(UnknownNameError, match=r"'total' is the column the window view aggregates; "
                                               r"name one window: total_3h, total_1d"):
        lineage(lineage_project, "w.total")
    with pytest.raises(BadRequestError, match=r"must be 'view\.feature'"):
        lineage(lineage_project, "spend")


def test_unknown_source_columns_name_the_closest_or_every_column(lineage_project: Project) -> None:
    views, sources = lineage_project.views, lineage_project.sources
    with pytest.raises(UnknownNameError, match=r"source 'events' has no column 'amout'; did you mean 'amount'\?"):
        reverse_lineage(views, sources, "events.amout")
    with pytest.raises(UnknownNameError, match=r"source 'users' has no column 'zip'; "
                                               r"its columns: user_id, country, fee_rate, signup_ts"):
        reverse_lineage(views, sources, "users.zip")
    with pytest.raises(UnknownNameError, match=r"no view reads a column 'zip' of source 'users'; "
                                               r"the columns the views read: country, fee_rate, signup_ts, user_id"):
        reverse_lineage(views, set(sources), "users.zip")
    with pytest.raises(UnknownNameError, match=r"unknown source or view 'evnts' in 'evnts.amount'; "
                                               r"did you mean 'events'\?"):
        reverse_lineage(views, sources, "evnts.amount")
    with pytest.raises(UnknownNameError, match=r"view 'spend' has no column 'totl'; did you mean 'total'\?"):
        reverse_lineage(views, sources, "spend.totl")


def test_the_example_projects_lineage(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURESTORE_POSTGRES_URL", postgres_url)
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    shutil.copy(REPO / "featurestore.toml", tmp_path / "featurestore.toml")
    write_demo_data(tmp_path, conninfo=postgres_url, offline_database=tmp_path / ".featurestore" / "offline.duckdb",
                    users=50, transactions=500)
    example = FeatureStore(tmp_path).project
    views, sources = example.views, example.sources

    assert feature_lineage(views, sources, "user_spend_trend.spend_vs_trend_7d") == Lineage(
        feature="user_spend_trend.spend_vs_trend_7d",
        sources=["transactions.amount", "transactions.ts", "transactions.user_id"],
        views=["user_daily_stats"],
        graph=[
            ("user_daily_stats.day_end", "user_spend_trend.spend_vs_trend_7d"),
            ("user_daily_stats.total_amount", "user_spend_trend.spend_vs_trend_7d"),
            ("user_daily_stats.user_id", "user_spend_trend.spend_vs_trend_7d"),
            ("transactions.ts", "user_daily_stats.day_end"),
            ("transactions.amount", "user_daily_stats.total_amount"),
            ("transactions.user_id", "user_daily_stats.user_id"),
        ])
    assert feature_lineage(views, sources, "merchant_risk.fraud_count").sources == [
        "merchants.*", "transactions.*", "transactions.is_fraud"]
    assert feature_lineage(views, sources, "merchant_risk.category").sources == ["merchants.category"]
    assert feature_lineage(views, sources, "cards_added.distinct_cards_7d").sources == ["card_events.card_id"]
    assert feature_lineage(views, sources, "user_profile.country").sources == ["accounts.country"]
    assert reverse_lineage(views, sources, "transactions.amount") == [
        "merchant_risk.avg_amount", "user_daily_stats.max_amount", "user_daily_stats.total_amount",
        "user_spend_trend.avg_daily_amount_7d", "user_spend_trend.spend_vs_trend_7d"]
    assert reverse_lineage(views, sources, "card_events.*") == [
        "cards_added.cards_added_1d", "cards_added.cards_added_3h", "cards_added.cards_added_7d"]
