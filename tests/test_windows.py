"""Window aggregate views in training frames against the brute-force reference, on many random cases.

Each case is a window view (an aggregation grouped by its keys, one to three windows, sometimes a
lag, invalid periods and `available_since`, half of them arrival times: `-- known_at: arrived`),
its events and a spine, compiled by `compiler.windows` with each window's method drawn ("join",
"frames", or "totals": running totals for its counts and integer sums, frames for the rest; a view
with arrival times must be joined whatever is drawn), and run in DuckDB.
Times sit on a coarse grid (with ±1 µs neighbours), and most spine rows take the keys of one
event and a time on an edge it defines (its time plus lag, or its arrival, or either plus a window,
each ±1 µs), so events exactly at t - W and exactly at t, and ties of several events at one instant
(or arriving at one), are common. The features asked for (all, or some in any order, short or full
names) are drawn too.

The reference (`reference.window_aggregate`) is a plain loop over the events per spine row.
`heavy_cases` are the other shape: one to five keys with hundreds to thousands of events each over
a long span (`timelines`), windows from shorter than the gaps between events to covering hundreds of
them, checked against `reference.WindowIndex` under the drawn methods and under another method of each window.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import hypothesis
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings

from featurestore import FeatureStore, FeatureStoreError
from featurestore.compiler.checks import check_query
from featurestore.compiler.point_in_time import ROW, Spine, ViewRows, point_in_time
from featurestore.compiler.windows import WindowRows, event_rows
from featurestore.config import parse_duration
from featurestore.definitions.loader import parse_definition
from featurestore.definitions.selection import select_features
from featurestore.definitions.spec import Column, build_view
from featurestore.offline.frames import training_frame

from reference import Measure, WindowIndex, window_events
from support import ProjectDir
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
    hypothesis.event(f"arrival times: {'yes' if case.view.known_at else 'no'}")
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
    hypothesis.event(f"arrival times: {'yes' if case.view.known_at else 'no'}")
    hypothesis.event(f"most events in one window: {max(sizes) // 100 * 100}+, empty windows: "
                     f"{sum(size == 0 for size in sizes) * 10 // len(sizes) * 10}%+")
    check(case, frame)
    # Each window under the next method too: every window of every case meets two of the three. With
    # arrival times every window is joined whatever is asked: the other way, in time buckets or not.
    following = {"join": "frames", "frames": "totals", "totals": "join"}
    check(replace(case, methods={label: following[method] for label, method in case.methods.items()},
                  buckets=len(case.spine) % 2 == 0 if case.view.known_at else None), frame)


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


def at(hour: int, minute: int = 0, micros: int = 0) -> datetime:
    """An instant of the day the cases start: `at(10, 30, 1)` is 10:30:00.000001 UTC."""
    return BASE + timedelta(hours=hour, minutes=minute, microseconds=micros)


def late_view(*names: str, **header: Any) -> View:
    """A window view (3h unless `header` says otherwise) whose events arrive at `arrived`."""
    return View(aggregates=pick(*names), known_at="arrived", **header)


# Arrival times (docs/semantics.md, section 6): an event counts at t when t - W <= ts + L and
# max(ts + L, arrival) < t. Every window of such a view is joined, whatever method is asked:
# each test runs under each, and checks the whole frame against the reference too.


@METHODS
def test_a_late_event_is_counted_only_after_it_arrives(method: str) -> None:
    """Stamped 10:00, arrived 10:30: not known at 10:05, nor at 10:30 exactly (the upper edge is strict)."""
    events = [event(at(10), v=1, arrived=at(10, 30))]
    spine = [row(at(10, 5)), row(at(10, 30)), row(at(10, 30, 1))]
    case = Case(late_view("n", "sv"), events, spine, {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(0, None), (0, None), (1, 1)]


@METHODS
def test_the_arrival_column_counts_only_where_the_view_declares_it(method: str) -> None:
    events = [event(at(10), v=1, arrived=at(10, 30))]
    case = Case(window_view("n"), events, [row(at(10, 5))], {"3h": method})
    assert features(case, "n_3h") == [(1,)]


@METHODS
@pytest.mark.parametrize("lag", [timedelta(0), timedelta(hours=1)])
def test_a_late_event_leaves_the_window_at_its_time_plus_lag_plus_w(method: str, lag: timedelta) -> None:
    """Stamped 09:00, arrived 10:30: it leaves a 3h window at 12:00 + lag (its time), not at 13:30 (its arrival)."""
    events = [event(at(9), v=1, arrived=at(10, 30))]
    leaves = at(12) + lag
    spine = [row(at(10, 30)), row(at(10, 30, 1)), row(leaves), row(leaves + US), row(at(13, 30))]
    case = Case(late_view("n", lag=lag), events, spine, {"3h": method})
    assert features(case, "n_3h") == [(0,), (1,), (1,), (0,), (0,)]


@METHODS
def test_an_event_arriving_as_its_window_ends_is_never_counted(method: str) -> None:
    """Stamped 09:00 and arrived 10:00, in a 1h window: at 10:00 not yet known, and 1 µs later already out."""
    events = [event(at(9), v=1, arrived=at(10)), event(at(9, 30), v=10, arrived=at(10))]
    spine = [row(at(10) - US), row(at(10)), row(at(10, 0, 1)), row(at(10, 30)), row(at(10, 30, 1))]
    case = Case(late_view("n", "sv", windows=("1h",)), events, spine, {"1h": method})
    assert features(case, "n_1h", "sv_1h") == [(0, None), (0, None), (1, 10), (1, 10), (0, None)]


@METHODS
def test_a_null_arrival_is_on_time(method: str) -> None:
    """A NULL arrival, and an arrival exactly at ts + lag, make the event known at ts + lag."""
    lag = timedelta(minutes=30)
    events = [event(at(10), v=1), event(at(10), v=10, arrived=at(10, 30))]
    spine = [row(at(10, 30)), row(at(10, 30, 1)), row(at(13, 30)), row(at(13, 30, 1))]
    case = Case(late_view("n", "sv", lag=lag), events, spine, {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(0, None), (2, 11), (2, 11), (0, None)]


@METHODS
def test_an_arrival_before_the_time_plus_lag_changes_nothing(method: str) -> None:
    """Arrived early (before its time plus lag, even before its time): known at ts + lag all the same."""
    events = [event(at(10), v=1, arrived=at(10, 59)), event(at(10), v=10, arrived=at(9))]
    spine = [row(at(10, 59, 1)), row(at(11)), row(at(11, 0, 1)), row(at(14)), row(at(14, 0, 1))]
    case = Case(late_view("n", "sv", lag=timedelta(hours=1)), events, spine, {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(0, None), (0, None), (2, 11), (2, 11), (0, None)]


@METHODS
def test_events_arriving_together_count_from_the_same_instant(method: str) -> None:
    """A batch that lands at 11:00 with events stamped 08:30 to 10:45, beside an event on time."""
    batch = [event(at(h, m), v=v, arrived=at(11)) for h, m, v in ((8, 30, 1), (9, 0, 10), (10, 45, 100))]
    events = [*batch, event(at(10, 50), v=1000)]
    spine = [row(at(11)), row(at(11, 0, 1)), row(at(12)), row(at(12, 0, 1))]
    case = Case(late_view("n", "sv", "last_v", windows=("3h", "2h")), events, spine, {"3h": method, "2h": method})
    # At 11:00 only the event on time is known; 1 µs later the whole batch too, in the 3h window all of
    # it (from 08:00:00.000001), in the 2h window what is stamped from 09:00:00.000001 on. The batch
    # then leaves the windows by event time: 09:00 is in the 3h window at 12:00, and out 1 µs later.
    assert features(case, "n_3h", "sv_3h", "n_2h", "sv_2h", "last_v_3h") == [
        (1, 1000, 1, 1000, 1000), (4, 1111, 2, 1100, 1000), (3, 1110, 2, 1100, 1000), (2, 1100, 2, 1100, 1000)]


@METHODS
@pytest.mark.parametrize("flavour", ["nanos", "naive_nanos"])
def test_nanosecond_arrivals_are_ceiled_to_the_microsecond(method: str, flavour: str) -> None:
    """Arrived 1 ns after 10:30: treated as 10:30:00.000001, so known strictly after that."""
    events = [event(at(10), v=1, arrived=at(10, 30), arrived_ns=1), event(at(10), v=10, arrived=at(10, 30))]
    spine = [row(at(10, 30, 1)), row(at(10, 30, 2))]
    case = Case(late_view("sv"), events, spine, {"3h": method}, arrival_flavour=flavour)
    assert features(case, "sv_3h") == [(10,), (11,)]


@METHODS
def test_invalid_periods_and_available_since_apply_to_late_events(method: str) -> None:
    """An invalid period is on event time, whenever the event arrived; `available_since` on the spine time."""
    events = [event(at(9), v=1, arrived=at(11)), event(at(10), v=10, arrived=at(10, 30)),
              event(at(10, 15), v=100, arrived=at(11))]
    case = Case(late_view("n", "sv", invalid=((at(9, 59), at(10, 10)),), since=at(11)), events,
                [row(at(10, 59)), row(at(11)), row(at(11, 0, 1))], {"3h": method})
    assert features(case, "n_3h", "sv_3h") == [(None, None), (0, None), (2, 101)]


def test_frames_and_totals_are_refused_for_a_view_with_arrival_times(tmp_path: Path) -> None:
    """Through the public API: asking a view with arrival times for framed windows or running totals
    is an error naming the view and the joins that work; those joins give the semantics' answer."""
    project = ProjectDir(tmp_path)
    project.parquet("events", pa.table({
        "user_id": pa.array([1, 1, 1], pa.int64()), "amount": pa.array([1.0, 10.0, 100.0]),
        "ts": pa.array([at(9), at(10), at(10, 15)], UTC_US), "arrived": pa.array([at(10, 30), None, at(11)], UTC_US)}))
    project.view("late", "-- entity: user_id\n-- timestamp: ts\n-- owner: a@b.c\n-- windows: 1h, 3h\n"
                         "-- known_at: arrived\n"
                         "SELECT user_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY user_id\n")
    spine = pa.table({"user_id": pa.array([1, 1, 1], pa.int64()),
                      "ts": pa.array([at(10, 30), at(10, 30, 1), at(11, 0, 1)], UTC_US)})
    wanted = [(1, 10.0, 1, 10.0), (1, 10.0, 2, 11.0), (1, 100.0, 3, 111.0)]
    with FeatureStore(tmp_path, consumer="test") as store:
        for join in ("frames", "totals"):
            with pytest.raises(FeatureStoreError, match=r"view 'late' declares arrival times \(known_at\): its windows "
                                                        r"are computed by the range join only; ask for join 'join' or "
                                                        r"'auto'"):
                training_frame(store.project, spine, ["late.*"], join=join)
        frames = [training_frame(store.project, spine, ["late.*"], join=join) for join in ("auto", "join")]
        frames.append(store.training_frame(spine, ["late.*"]))
    for frame in frames:
        values = frame.to_arrow().select(["n_1h", "total_1h", "n_3h", "total_3h"]).to_pylist()
        assert [tuple(r.values()) for r in values] == wanted
        [choice] = frame.info["joins"]
        assert choice["methods"] == {"1h": "join", "3h": "join"}
        assert "known_at" in choice["reason"]


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
