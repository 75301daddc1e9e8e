"""Deterministic example data for the fraud-detection demo project.

The data tells a story a model can learn. A few "hot" accounts are taken over
in short episodes: several cards are added within hours, then large, often
cross-border purchases follow at risky merchants. Those purchases carry most of
the ``is_fraud`` labels; the rest is sparse background fraud that leans on the
amount, the merchant's category and cross-border use.

Everything is drawn from one seeded NumPy generator in a fixed order, and time
ends at a fixed instant, so a seed always gives the same rows and Parquet bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_END = datetime(2026, 11, 1, tzinfo=UTC)  # exclusive end of the data
_SPAN_DAYS = 90
_HOUR_US = 3_600 * 1_000_000
_DAY_US = 24 * _HOUR_US
_END_US = int(_END.timestamp()) * 1_000_000
_START_US = _END_US - _SPAN_DAYS * _DAY_US

_COUNTRIES = ("US", "GB", "DE", "FR", "NL", "BR")
_COUNTRY_WEIGHTS = (0.40, 0.15, 0.15, 0.12, 0.10, 0.08)
_ACCOUNT_TYPES = ("standard", "premium", "business")
_ACCOUNT_TYPE_WEIGHTS = (0.80, 0.15, 0.05)
_CATEGORIES = ("grocery", "restaurants", "fuel", "travel", "gaming", "electronics", "gift_cards", "crypto")
_CATEGORY_WEIGHTS = (0.25, 0.20, 0.12, 0.10, 0.08, 0.12, 0.08, 0.05)
_CATEGORY_RISK = (-0.5, -0.3, 0.0, 0.6, 0.8, 1.0, 1.6, 1.8)  # added log-odds of background fraud
_RISKY_CATEGORIES = ("electronics", "gift_cards", "crypto")  # where takeovers spend
_HOT_USER_SHARE = 0.04  # accounts that suffer at least one takeover episode
_MERCHANT_ID_BASE = 100_000
_CARD_ID_BASE = 5_000_000


def write_demo_data(
    root: Path,
    *,
    conninfo: str,
    offline_database: Path,
    users: int = 20_000,
    transactions: int = 1_000_000,
    seed: int = 7,
) -> dict[str, int]:
    """Write the fraud demo's four sources under ``root`` and return their row counts.

    - ``data/transactions.parquet``: exactly ``transactions`` card payments over
      the 90 days ending 2026-11-01T00:00:00Z, with an ``is_fraud`` label.
    - ``data/card_events/YYYY-MM.parquet``: card-added events, one file a month (``ingested_at``: when
      each reached the store, NULL in this history; the source takes pushes).
    - ``public.accounts`` in the PostgreSQL at ``conninfo``: one row per profile
      version (dropped and recreated, loaded with COPY).
    - ``merchants`` in the DuckDB file ``offline_database`` (replaced).

    Timestamps are UTC with microsecond precision. The same ``seed`` and sizes
    always give the same rows (and the same Parquet bytes)::

        >>> write_demo_data(Path("."), conninfo=url, offline_database=db)  # doctest: +SKIP
        {'transactions': 1000000, 'card_events': 18263, 'accounts': 23182, 'merchants': 1000}
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    people = {  # indexed by user_id - 1
        "home": rng.choice(len(_COUNTRIES), users, p=_COUNTRY_WEIGHTS),
        "signup": _START_US - rng.integers(_DAY_US, 3 * 365 * _DAY_US, users),
        "account_type": rng.choice(len(_ACCOUNT_TYPES), users, p=_ACCOUNT_TYPE_WEIGHTS),
        "activity": rng.lognormal(0.0, 1.0, users),
    }
    merchants = _draw_merchants(rng, max(20, users // 20))
    # A takeover episode is a hot user and the instant the fraudster gets in.
    hot_users = np.flatnonzero(rng.random(users) < _HOT_USER_SHARE)
    episodes = np.repeat(hot_users, rng.integers(1, 4, hot_users.size))
    starts = _START_US + rng.integers(0, (_SPAN_DAYS - 1) * _DAY_US, episodes.size)
    card_events = _draw_card_events(rng, users, episodes, starts)
    txns = _draw_transactions(rng, transactions, people, merchants, episodes, starts)
    accounts = _draw_accounts(rng, people)

    data = Path(root) / "data"
    (data / "card_events").mkdir(parents=True, exist_ok=True)
    pq.write_table(txns, data / "transactions.parquet", compression="zstd")
    for stale in (data / "card_events").glob("*.parquet"):
        stale.unlink()
    micros = card_events["ts"].cast(pa.int64()).to_numpy()
    months = micros.astype("datetime64[us]").astype("datetime64[M]")
    for month in np.unique(months):
        part = card_events.filter(pa.array(months == month))
        pq.write_table(part, data / "card_events" / f"{month}.parquet", compression="zstd")
    _load_accounts(conninfo, accounts)
    _load_merchants(Path(offline_database), merchants.drop_columns(["_popularity", "_risk"]))
    tables = {"transactions": txns, "card_events": card_events, "accounts": accounts, "merchants": merchants}
    return {name: table.num_rows for name, table in tables.items()}


def _utc_times(micros: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(micros, pa.timestamp("us", tz="UTC"))


def _labels(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(values, pa.string()).take(pa.array(codes))


def _draw_merchants(rng: np.random.Generator, n: int) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    category = rng.choice(len(_CATEGORIES), n, p=_CATEGORY_WEIGHTS)
    popularity = rng.lognormal(0.0, 1.2, n)
    # The "_" columns drive the transactions and are not loaded.
    return pa.table({
        "merchant_id": pa.array(_MERCHANT_ID_BASE + 1 + np.arange(n), pa.int64()),
        "country": _labels(_COUNTRIES, rng.choice(len(_COUNTRIES), n, p=_COUNTRY_WEIGHTS)),
        "category": _labels(_CATEGORIES, category),
        "onboarded_at": _utc_times(_START_US - rng.integers(30 * _DAY_US, 5 * 365 * _DAY_US, n)),
        "_popularity": pa.array(popularity / popularity.sum()),
        "_risk": pa.array(np.array(_CATEGORY_RISK)[category]),
    })


def _draw_card_events(
    rng: np.random.Generator, users: int, episodes: np.ndarray, starts: np.ndarray
) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    # Everyone adds a card now and then; a takeover adds 3-10 within hours, some
    # in the same instant (a bulk add), which gives ties on (user_id, ts).
    bg_user = np.repeat(np.arange(users), rng.poisson(0.4, users))
    bg_ts = _START_US + rng.integers(0, _SPAN_DAYS * _DAY_US, bg_user.size)
    per_episode = rng.integers(3, 11, episodes.size)
    episode = np.repeat(np.arange(episodes.size), per_episode)
    offset = rng.exponential(1.5 * _HOUR_US, episode.size).astype(np.int64)
    offset[rng.random(episode.size) < 0.2] = 0
    offset[np.cumsum(per_episode) - per_episode] = 0
    user = np.concatenate([bg_user, episodes[episode]])
    ts = np.minimum(np.concatenate([bg_ts, starts[episode] + offset]), _END_US - 1)

    order = np.lexsort((ts, user))
    user, ts = user[order], ts[order]
    card = _CARD_ID_BASE + np.arange(user.size, dtype=np.int64)
    readded = (rng.random(user.size) < 0.1) & (np.roll(user, 1) == user)  # same card again
    readded[:1] = False
    card = np.where(readded, np.roll(card, 1), card)

    order = np.lexsort((user, ts))
    return pa.table({
        "event_id": pa.array(np.arange(1, user.size + 1), pa.int64()),
        "user_id": pa.array(user[order] + 1, pa.int64()),
        "card_id": pa.array(card[order], pa.int64()),
        "ts": _utc_times(ts[order]),
        # When each event reached the store: not recorded by the historical export (NULL: on time);
        # the store stamps the events pushed to it from now on.
        "ingested_at": pa.nulls(user.size, pa.timestamp("us", tz="UTC")),
    })


def _draw_transactions(
    rng: np.random.Generator,
    n: int,
    people: dict,
    merchants: pa.Table,
    episodes: np.ndarray,
    starts: np.ndarray,
) -> pa.Table:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    popularity = merchants["_popularity"].to_numpy()
    risky = np.flatnonzero(pc.is_in(merchants["category"], pa.array(_RISKY_CATEGORIES)).to_numpy())
    if risky.size == 0:
        risky = np.arange(popularity.size)

    # Takeover purchases: within 12h of the episode start, big, risky, often
    # abroad. Their number scales with payments per user, so the label rate
    # stays near 1.3% at any size.
    users = people["home"].size
    per_episode = 1 + rng.poisson(0.12 * n / users, episodes.size)
    episode = np.repeat(np.arange(episodes.size), per_episode)[:n]
    k = episode.size
    ep_ts = np.minimum(starts[episode] + rng.integers(0, 12 * _HOUR_US, k), _END_US - 1)
    ep_merchant = np.where(
        rng.random(k) < 0.7,
        risky[rng.integers(0, risky.size, k)],
        rng.choice(popularity.size, k, p=popularity),
    )
    ep_abroad = rng.random(k) < 0.5
    ep_amount = rng.lognormal(np.log(220.0), 0.8, k)
    ep_fraud = rng.random(k) < 0.85

    m = n - k
    bg_user = rng.choice(users, m, p=people["activity"] / people["activity"].sum())
    bg_ts = _START_US + rng.integers(0, _SPAN_DAYS * _DAY_US, m)
    bg_merchant = rng.choice(popularity.size, m, p=popularity)
    bg_abroad = rng.random(m) < 0.04
    bg_amount = rng.lognormal(np.log(35.0), 0.9, m)
    risk = merchants["_risk"].to_numpy()[bg_merchant]
    logit = -6.6 + 0.7 * np.log(bg_amount / 35.0) + risk + 1.2 * bg_abroad
    bg_fraud = rng.random(m) < 1.0 / (1.0 + np.exp(-logit))

    user = np.concatenate([episodes[episode], bg_user])
    home = people["home"][user]
    shift = rng.integers(1, len(_COUNTRIES), n)  # abroad: any country but home
    country = np.where(np.concatenate([ep_abroad, bg_abroad]), (home + shift) % len(_COUNTRIES), home)
    ts = np.concatenate([ep_ts, bg_ts])
    order = np.lexsort((user, ts))
    merchant = _MERCHANT_ID_BASE + 1 + np.concatenate([ep_merchant, bg_merchant])
    return pa.table({
        "transaction_id": pa.array(np.arange(1, n + 1), pa.int64()),
        "user_id": pa.array(user[order] + 1, pa.int64()),
        "merchant_id": pa.array(merchant[order], pa.int64()),
        "country": _labels(_COUNTRIES, country[order]),
        "amount": pa.array(np.round(np.concatenate([ep_amount, bg_amount])[order], 2), pa.float64()),
        "ts": _utc_times(ts[order]),
        "is_fraud": pa.array(np.concatenate([ep_fraud, bg_fraud])[order], pa.bool_()),
    })


def _draw_accounts(rng: np.random.Generator, people: dict) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    # Every account starts with its sign-up row; ~8% later change type or move
    # country (profile history), some of it inside the transaction window.
    n = people["home"].size
    edit_user = np.repeat(np.arange(n), np.where(rng.random(n) < 0.08, rng.integers(1, 4, n), 0))
    signup = people["signup"]
    room = _END_US - 1 - signup[edit_user]
    edit_ts = signup[edit_user] + (rng.random(edit_user.size) * room).astype(np.int64)
    moved = rng.random(edit_user.size) < 0.3
    edit_country = np.where(moved, rng.choice(len(_COUNTRIES), edit_user.size), people["home"][edit_user])
    edit_type = rng.choice(len(_ACCOUNT_TYPES), edit_user.size, p=_ACCOUNT_TYPE_WEIGHTS)

    user = np.concatenate([np.arange(n), edit_user])
    ts = np.concatenate([signup, edit_ts])
    order = np.lexsort((ts, user))
    user, ts = user[order], ts[order]
    # (user_id, updated_at) is the table's primary key: drop the rare collision.
    keep = np.ones(user.size, dtype=bool)
    keep[1:] = (user[1:] != user[:-1]) | (ts[1:] != ts[:-1])
    order, user, ts = order[keep], user[keep], ts[keep]
    return pa.table({
        "user_id": pa.array(user + 1, pa.int64()),
        "country": _labels(_COUNTRIES, np.concatenate([people["home"], edit_country])[order]),
        "signup_ts": _utc_times(signup[user]),
        "account_type": _labels(_ACCOUNT_TYPES, np.concatenate([people["account_type"], edit_type])[order]),
        "updated_at": _utc_times(ts),
    })


def _load_accounts(conninfo: str, accounts: pa.Table) -> None:
    import io

    import psycopg
    import pyarrow.csv as csv

    # One COPY of a CSV rendered by Arrow: no per-row Python on either side.
    buffer = io.BytesIO()
    csv.write_csv(accounts, buffer, csv.WriteOptions(include_header=False))
    with psycopg.connect(conninfo) as conn:
        conn.execute("DROP TABLE IF EXISTS public.accounts")
        conn.execute(
            "CREATE TABLE public.accounts (user_id BIGINT NOT NULL, country TEXT NOT NULL,"
            " signup_ts TIMESTAMPTZ NOT NULL, account_type TEXT NOT NULL,"
            " updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (user_id, updated_at))"
        )
        with conn.cursor().copy("COPY public.accounts FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())


def _load_merchants(database: Path, merchants: pa.Table) -> None:
    import duckdb

    database.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(database))
    try:
        conn.execute(
            "CREATE OR REPLACE TABLE merchants (merchant_id BIGINT, country VARCHAR,"
            " category VARCHAR, onboarded_at TIMESTAMPTZ)"
        )
        conn.register("demo_merchants", merchants)
        conn.execute("INSERT INTO merchants SELECT * FROM demo_merchants ORDER BY merchant_id")
    finally:
        conn.close()
