"""The record of one reproduced claim and the helpers every claim module shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._json import jsonable

STATUSES = ("reproduced", "not_reproduced", "inconclusive")
#: The paper resland is about (claims C1–C5); the neighbouring papers' ids are in resland.known.papers.
MAIN_PAPER = "yun-sra-jadbabaie-2019"


@dataclass
class Claim:
    """One claim of the paper (docs/theory.md §2) with what was measured.

    Attributes:
        id: ``C1`` … ``C5`` (the paper's own), or a neighbouring paper's namespaced id (``SS18-1``, ``K16-2``, …);
            title: a few words.
        statement: the claim as the paper makes it.
        paper_value: the paper's number(s), or None.
        measured: what resland computed (JSON-ready).
        status: ``reproduced``, ``not_reproduced`` or ``inconclusive``; reason: one line why.
        details: evidence tables and parameters (JSON-ready).
        figures: ``{name: PNG bytes}``, written next to the report and embedded in it.
        commands: shell commands that recompute the claim's rows.
        records: raw per-run records (written to ``records.jsonl``).
        paper: the paper the claim belongs to (:data:`MAIN_PAPER`, or an id of ``resland.known.papers.PAPERS``).
    """

    id: str
    title: str
    statement: str
    paper_value: object
    measured: object = None
    status: str = "inconclusive"
    reason: str = ""
    details: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict, repr=False)
    commands: list = field(default_factory=list)
    records: list = field(default_factory=list, repr=False)
    paper: str = MAIN_PAPER

    def to_dict(self) -> dict:
        """The ``claims.json`` entry (figures and raw records are written separately)."""
        return jsonable({
            "id": self.id, "paper": self.paper, "title": self.title, "statement": self.statement, "paper_value": self.paper_value,
            "measured": self.measured, "status": self.status, "reason": self.reason, "details": self.details,
            "figures": sorted(f"{self.id}_{name}.png" for name in self.figures), "commands": self.commands,
        })


def close(a: float, b: float, rtol: float) -> bool:
    """``|a − b| ≤ rtol · max(|a|, |b|)`` (relative agreement used for closed forms)."""
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def audit_fields(cert: dict, data: str, parameters: list | None = None) -> dict:
    """What an independent re-check of a verdict needs (tests/test_audit.py): data set, model,
    flat parameters, the escape step of a strict or degenerate saddle, and the number of exact
    symmetry directions the certificate projected out (docs/theory.md §8).

    ``cert`` is a certificate as JSON (``Certificate.to_dict()`` or a census row's ``certificate``);
    ``parameters`` are the flat parameters where the certificate does not keep them (census rows).
    """
    return {"data": data, "loss": cert["loss"], "model_config": cert["model_config"],
            "parameters": cert.get("parameters") if parameters is None else parameters,
            "escape_direction": cert.get("escape_direction"), "escape_step": cert.get("escape_step"),
            "grad_tol": cert["tolerances"].get("grad_tol"),
            "symmetry_dim": ((cert.get("higher_order") or {}).get("symmetries") or {}).get("count", 0)}
