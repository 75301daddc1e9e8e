"""featurestore: features written as SQL, point-in-time correct offline and online.

    from featurestore import FeatureStore
    store = FeatureStore(".")
    store.validate()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurestore.errors import (
    BadRequestError,
    ConfigError,
    DefinitionError,
    FeatureStoreError,
    InvalidProjectError,
    Problem,
    PushRejected,
    UnavailableError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from featurestore.store import FeatureStore

__all__ = [
    "BadRequestError",
    "ConfigError",
    "DefinitionError",
    "FeatureStore",
    "FeatureStoreError",
    "InvalidProjectError",
    "Problem",
    "PushRejected",
    "UnavailableError",
    "UnknownNameError",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The façade pulls in sqlglot; importing the package alone stays instant.
    if name == "FeatureStore":
        from featurestore.store import FeatureStore

        return FeatureStore
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
