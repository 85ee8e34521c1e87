"""Export a run store to CSV or Parquet, streamed in batches (bounded memory).

:func:`export` writes every column; :func:`export_compact` writes the flat columns a published
census needs (config, outcome, verdict, the R_lin interval, curvature, theory quantities),
without certificate blobs, and parameters only for the points worse than linear without negative
curvature (``degenerate_saddle``, ``local_minimum_worse``, ``degenerate``) and unresolved runs.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import json

from .._checks import check_choice
from .row import KEEP_PARAMETERS, ROW_FIELDS, SUMMARY_SCHEMA, RunSummary, column_type
from .store import RunStore

__all__ = ["COMPACT_FIELDS", "CONFIG_FIELDS", "FORMATS", "KEEP_PARAMETERS", "compact_row", "export", "export_compact"]

FORMATS = ("csv", "parquet")
_BATCH = 1000


#: The config keys that :func:`export` writes as flat columns (after ``seed``), in both formats.
CONFIG_FIELDS = (("data", "string"), ("model", "string"), ("depth", "int64"), ("width", "int64"),
                 ("activation", "string"), ("v_scale", "float64"), ("rho", "float64"), ("delta0", "float64"),
                 ("core_depth", "int64"), ("core_width", "int64"), ("kind", "string"), ("loss_config", "string"))


def _flat(row: dict) -> dict:
    """A store row with its config as flat columns (:data:`CONFIG_FIELDS`) instead of nested JSON; the
    config's ``loss`` (``auto`` or a name) is ``loss_config``."""
    c = json.loads(row["config"]) if row["config"] else {}
    out = {k: row[k] for k in ("spec_hash", "config_id", "seed")}
    out.update({k: c.get("loss" if k == "loss_config" else k) for k, _ in CONFIG_FIELDS})
    out.update({k: v for k, v in row.items() if k not in out and k != "config"})
    return out


def _columns() -> list[tuple[str, str]]:
    kinds = {"REAL": "float64", "INTEGER": "int64", "TEXT": "string"}
    head = [("spec_hash", "string"), ("config_id", "string"), ("seed", "int64"), *CONFIG_FIELDS]
    return head + [(f, kinds[column_type(f)]) for f in ROW_FIELDS if f not in {k for k, _ in head} | {"config"}]


def export(store: RunStore, out: str | Path, fmt: str = "csv") -> int:
    """Write every stored row to ``out``, the config as flat columns (:data:`CONFIG_FIELDS`) and the
    certificates as JSON text, with the same columns in CSV and Parquet; returns the count.

    Raises:
        ValidationError: an unknown ``fmt``.
    """
    check_choice("format", fmt, FORMATS)
    return _write((_flat(r) for r in store.rows()), _columns(), Path(out), fmt)


def _write(rows, columns: list[tuple[str, str]], out: Path, fmt: str, compression: str = "snappy") -> int:
    """Stream dict rows to CSV or Parquet with the given ``(name, arrow type)`` columns."""
    n = 0
    if fmt == "csv":
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=[k for k, _ in columns], extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
                n += 1
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(k, getattr(pa, t)()) for k, t in columns])
    with pq.ParquetWriter(out, schema, compression=compression) as writer:
        while batch := list(itertools.islice(rows, _BATCH)):
            writer.write_table(pa.Table.from_pylist([{k: r.get(k) for k, _ in columns} for r in batch], schema=schema))
            n += len(batch)
    return n


#: The columns of :func:`export_compact` with their Arrow types: derived from :class:`~resland.census.row.RunSummary`.
COMPACT_FIELDS = SUMMARY_SCHEMA


def compact_row(row: dict) -> dict:
    """One store row as the flat record of :func:`export_compact` (:meth:`RunSummary.from_run`)."""
    return RunSummary.from_run(row).to_dict()


def export_compact(store: RunStore, out: str | Path, spec_hash: str | None = None, fmt: str = "parquet") -> int:
    """Write the compact file of a store (or of one spec), Parquet or CSV; returns the number of runs.

    Raises:
        ValidationError: an unknown ``fmt``.
    """
    check_choice("format", fmt, FORMATS)
    return _write((compact_row(r) for r in store.rows(spec_hash)), list(COMPACT_FIELDS), Path(out), fmt, "zstd")
