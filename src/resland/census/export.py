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


#: The columns of :func:`export_compact`: the run key, its config, then what was measured.
COMPACT_FIELDS = (
    ("spec_hash", "string"), ("config_id", "string"), ("seed", "int64"), ("data", "string"), ("model", "string"),
    ("depth", "int64"), ("width", "int64"), ("activation", "string"), ("v_scale", "float64"), ("rho", "float64"),
    ("delta0", "float64"), ("kind", "string"),
    ("loss", "string"), ("n_params", "int64"), ("status", "string"), ("outcome", "string"), ("verdict", "string"),
    ("linear_equivalent", "int64"), ("trivial", "string"), ("null_dim", "int64"), ("symmetry_dim", "int64"),
    ("dead_units", "int64"), ("saturated_units", "int64"), ("risk", "float64"), ("linear_risk", "float64"),
    ("linear_risk_lower", "float64"), ("linear_risk_upper", "float64"), ("gap", "float64"),
    ("path_min_risk", "float64"), ("lambda_min", "float64"), ("lambda_max", "float64"), ("lambda_tol", "float64"),
    ("grad_norm", "float64"),
    ("kink_margin", "float64"), ("clarke_stationary", "int64"), ("delta", "float64"), ("G", "float64"),
    ("gap_bound", "float64"), ("near_identity_bound", "float64"), ("iterations", "int64"), ("seconds", "float64"),
    ("probe_risks", "string"), ("parameters", "string"),
)
#: Runs whose parameters :func:`export_compact` keeps (for replay).
KEEP_PARAMETERS = {"verdicts": ("degenerate_saddle", "local_minimum_worse", "degenerate"), "outcomes": ("unresolved",)}


def compact_row(row: dict) -> dict:
    """One store row as the flat record of :func:`export_compact`."""
    c = json.loads(row["config"])
    cert = json.loads(row["certificate"]) if row["certificate"] else {}
    gb, ni = cert.get("gap_bound") or {}, cert.get("near_identity") or {}
    keep = row["verdict"] in KEEP_PARAMETERS["verdicts"] or row["outcome"] in KEEP_PARAMETERS["outcomes"]
    out = {k: row.get(k) for k, _ in COMPACT_FIELDS}
    out.update({k: c.get(k) for k in ("data", "model", "depth", "width", "activation", "v_scale", "rho", "delta0",
                                     "kind")})
    out.update(loss=cert.get("loss", c.get("loss")), delta=_num(ni.get("delta")), G=_num(gb.get("G")),
               lambda_tol=_num((cert.get("tolerances") or {}).get("lambda_tol")),
               gap_bound=_num(gb.get("rigorous")), near_identity_bound=_num(ni.get("bound")),
               parameters=row["parameters"] if keep else None)
    return out


def _num(x) -> float | None:
    """A float from a certificate field (JSON writes ±inf and nan as strings)."""
    return None if x is None else float(x)


def export_compact(store: RunStore, out: str | Path, spec_hash: str | None = None) -> int:
    """Write the compact Parquet file of a store (or of one spec); returns the number of runs.

    Raises:
        ValidationError: never for a readable store (the store validates on open).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(k, getattr(pa, t)()) for k, t in COMPACT_FIELDS])
    rows = (compact_row(r) for r in store.rows(spec_hash))
    n = 0
    with pq.ParquetWriter(Path(out), schema, compression="zstd") as writer:
        while batch := list(itertools.islice(rows, _BATCH)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
