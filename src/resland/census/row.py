"""The census's typed rows: one record per run, from which every schema is derived (docs/census.md, "Rows").

* :class:`Run`: what the runner measures and the SQLite store holds (table ``runs``; its columns, their
  SQLite types and the full export's columns are derived from the fields: :data:`ROW_FIELDS`,
  :func:`column_type`).
* :class:`RunSummary`: a run as the published compact export holds it (Parquet, the atlas's
  ``*.parquet``): the run key, the config as flat columns, what was measured, the theory quantities, and
  parameters only where a human must be able to replay the point. Its Arrow schema is
  :data:`SUMMARY_SCHEMA`; :meth:`RunSummary.from_run` is the one conversion.

The runner builds a :class:`Run`, the store writes and reads its fields, export and atlas turn it into a
:class:`RunSummary`, and replay compares summaries field by field. At the boundaries (SQLite, Arrow, the
reports) rows travel as plain dicts of these fields (``to_dict``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass

from ..certificate import WORSE_NO_NEGATIVE

#: Runs whose parameters the compact export keeps (for replay).
KEEP_PARAMETERS = {"verdicts": WORSE_NO_NEGATIVE, "outcomes": ("unresolved", "gradient_flat")}


@dataclass
class Run:
    """One census run as stored. ``config``, ``certificate``, ``finder``, ``parameters`` (the flat θ),
    ``versions`` and ``probe_risks`` are JSON text. Integer flags are 0/1."""

    spec_hash: str
    config_id: str
    seed: int
    config: str
    engine: str | None = None
    status: str | None = None
    outcome: str | None = None
    converged: int | None = None
    verdict: str | None = None
    linear_equivalent: int | None = None
    trivial: str | None = None
    null_dim: int | None = None
    symmetry_dim: int | None = None
    dead_units: int | None = None
    saturated_units: int | None = None
    zero_units: int | None = None
    risk: float | None = None
    linear_risk: float | None = None
    linear_risk_lower: float | None = None
    linear_risk_upper: float | None = None
    gap: float | None = None
    path_min_risk: float | None = None
    lambda_min: float | None = None
    lambda_max: float | None = None
    grad_norm: float | None = None
    kink_margin: float | None = None
    clarke_stationary: int | None = None
    iterations: int | None = None
    n_params: int | None = None
    seconds: float | None = None
    attempts: int | None = None
    error: str | None = None
    certificate: str | None = None
    finder: str | None = None
    parameters: str | None = None
    versions: str | None = None
    probe_risks: str | None = None
    point: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunSummary:
    """One run in the compact export: the key, the config (``data`` … ``kind``, ``loss``), the outcome and
    verdict with their evidence, the theory quantities of a one-output ResNet (``delta``, ``G``,
    ``gap_bound``, ``near_identity_bound``) and ``parameters`` only for the points worse than linear without
    negative curvature and the unresolved runs."""

    spec_hash: str
    config_id: str
    seed: int
    data: str | None = None
    model: str | None = None
    depth: int | None = None
    width: int | None = None
    activation: str | None = None
    v_scale: float | None = None
    rho: float | None = None
    delta0: float | None = None
    core_depth: int | None = None
    core_width: int | None = None
    kind: str | None = None
    loss: str | None = None
    n_params: int | None = None
    status: str | None = None
    outcome: str | None = None
    verdict: str | None = None
    linear_equivalent: int | None = None
    trivial: str | None = None
    null_dim: int | None = None
    symmetry_dim: int | None = None
    dead_units: int | None = None
    saturated_units: int | None = None
    zero_units: int | None = None
    risk: float | None = None
    linear_risk: float | None = None
    linear_risk_lower: float | None = None
    linear_risk_upper: float | None = None
    gap: float | None = None
    path_min_risk: float | None = None
    lambda_min: float | None = None
    lambda_max: float | None = None
    lambda_tol: float | None = None
    grad_norm: float | None = None
    kink_margin: float | None = None
    clarke_stationary: int | None = None
    delta: float | None = None
    G: float | None = None
    gap_bound: float | None = None
    near_identity_bound: float | None = None
    iterations: int | None = None
    seconds: float | None = None
    probe_risks: str | None = None
    parameters: str | None = None
    point: str | None = None

    @classmethod
    def from_run(cls, run: Run | dict) -> "RunSummary":
        """The summary of a stored run (a :class:`Run` or its dict)."""
        row = run.to_dict() if isinstance(run, Run) else run
        c = json.loads(row["config"])
        cert = json.loads(row["certificate"]) if row.get("certificate") else {}
        gb, ni = cert.get("gap_bound") or {}, cert.get("near_identity") or {}
        keep = row.get("verdict") in KEEP_PARAMETERS["verdicts"] or row.get("outcome") in KEEP_PARAMETERS["outcomes"]
        out = {k: row.get(k) for k in SUMMARY_FIELDS}
        out.update({k: c.get(k) for k in ("data", "model", "depth", "width", "activation", "v_scale", "rho", "delta0",
                                         "core_depth", "core_width", "kind")})
        out.update(loss=cert.get("loss", c.get("loss")), delta=_num(ni.get("delta")), G=_num(gb.get("G")),
                   lambda_tol=_num((cert.get("tolerances") or {}).get("lambda_tol")),
                   gap_bound=_num(gb.get("rigorous")), near_identity_bound=_num(ni.get("bound")),
                   parameters=row.get("parameters") if keep else None)
        return cls(**out)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _num(x) -> float | None:
    """A float from a certificate field (JSON writes ±inf and nan as strings)."""
    return None if x is None else float(x)


def _base(cls, name: str) -> type:
    """The Python type of field ``name`` (``int``, ``float`` or ``str``; ``X | None`` read as ``X``)."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


_SQL = {int: "INTEGER", float: "REAL", str: "TEXT"}
_ARROW = {int: "int64", float: "float64", str: "string"}

#: The store's columns, in order.
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Run))
#: The compact export's columns, in order.
SUMMARY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunSummary))
#: ``(column, Arrow type name)`` of the compact export, derived from :class:`RunSummary`.
SUMMARY_SCHEMA: tuple[tuple[str, str], ...] = tuple((f, _ARROW[_base(RunSummary, f)]) for f in SUMMARY_FIELDS)
_COLUMN_TYPES = {f: _SQL[_base(Run, f)] for f in ROW_FIELDS}


def column_type(field: str) -> str:
    """The SQLite type of a :class:`Run` column: ``REAL``, ``INTEGER`` or ``TEXT``."""
    return _COLUMN_TYPES.get(field, "TEXT")


def schema_table() -> str:
    """The compact export's schema as a Markdown table (docs/census.md is checked against it)."""
    lines = ["| column | type |", "| --- | --- |"]
    lines += [f"| `{f}` | {t} |" for f, t in SUMMARY_SCHEMA]
    return "\n".join(lines)
