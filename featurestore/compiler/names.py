"""The internal column and table names the compiled SQL uses: one home, so no module spells them.

Every internal name starts with `__fs_` (`PREFIX`), which a view's own columns may not, so they
never clash with features, keys or spine columns.
"""

from __future__ import annotations

__all__ = ["BUCKET", "DUE", "HIT", "KNOWN", "PREFIX", "ROW", "SIDE", "TIME", "TS", "UNTIL", "T"]

PREFIX = "__fs_"
ROW = "__fs_row"  # a spine row's number: frames keep the spine's order and join features back by it
T = "__fs_t"  # a spine row's time, as UTC microseconds
TS = "__fs_ts"  # a view row's (or event's) time, as UTC microseconds
KNOWN = "__fs_known"  # when a row becomes known: the later of its time plus the view's lag and its arrival
DUE = "__fs_due"  # a window view with arrival times: an event's time plus the lag, where its windows start
UNTIL = "__fs_until"  # cached rows: when the next row of the same keys becomes known
SIDE = "__fs_side"  # the portable join: whether a row of the union is a spine row or a view row
HIT = "__fs_hit"  # the portable join: the view row a spine row takes
BUCKET = "__fs_bucket"  # a time bucket, matched by hash joins beside the keys
TIME = "__fs_time"  # window frames: the union's order (known-at for events, t - 1 µs for spine rows)
AT = "__fs_at"  # expectations: the instant a batch's entities are evaluated at
