"""Window aggregate views in training frames against the brute-force reference, on many random cases.

Each case is a window view (an aggregation grouped by its keys, one to three windows, sometimes a
lag, invalid periods and `available_since`), its events and a spine, compiled by
`compiler.windows` with each window's method drawn ("join", "frames", or "totals": running totals for
its counts and integer sums, frames for the rest), and run in DuckDB.
Times sit on a coarse grid (with ±1 µs neighbours), and most spine rows take the keys of one
event and a time on an edge it defines (its known-at time, or that plus a window, each ±1 µs),
so events exactly at t - W and exactly at t, and ties of several events at one instant, are
common. The features asked for (all, or some in any order, short or full names) are drawn too.

The reference (`reference.window_aggregate`) is a plain loop over the events per spine row.
`heavy_cases` are the other shape: one to five keys with hundreds to thousands of events each over
a long span (`timelines`), windows from shorter than the gaps between events to covering hundreds of
them, checked against `reference.WindowIndex` under the drawn methods and under another method of each window.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import hypothesis
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings

from featurestore.compiler.checks import check_query
from featurestore.compiler.point_in_time import ROW, Spine, ViewRows, point_in_time
from featurestore.compiler.windows import WindowRows, event_rows
from featurestore.config import parse_duration
from featurestore.definitions.loader import parse_definition
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, build_view

from reference import Measure, WindowIndex, window_events
from window_cases import (
    BASE,
    EPOCH,
    EXAMPLES,
    HEAVY_EXAMPLES,
    US,
    UTC_US,
    Aggregate,
    Case,
    View,
    cases,
    check,
    event,
    expected,
    heavy_cases,
    pick,
    plain,
    reference_events,
    row,
    value_of,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_window_views_match_the_reference(case: Case) -> None:
    hypothesis.event(f"methods: {'+'.join(sorted(set(case.methods.values())))}")
    hypothesis.event(f"events: {'some' if case.events else 'none'}, spine: {'some' if case.spine else 'none'}")
    check(case)


@settings(max_examples=HEAVY_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(heavy_cases())
def test_few_heavy_keys_match_the_reference_under_two_methods(case: Case) -> None:
    frame = expected(case, indexed=True)
    index = WindowIndex(reference_events(case), case.view.rules)
    sizes = [len(index.window_events(tuple(r[k] for k in case.view.entity), r["t"], parse_duration(label)) or [])
             for r in case.spine for label in case.view.windows]
    hypothesis.event(f"events: {len(case.events) // 2500 * 2500}+")
    hypothesis.event(f"most events in one window: {max(sizes) // 100 * 100}+, empty windows: "
                     f"{sum(size == 0 for size in sizes) * 10 // len(sizes) * 10}%+")
    check(case, frame)
    # Each window under the next method too: every window of every case meets two of the three.
    following = {"join": "frames", "frames": "totals", "totals": "join"}
    check(replace(case, methods={label: following[method] for label, method in case.methods.items()}), frame)


@settings(max_examples=EXAMPLES, deadline=None)
@given(cases())
def test_the_window_index_matches_the_brute_force_reference(case: Case) -> None:
    """`WindowIndex`, which the heavy cases use, finds the same events as `window_events` (in any order)."""
    assert expected(case, indexed=True) == expected(case)
    rules, events = case.view.rules, reference_events(case)
    index = WindowIndex(events, rules)
    for r in case.spine:
        key = tuple(r[k] for k in case.view.entity)
        for label in case.view.windows:
            want = window_events(events, key, r["t"], rules, parse_duration(label))
            got = index.window_events(key, r["t"], parse_duration(label))
            assert (got is None, sorted(map(id, got or []))) == (want is None, sorted(map(id, want or [])))


T = BASE + timedelta(hours=6)


METHODS = pytest.mark.parametrize("method", ["join", "frames", "totals"])


def features(case: Case, *names: str) -> list[tuple]:
    """The named features of each spine row, after checking the whole frame against the reference."""
    return [tuple(r[name] for name in names) for r in check(case).rows]


def window_view(*names: str, **header: Any) -> View:
    """A view with the named aggregates of POOL (window 3h unless `header` says otherwise)."""
    return View(aggregates=pick(*names), **header)


@METHODS
def test_the_window_includes_t_minus_w_and_excludes_t(method: str) -> None:
    events = [event(T - timedelta(hours=3) - US, v=1), event(T - timedelta(hours=3), v=10),
              event(T - US, v=100), event(T, v=1000)]
    case = Case(window_view("n", "sv"), events, [row(T)], {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(2, 110)]


@METHODS
def test_the_lag_moves_both_edges(method: str) -> None:
    lag = timedelta(minutes=30)
    events = [event(T - timedelta(hours=3) - lag - US, v=1), event(T - timedelta(hours=3) - lag, v=10),
              event(T - lag - US, v=100), event(T - lag, v=1000)]
    case = Case(window_view("n", "sv", lag=lag), events, [row(T)], {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(2, 110)]


@METHODS
def test_an_empty_window_counts_zero_and_the_rest_are_null(method: str) -> None:
    events = [event(T - timedelta(hours=4), v=1, o=1, s="a"), event(T + timedelta(hours=1), v=1, o=1, s="a")]
    case = Case(window_view("n", "nv", "dv", "pos", "sv", "av", "lo", "hi", "latest_v", "last_v"), events,
                [row(T), row(T, k=2)], {"3h": method})
    names = ("n_3h", "nv_3h", "dv_3h", "pos_3h", "sv_3h", "av_3h", "lo_3h", "hi_3h", "latest_v_3h", "last_v_3h")
    assert features(case, *names) == [(0, 0, 0, 0, None, None, None, None, None, None)] * 2


@METHODS
def test_a_null_spine_key_or_time_gets_null_counts(method: str) -> None:
    events = [event(T - timedelta(hours=1), v=1), event(T - timedelta(hours=1), k=None, c=None, v=1)]
    spine = [row(T, k=None), row(T, c=None), row(None), row(T)]
    case = Case(window_view("n", "sv", entity=("k", "c")), events, spine, {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(None, None), (None, None), (None, None), (1, 1)]


@METHODS
def test_before_available_since_every_feature_is_null(method: str) -> None:
    events = [event(T - timedelta(hours=1), v=1)]
    case = Case(window_view("n", "sv", since=T), events, [row(T - US), row(T)], {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(None, None), (1, 1)]


@METHODS
def test_invalid_periods_are_closed_intervals(method: str) -> None:
    start, end = T - timedelta(hours=2), T - timedelta(hours=1)
    events = [event(start - US, v=1), event(start, v=10), event(end, v=100), event(end + US, v=1000)]
    case = Case(window_view("n", "sv", invalid=((start, end),)), events, [row(T)], {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(2, 1001)]


@METHODS
def test_exact_duplicate_events_count_twice(method: str) -> None:
    events = [event(T - timedelta(hours=1), v=2)] * 2
    case = Case(window_view("n", "nv", "dv", "sv"), events, [row(T)], {"3h": method})
    assert features(case, "n_3h", "nv_3h", "dv_3h", "sv_3h") == [(2, 2, 1, 4)]


@METHODS
def test_latest_takes_the_greatest_order_then_the_greatest_value(method: str) -> None:
    at = T - timedelta(hours=1)
    events = [event(at, v=1, o=2), event(at, v=3, o=2), event(at, v=2, o=2),  # tied on o: the greatest v
              event(at, v=9, o=None),                                        # a NULL order never wins
              event(at, v=None, o=5),                                        # nor does a NULL value
              event(at - US, v=7, o=1)]
    case = Case(window_view("latest_v", "last_v"), events, [row(T)], {"3h": method})
    # last(v): the latest events (tied at `at`) with a value, the greatest of them.
    assert features(case, "latest_v_3h", "last_v_3h") == [(3, 9)]


@METHODS
def test_filters_and_expressions_are_evaluated_per_event(method: str) -> None:
    at = T - timedelta(hours=1)
    events = [event(at, v=-2, s="a", w=1.5), event(at, v=3, s="b", w=4.0), event(at + US, v=0, s="a", w=0.5),
              event(at + 2 * US, v=None, s="c")]
    case = Case(window_view("pos", "s2", "top", "ds", "last_pos"), events, [row(T)], {"3h": method})
    assert features(case, "pos_3h", "s2_3h", "top_3h", "ds_3h", "last_pos_3h") == [(1, 2, 1.5, 2, 3)]


@pytest.mark.parametrize("methods", [{"30m": "join", "2h": "frames"}, {"30m": "frames", "2h": "join"},
                                   {"30m": "totals", "2h": "join"}, {"30m": "frames", "2h": "totals"}])
def test_several_windows_with_mixed_methods(methods: dict[str, str]) -> None:
    events = [event(T - timedelta(minutes=m), v=m) for m in (10, 30, 31, 120, 121)]
    case = Case(window_view("n", "sv", windows=("30m", "2h")), events, [row(T)], methods)
    assert features(case, "n_30m", "n_2h", "sv_30m", "sv_2h") == [(2, 4, 40, 191)]


@METHODS
def test_output_types_are_the_views_column_types(method: str) -> None:
    case = Case(window_view("n", "sv", "sw", "av", "hi", "latest_v", "seen"), [event(T - US, v=1, w=0.5, s="a")],
                [row(T)], {"3h": method})
    result = check(case)
    assert {name: result.types[name] for name, _, _ in result.outputs} == {
        "n_3h": "BIGINT", "sv_3h": "HUGEINT", "sw_3h": "DOUBLE", "av_3h": "DOUBLE", "hi_3h": "VARCHAR",
        "latest_v_3h": "BIGINT", "seen_3h": "TIMESTAMP WITH TIME ZONE"}
    assert result.rows[0]["seen_3h"] == T - US


@METHODS
def test_spine_times_naive_and_in_nanoseconds(method: str) -> None:
    events = [event(T - timedelta(hours=3), v=1), event(T, v=10)]
    spine = [row(T, ns=0), row(T, ns=999), row(T + US, ns=0)]
    for flavour in ("naive", "nanos", "naive_nanos"):
        case = Case(window_view("sv"), events, spine, {"3h": method}, spine_flavour=flavour)
        # T + 999 ns is floored to T: the event at T is not yet known, the one at T - 3h still counts.
        assert features(case, "sv_3h") == [(1,), (1,), (10,)]


@METHODS
@pytest.mark.parametrize("flavour", ["nanos", "naive_nanos"])
def test_nanosecond_spine_times_before_1970_are_floored(method: str, flavour: str) -> None:
    """-1 ns is floored to -1 µs (not truncated to 0), so an event at -1 µs is not yet known there."""
    case = Case(window_view("n"), [event(EPOCH - US)], [row(EPOCH - US, ns=999), row(EPOCH)], {"3h": method},
                spine_flavour=flavour)
    assert features(case, "n_3h") == [(0,), (1,)]


@METHODS
def test_empty_events_and_empty_spines(method: str) -> None:
    assert features(Case(window_view("n", "sv"), [], [row(T)], {"3h": method}), "n_3h", "sv_3h") == [(0, None)]
    assert features(Case(window_view("n", "sv"), [event(T - US, v=1)], [], {"3h": method}), "n_3h") == []


@METHODS
def test_a_hot_key_with_a_long_window(method: str) -> None:
    events = [event(BASE + i * timedelta(minutes=7), v=i % 5) for i in range(200)]
    spine = [row(BASE + i * timedelta(minutes=13) + d * US) for i in range(110) for d in (-1, 0, 1)]
    case = Case(window_view("n", "dv", "sv", "last_v", windows=("1d", "90m")), events, spine,
                {"1d": method, "90m": "frames" if method == "join" else "join"})
    assert max(r[0] for r in features(case, "n_1d")) == 200


def test_two_window_views_and_a_snapshot_view_in_one_frame() -> None:
    """Each view keeps its own windows, lag and methods when several are joined to one spine."""
    def built(name: str, text: str, columns: tuple[tuple[str, str], ...]) -> Any:
        loaded, _ = parse_definition(Path(f"{name}.sql"), "-- entity: k\n-- timestamp: ts\n-- owner: a@b.c\n" + text)
        view, problems = build_view(loaded)
        assert view is not None, problems
        return view.model_copy(update={"columns": tuple(Column(name=n, type=t) for n, t in columns),
                                       "event_time_type": "TIMESTAMP WITH TIME ZONE"})

    counts = built("counts", "-- windows: 1h, 3h\nSELECT k, count(*) AS n FROM events GROUP BY k\n",
                   (("k", "BIGINT"), ("n", "BIGINT")))
    sums = built("sums", "-- windows: 1h\n-- available_after: 1800s\nSELECT k, sum(v) AS s FROM events GROUP BY k\n",
                 (("k", "BIGINT"), ("s", "HUGEINT")))
    latest = built("latest", "SELECT k, ts, v FROM events\n",
                   (("k", "BIGINT"), ("ts", "TIMESTAMP WITH TIME ZONE"), ("v", "BIGINT")))
    views = {v.name: v for v in (counts, sums, latest)}
    selected = select_features(views, ["counts.*", "latest.v", "sums.*"], taken=["k", "t"])
    of = {name: tuple(s for s in selected if s.feature.view == name) for name in views}
    joins = [WindowRows(counts, event_rows(counts, counts.query), of["counts"], {"1h": "join", "3h": "frames"}),
             ViewRows(latest, sqlglot.parse_one("SELECT * FROM events", read="duckdb"), of["latest"]),
             WindowRows(sums, event_rows(sums, sums.query), of["sums"], {"1h": "join"})]
    events = pa.table({"k": pa.array([1, 1, 1], pa.int64()), "v": pa.array([1, 10, 100], pa.int64()),
                       "ts": pa.array([T - timedelta(hours=2), T - timedelta(minutes=40), T - timedelta(minutes=20)],
                                      UTC_US)})
    spine = pa.table({"k": pa.array([1, 2], pa.int64()), "t": pa.array([T, T], UTC_US),
                      ROW: pa.array([0, 1], pa.int64())})
    columns = (Column(name="k", type="BIGINT"), Column(name="t", type="TIMESTAMP WITH TIME ZONE"),
               Column(name=ROW, type="BIGINT"))
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("events", events)
        connection.register("spine", spine)
        query = point_in_time(Spine("spine", columns, "t"), joins)
        table = connection.sql(query.sql(dialect="duckdb")).to_arrow_table()
    rows = [{n: plain(r[n]) for n in ("n_1h", "n_3h", "v", "s_1h")} for r in table.to_pylist()]
    # s_1h: known 30 min late, so only the event at T - 40 min (known at T - 10 min) is in [T - 1h, T).
    assert rows == [{"n_1h": 2, "n_3h": 3, "v": 100, "s_1h": 10}, {"n_1h": 0, "n_3h": 0, "v": None, "s_1h": None}]


@pytest.mark.parametrize("sql", ["sum(DISTINCT v)", "avg(DISTINCT v)", "min(DISTINCT v)",
                                 "count(DISTINCT v ORDER BY v)", "max(v ORDER BY o)"])
def test_distinct_and_order_by_outside_count_and_last_are_refused(sql: str) -> None:
    """DISTINCT belongs to count(DISTINCT x) and ORDER BY to last(x ORDER BY o): elsewhere validation
    refuses them (they once passed it and made every frame fail on the events' SELECT)."""
    view = View(aggregates=(Aggregate("x", sql, Measure("sum", value_of)),))  # the measure is not used
    loaded, _ = parse_definition(Path("view.sql"), view.definition())
    built, _ = build_view(loaded)
    assert built is not None
    refused = [p.message for p in check_query(built) if "not a supported window aggregate" in p.message]
    assert len(refused) == 1, check_query(built)
