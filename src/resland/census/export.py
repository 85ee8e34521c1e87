"""Export a run store to CSV or Parquet, streamed in batches (bounded memory)."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from .._checks import check_choice
from .runner import ROW_FIELDS
from .store import RunStore, column_type

FORMATS = ("csv", "parquet")
_BATCH = 1000


def export(store: RunStore, out: str | Path, fmt: str = "csv") -> int:
    """Write every stored row (all columns, certificates as JSON text) to ``out``; returns the count.

    Raises:
        ValidationError: an unknown ``fmt``.
    """
    check_choice("format", fmt, FORMATS)
    out = Path(out)
    rows = store.rows()
    n = 0
    if fmt == "csv":
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                n += 1
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"REAL": pa.float64(), "INTEGER": pa.int64(), "TEXT": pa.string()}
    schema = pa.schema([(f, kinds[column_type(f)]) for f in ROW_FIELDS])
    with pq.ParquetWriter(out, schema) as writer:
        while batch := list(itertools.islice(rows, _BATCH)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
