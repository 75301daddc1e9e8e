"""`featurestore init DIR`: a small project that validates and runs as it is."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import CONFIG_FILE
from featurestore.errors import ConfigError

__all__ = ["init_project"]

_CONFIG = """\
# featurestore project: where definitions live and what the sources are.
definitions = "definitions"

[offline]
database = ".featurestore/offline.duckdb"

[online]
postgres_url = ""   # empty: an embedded PostgreSQL under .featurestore/ (or set FEATURESTORE_POSTGRES_URL)

[sources]
orders = "data/orders.csv"
customers = "data/customers.csv"
"""

_CUSTOMER_PROFILE = """\
-- entity: customer_id
-- timestamp: updated_at
-- owner: you@example.com
-- description: The customer's segment and country as of each update
SELECT customer_id, updated_at, segment, country
FROM customers
"""

_ORDERS = """\
-- entity: customer_id
-- timestamp: ordered_at
-- owner: you@example.com
-- description: Orders and spend per customer over sliding windows
-- windows: 1d, 7d
SELECT customer_id, count(*) AS orders, sum(amount) AS spend
FROM orders
GROUP BY customer_id
"""


def init_project(folder: Path) -> Path:
    """Write a config, two small CSV sources and two views into `folder`; return its absolute path."""
    folder = folder.resolve()
    if (folder / CONFIG_FILE).exists():
        raise ConfigError(f"{folder / CONFIG_FILE} already exists; choose an empty folder")
    (folder / "definitions").mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / CONFIG_FILE).write_text(_CONFIG, encoding="utf-8")
    (folder / "definitions" / "customer_profile.sql").write_text(_CUSTOMER_PROFILE, encoding="utf-8")
    (folder / "definitions" / "customer_orders.sql").write_text(_ORDERS, encoding="utf-8")
    (folder / "data" / "customers.csv").write_text(_customers(), encoding="utf-8")
    (folder / "data" / "orders.csv").write_text(_orders(), encoding="utf-8")
    (folder / ".gitignore").write_text(".featurestore/\n", encoding="utf-8")
    return folder


def _customers() -> str:
    rows = ["customer_id,updated_at,segment,country"]
    for customer in range(1, 21):
        rows.append(f"{customer},2026-01-0{1 + customer % 3}T09:00:00Z,{('retail', 'business')[customer % 2]},"
                    f"{('DE', 'FR', 'US')[customer % 3]}")
    return "\n".join(rows) + "\n"


def _orders() -> str:
    rows = ["order_id,customer_id,ordered_at,amount"]
    for order in range(1, 201):
        customer = 1 + (order * 7) % 20
        rows.append(f"{order},{customer},2026-01-{1 + order % 28:02d}T{order % 24:02d}:{order % 60:02d}:00Z,"
                    f"{(order * 37) % 500 / 10 + 5:.2f}")
    return "\n".join(rows) + "\n"
