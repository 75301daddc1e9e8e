"""The point-in-time join against the brute-force reference, on many random cases.

Times sit on a coarse grid (with ±1 µs neighbours) so that exact ties of spine and
row times, and boundaries exactly at TTL, lag and invalid-period edges, are common.
`heavy_cases` are the other shape: one to five keys with hundreds to thousands of rows
each over a long span (`timelines`), checked against `reference.SnapshotIndex`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from featurestore.definitions.loader import parse_definition
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, build_view
from featurestore.errors import FeatureStoreError

from reference import Ambiguous, Measure, Rules, SnapshotIndex, WindowIndex, as_of, window_aggregate
from snapshot_cases import BASE, EXAMPLES, HEAVY_EXAMPLES, PLANS, STEP, cases, has_ties, heavy_cases, run


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(PLANS))
def test_snapshot_views_match_the_reference(case: dict, plan: str) -> None:
    rules, rows, spine = case["rules"], case["rows"], case["spine"]
    expected = []
    try:
        for row in spine:
            key = tuple(row[k] for k in rules.entity)
            expected.append({"k": row["k"], "c": row["c"], "label": row["label"], **as_of(rows, key, row["t"], rules)})
        ambiguous = plan.startswith("intervals") and not rules.created and has_ties(rows, rules)
    except Ambiguous:
        ambiguous = True
    event(f"ambiguous: {ambiguous}")
    if ambiguous:
        with pytest.raises(FeatureStoreError, match=r"several rows with .*-- created"):
            run(rows, rules, spine, case["flavour"], case["nanos"], plan)
        return
    actual = run(rows, rules, spine, case["flavour"], case["nanos"], plan)
    assert [{k: r[k] for k in ("k", "c", "label", "v", "s")} for r in actual] == expected


@settings(max_examples=HEAVY_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(heavy_cases())
def test_few_heavy_keys_match_the_reference_under_every_plan(case: dict) -> None:
    rules, rows, spine = case["rules"], case["rows"], case["spine"]
    index = SnapshotIndex(rows, rules)
    expected: list[dict] | None = []
    try:
        for row in spine:
            key = tuple(row[k] for k in rules.entity)
            expected.append({"k": row["k"], "c": row["c"], "label": row["label"], **index.as_of(key, row["t"])})
    except Ambiguous:  # a spine row would take its value from one of several tied rows
        expected = None
    event(f"rows: {len(rows) // 2500 * 2500}+, created: {bool(rules.created)}, "
          f"ambiguous: {expected is None}, ties: {has_ties(rows, rules)}")
    if expected is not None:
        valued = sum(r["v"] is not None or r["s"] is not None for r in expected)
        event(f"spine rows with a value: {valued * 10 // len(spine) * 10}%+")
    for plan in PLANS:
        if expected is None or (plan.startswith("intervals") and not rules.created and has_ties(rows, rules)):
            with pytest.raises(FeatureStoreError, match=r"several rows with .*-- created"):
                run(rows, rules, spine, case["flavour"], case["nanos"], plan)
            continue
        actual = run(rows, rules, spine, case["flavour"], case["nanos"], plan)
        assert len(actual) == len(expected), plan
        for number, (got, want) in enumerate(zip(actual, expected)):
            assert {k: got[k] for k in ("k", "c", "label", "v", "s")} == want, (plan, number, spine[number])


@settings(max_examples=EXAMPLES, deadline=None)
@given(cases())
def test_the_snapshot_index_matches_the_brute_force_reference(case: dict) -> None:
    """`SnapshotIndex`, which the heavy cases use, reads docs/semantics.md as `as_of` does, Ambiguous included."""
    rules, rows = case["rules"], case["rows"]
    index = SnapshotIndex(rows, rules)
    for row in case["spine"]:
        key = tuple(row[k] for k in rules.entity)
        try:
            want = as_of(rows, key, row["t"], rules)
        except Ambiguous:
            with pytest.raises(Ambiguous):
                index.as_of(key, row["t"])
            continue
        assert index.as_of(key, row["t"]) == want


@pytest.mark.parametrize("plan", ["asof", "ranked", "last"])
def test_duplicates_without_a_tie_break_are_refused_where_a_frame_would_use_them(plan: str) -> None:
    rows = [{"k": 1, "c": "x", "ts": BASE, "created": 1, "v": 1, "s": "a"},
            {"k": 1, "c": "x", "ts": BASE, "created": 2, "v": 2, "s": "b"},
            {"k": 1, "c": "x", "ts": BASE + 2 * STEP, "created": 3, "v": 3, "s": "c"},
            {"k": 3, "c": "x", "ts": BASE, "created": 4, "v": 4, "s": "d"},
            {"k": 3, "c": "x", "ts": BASE, "created": 5, "v": 5, "s": "e"}]
    rules = Rules(entity=("k",), timestamp="ts", ttl=timedelta(hours=1), features=("v", "s"))
    spine = [{"k": 1, "c": "x", "t": BASE + STEP, "label": 0}]
    with pytest.raises(FeatureStoreError, match=r"several rows with k=1 and ts=2026-01-01 00:00:00.*-- created"):
        run(rows, rules, spine, "utc", [0], plan)
    # Other keys, a later row, or a tie beyond the TTL: the value does not come from the tied rows.
    spine = [{"k": 2, "c": "x", "t": BASE + STEP, "label": 0}, {"k": 1, "c": "x", "t": BASE + 3 * STEP, "label": 0},
             {"k": 3, "c": "x", "t": BASE + timedelta(hours=1, microseconds=1), "label": 0}]
    assert [r["v"] for r in run(rows, rules, spine, "utc", [0] * 3, plan)] == [None, 3, None]
    # Before available_since no value is used, so no tie matters.
    since = Rules(entity=("k",), timestamp="ts", ttl=timedelta(hours=1), since=BASE + 2 * STEP, features=("v", "s"))
    assert [r["v"] for r in run(rows, since, [{"k": 1, "c": "x", "t": BASE + STEP, "label": 0}], "utc", [0], plan)] \
        == [None]
    # The cache (intervals) refuses every tie: it serves every spine.
    with pytest.raises(FeatureStoreError, match=r"several rows with k=[13]"):
        run(rows, rules, spine, "utc", [0] * 3, "intervals")


@pytest.mark.parametrize("plan", ["asof", "intervals", "ranked", "last"])
def test_edges_exactly(plan: str) -> None:
    rows = [{"k": 1, "c": "x", "ts": BASE, "created": 0, "v": 1, "s": "a"}]
    rules = Rules(entity=("k",), timestamp="ts", lag=timedelta(minutes=30), ttl=timedelta(hours=1),
                  features=("v", "s"))
    us = timedelta(microseconds=1)
    times = [BASE + timedelta(minutes=30) - us, BASE + timedelta(minutes=30),  # known at ts + lag, not before
             BASE + timedelta(hours=1), BASE + timedelta(hours=1) + us]        # expired after ts + ttl, not at it
    spine = [{"k": 1, "c": "x", "t": t, "label": 0} for t in times]
    assert [r["v"] for r in run(rows, rules, spine, "utc", [0] * 4, plan)] == [None, 1, 1, None]


def test_null_tie_break_loses_to_any_value() -> None:
    rows = [{"k": 1, "c": "x", "ts": BASE, "created": None, "v": 1, "s": "a"},
            {"k": 1, "c": "x", "ts": BASE, "created": -7, "v": 2, "s": "b"}]
    rules = Rules(entity=("k",), timestamp="ts", created="created", features=("v", "s"))
    assert run(rows, rules, [{"k": 1, "c": "x", "t": BASE, "label": 0}], "utc", [0])[0]["v"] == 2


def test_a_nanosecond_before_a_row_is_known_does_not_see_it() -> None:
    rows = [{"k": 1, "c": "x", "ts": BASE, "created": 0, "v": 1, "s": "a"}]
    rules = Rules(entity=("k",), timestamp="ts", features=("v", "s"))
    spine = [{"k": 1, "c": "x", "t": BASE - timedelta(microseconds=1), "label": 0},
             {"k": 1, "c": "x", "t": BASE, "label": 1}]
    # t - 1 µs + 999 ns is still before the row (floored, never rounded up); t + 0 ns is exactly when it is known.
    assert [r["v"] for r in run(rows, rules, spine, "nanos", [999, 0])] == [None, 1]


def test_empty_inputs() -> None:
    rules = Rules(entity=("k",), timestamp="ts", features=("v", "s"))
    assert run([], rules, [{"k": 1, "c": "x", "t": BASE, "label": 0}], "utc", [0])[0]["v"] is None
    assert run([{"k": 1, "c": "x", "ts": BASE, "created": 0, "v": 1, "s": "a"}], rules, [], "utc", []) == []


def test_feature_selection_errors_name_the_fix() -> None:
    loaded, _ = parse_definition(Path("spend.sql"), "-- entity: k\n-- timestamp: ts\n-- owner: a@b.c\n"
                                                    "SELECT k, ts, v FROM events\n")
    view, _ = build_view(loaded)
    assert view is not None
    view = view.model_copy(update={"columns": (Column(name="k", type="BIGINT"), Column(name="ts", type="TIMESTAMP"),
                                               Column(name="v", type="BIGINT"))})
    views = {"spend": view}
    with pytest.raises(FeatureStoreError, match=r"unknown view 'spnd'.*did you mean 'spend'"):
        select_features(views, ["spnd.v"])
    with pytest.raises(FeatureStoreError, match="no feature 'vv'; did you mean 'v'"):
        select_features(views, ["spend.vv"])
    with pytest.raises(FeatureStoreError, match=r"'view\.feature' or 'view\.\*'"):
        select_features(views, ["spend"])
    with pytest.raises(FeatureStoreError, match=r"spine's column 'v' and feature 'spend\.v'.*full_names=True"):
        select_features(views, ["spend.*"], taken=["k", "ts", "v"])
    assert [s.output for s in select_features(views, ["spend.*"], full_names=True, taken=["v"])] == ["spend__v"]


def test_the_reference_reads_arrival_times() -> None:
    """The brute-force reference (and its indexes) with an arrival column, on cases worked by hand
    from docs/semantics.md: a row is known at max(ts + lag, arrival); the latest *time* among the
    known rows wins, not the latest to arrive; a window's lower bound stays on the time."""
    minute = timedelta(minutes=1)
    rows = [{"k": 1, "ts": BASE, "arrived": BASE + 40 * minute, "v": 1},
            {"k": 1, "ts": BASE + 10 * minute, "arrived": None, "v": 2}]
    rules = Rules(entity=("k",), timestamp="ts", features=("v",), known_at="arrived")
    lagged = Rules(entity=("k",), timestamp="ts", features=("v",), known_at="arrived", lag=30 * minute)
    expected = [(rules, 5, None), (rules, 15, 2), (rules, 45, 2), (lagged, 39, None), (lagged, 40, 2)]
    for which, at, value in expected:
        t = BASE + at * minute
        assert as_of(rows, (1,), t, which)["v"] == value, (which.lag, at)
        assert SnapshotIndex(rows, which).as_of((1,), t)["v"] == value, (which.lag, at)
    # Arrived first: the row stamped 10:00 alone, until the later-stamped row is known too.
    early = [{**rows[0], "arrived": None}, {**rows[1], "arrived": BASE + 20 * minute}]
    assert [as_of(early, (1,), BASE + m * minute, rules)["v"] for m in (5, 15, 20)] == [1, 1, 2]
    events = [{"k": 1, "ts": BASE, "arrived": BASE + 30 * minute}, {"k": 1, "ts": BASE + 20 * minute, "arrived": None}]
    count = Measure("count", lambda event: 1)
    for at, n in ((25, 1), (30, 1), (31, 2), (65, 1)):  # known strictly before t; t - 1h <= ts
        t = BASE + at * minute
        assert window_aggregate(events, (1,), t, rules, count, timedelta(hours=1)) == n, at
        assert len(WindowIndex(events, rules).window_events((1,), t, timedelta(hours=1))) == n, at
