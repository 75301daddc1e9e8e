"""Training frames as returned and saved: the table, the SQL that built it, and what it was built from.

    frame = store.training_frame(spine, ["user_spend_trend.*"])
    frame.save_snapshot("snapshots/fraud_v3")      # data.parquet + manifest.json (features, versions, SQL, hash)
    load_snapshot("snapshots/fraud_v3")             # the same frame, verified against its content hash
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from featurestore.errors import FeatureStoreError

__all__ = ["DATA", "MANIFEST", "TrainingFrame", "load_snapshot"]




MANIFEST = "manifest.json"


DATA = "frame.parquet"


class TrainingFrame:
    """The spine's rows and columns, in its order, then the features; and how it was made."""

    def __init__(self, table: Any, sql: str, info: dict[str, Any], spine_columns: int = 0) -> None:
        self._table = table
        self.sql = sql
        self.info = info
        self._spine_columns = spine_columns  # the spine's hash is taken when a snapshot needs it

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"TrainingFrame({self._table.num_rows} rows, columns={self._table.column_names})"

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def to_arrow(self) -> Any:
        return self._table

    def to_polars(self) -> Any:
        import polars as pl

        return pl.from_arrow(self._table)

    def to_pandas(self) -> Any:
        """pandas with nullable dtypes, so integer and boolean columns with NULLs keep their type."""
        import pandas as pd
        import pyarrow as pa

        mapping = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                   pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                   pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
                   pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
        return self._table.to_pandas(types_mapper=mapping.get)

    def content_hash(self) -> str:
        return _content_hash(self._table)

    def save_snapshot(self, path: str | Path) -> Path:
        """Write the frame as Parquet plus a manifest; refuses to overwrite an existing snapshot."""
        import pyarrow.parquet as pq

        folder = Path(path)
        if (folder / MANIFEST).exists():
            raise FeatureStoreError(f"a snapshot already exists in {folder}; "
                                    "snapshots are immutable, choose a new path")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self._table, folder / DATA)
        if "spine_hash" not in self.info:
            self.info["spine_hash"] = _content_hash(self._table.select(range(self._spine_columns)))
        manifest = {
            **self.info,
            "rows": self._table.num_rows,
            "columns": self._table.column_names,
            "created_at": datetime.now(UTC).isoformat(),
            "content_hash": self.content_hash(),
            "sql": self.sql,
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        return folder


def load_snapshot(path: str | Path) -> TrainingFrame:
    """A saved frame, after checking that its data still matches the manifest's content hash."""
    import pyarrow.parquet as pq

    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        table = pq.read_table(folder / DATA)
    except (OSError, ValueError) as exc:
        raise FeatureStoreError(f"{folder} is not a readable snapshot: {exc}") from None
    actual = _content_hash(table)
    if actual != manifest.get("content_hash"):
        raise FeatureStoreError(f"snapshot {folder} was modified after it was saved: its content hash is {actual}, "
                                f"the manifest says {manifest.get('content_hash')}; rebuild it from the definitions")
    info = {k: v for k, v in manifest.items() if k not in ("sql",)}
    return TrainingFrame(table, manifest.get("sql", ""), info)


def _content_hash(table: Any) -> str:
    """SHA-256 of the table's names, types and values: the same data hashes the same however it is laid out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digest = hashlib.sha256()
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        kind = column.type
        digest.update(f"{name}\x00{kind}\x00{len(column)}\x00".encode())
        digest.update(column.is_null().to_numpy(zero_copy_only=False).tobytes())
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind) \
                or pa.types.is_duration(kind):
            column = column.cast(pa.int64())
            kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            filled = pc.fill_null(column, False if pa.types.is_boolean(kind) else 0)
            digest.update(filled.to_numpy(zero_copy_only=False).tobytes())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            for value in pc.fill_null(column, "").to_pylist():
                digest.update(value.encode())
                digest.update(b"\x00")
        else:
            digest.update(repr(column.to_pylist()).encode())
    return digest.hexdigest()
