"""The join chooser: few heavy keys must not get a hash join on the keys alone; many light keys keep it.

Shapes are what `compiler.shape.key_shape` measures; the chooser is pure arithmetic over them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from featurestore.definitions.loader import parse_definition
from featurestore.definitions.spec import build_view
from featurestore.offline.joins import Shape, cached_join, snapshot_join, window_joins

HOUR = timedelta(hours=1)
YEAR_US = 365 * 24 * 3600 * 10**6


def view(header: str, sql: str):
    loaded, _ = parse_definition(Path("v.sql"),
                                 "-- entity: k\n-- timestamp: ts\n-- owner: o@example.com\n" + header + sql)
    built, problems = build_view(loaded)
    assert built is not None, problems
    return built


def shape(spine: int, rows: int, keys: int, span_us: float, widths: list[timedelta]) -> Shape:
    """Rows spread evenly over `keys` keys and each key's span; spine rows spread over the keys."""
    pairs = (spine / keys) * (rows / keys) * keys
    return Shape(spine, rows, keys, span_us * keys, pairs,
                 {w: pairs * min(1.0, (w // timedelta(microseconds=1)) / span_us) for w in widths})


def test_few_heavy_keys_never_get_a_hash_join_on_the_keys_alone() -> None:
    snapshot = view("-- ttl: 3h\n", "SELECT k, ts, v FROM events\n")
    heavy = shape(336_776, 26_000, 3, YEAR_US, [3 * HOUR, 6 * HOUR])
    chosen = snapshot_join(snapshot, heavy)
    assert (chosen.join, chosen.bucket) in {("asof", None), ("ranked", 3 * HOUR)}
    assert chosen.costs["ranked"] > 100 * min(chosen.costs.values())  # 2.9 billion comparisons
    cached = cached_join(snapshot, shape(336_776, 26_000, 3, YEAR_US, []))
    assert cached.join in {"asof", "intervals"} and (cached.join == "asof" or cached.bucket is not None)
    windowed = view("-- windows: 3h, 1d\n", "SELECT k, count(*) AS n, avg(x) AS a FROM events GROUP BY k\n")
    joins = window_joins(windowed, shape(336_776, 400_000, 16, YEAR_US, [3 * HOUR, 6 * HOUR, 24 * HOUR, 48 * HOUR]),
                         {"3h": 2, "1d": 2})
    assert joins.methods["1d"] == "frames" or joins.bucket is not None
    assert joins.methods["3h"] == "frames" or joins.bucket is not None
    # Offered running totals for the counts, it takes them: two ASOF joins instead of a framed aggregate each.
    offered = {"3h": ["n_3h"], "1d": ["n_1d"]}
    with_totals = window_joins(windowed,
                               shape(336_776, 400_000, 16, YEAR_US, [3 * HOUR, 6 * HOUR, 24 * HOUR, 48 * HOUR]),
                               {"3h": 2, "1d": 2}, totals=offered)
    assert with_totals.totals == ("n_3h", "n_1d")
    assert min(with_totals.costs.values()) < min(joins.costs.values())


def test_many_light_keys_keep_the_plain_hash_joins() -> None:
    snapshot = view("-- ttl: 7d\n", "SELECT k, ts, v FROM events\n")
    span = 180 * 24 * 3600 * 10**6
    light = shape(500_000, 4_000_000, 100_000, span, [7 * 24 * HOUR, 14 * 24 * HOUR])
    assert snapshot_join(snapshot, light).join == "ranked"
    assert cached_join(snapshot, shape(500_000, 4_000_000, 100_000, span, [])).join == "intervals"
    windowed = view("-- windows: 1h, 1d, 7d\n", "SELECT k, count(*) AS n, sum(x) AS s FROM events GROUP BY k\n")
    joins = window_joins(windowed, shape(1_000_000, 10_000_000, 100_000, 90 * 24 * 3600 * 10**6,
                                         [w * HOUR for w in (1, 2, 24, 48, 168, 336)]), {"1h": 2, "1d": 2, "7d": 2},
                         totals={label: [f"n_{label}", f"s_{label}"] for label in ("1h", "1d", "7d")})
    assert set(joins.methods.values()) == {"join"} and joins.totals == ()  # four ASOF joins cost more than the join


def test_a_view_without_ttl_is_joined_by_asof() -> None:
    snapshot = view("", "SELECT k, ts, v FROM events\n")
    assert snapshot_join(snapshot, shape(1000, 1000, 10, YEAR_US, [])).join == "asof"
