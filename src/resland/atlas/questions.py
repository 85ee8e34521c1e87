"""The atlas's questions: each takes the compact rows (dicts) and returns plain data.

Conventions: mean risk, no 1/2; ``R_lin`` is the certified interval ``[lower, upper]``; ``risk_tol``
is :func:`resland.tolerances.risk_tol`. Evidence is decided in one place,
:mod:`resland.census.dichotomy`: only certified critical points with ``trivial = none`` count.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

from ..families import family
from .. import tolerances as T
from ..census.dichotomy import bearing_on_theorem_2, certified, counts, evidence, trivial_of
from ..certificate import WORSE_NO_NEGATIVE
from ..certificate.verdicts import is_local_minimum
from ..points import count_distinct


def _below(r: dict) -> bool:
    """The run got below linear: ``below_linear``, or a critical point or kink below ``R_lin,lower``."""
    if r["outcome"] == "below_linear":
        return True
    return (r["outcome"] in ("critical", "kink") and r["risk"] is not None and r["linear_risk_lower"] is not None
            and r["risk"] < r["linear_risk_lower"] - T.risk_tol(r["linear_risk_lower"]))


def q1_below_linear(rows: list[dict]) -> dict:
    """``(data, depth, model) → (runs, below)`` over the descent runs (kind ``minimum``)."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["kind"] == "minimum":
            c = out[(r["data"], r["depth"], r["model"])]
            c[0] += 1
            c[1] += _below(r)
    return {k: tuple(v) for k, v in sorted(out.items())}


def q2_dichotomy(rows: list[dict]) -> dict:
    """The dichotomy counted (docs/theory.md §8): ``(model, depth) → {verdict → {trivial → count}}``
    over the certified critical points (outcome ``critical``)."""
    return counts(rows)


def q2_theorem2(rows: list[dict]) -> list[dict]:
    """ResNet critical points worse than linear without a negative eigenvalue (any ``trivial``): each
    bears on Theorem 2 directly and is listed with its replay command."""
    return bearing_on_theorem_2(rows)


def not_counted(rows: list[dict]) -> list[dict]:
    """Runs whose final point certifies worse than linear without negative curvature but whose outcome
    is not ``critical`` (the finder saw ``‖θ‖`` grow while R fell): listed, never counted."""
    return [r for r in rows if r["verdict"] in WORSE_NO_NEGATIVE and r["outcome"] != "critical"]


def q3_fc_vs_resnet(rows: list[dict]) -> dict:
    """Example 1 at scale: ``model → {"local minima": certified local minima (better_than_linear with
    λ_min ≥ −lambda_tol, or local_minimum_worse), "worse": local_minimum_worse, "worse_non_trivial":
    of them trivial = none}``. Only ``local_minimum_worse`` is a verified minimum worse than linear:
    positive definite beyond its named symmetries (degenerate points are counted in question 2)."""
    out: dict = defaultdict(lambda: {"local minima": 0, "worse": 0, "worse_non_trivial": 0})
    for r in rows:
        if not certified(r):
            continue
        if is_local_minimum(r["verdict"], r["lambda_min"], r["lambda_tol"], r.get("null_dim")):
            c = out[r["model"]]
            c["local minima"] += 1
            if r["verdict"] == "local_minimum_worse":
                c["worse"] += 1
                c["worse_non_trivial"] += trivial_of(r) == "none"
    return dict(sorted(out.items()))


def q3_examples(rows: list[dict]) -> list[dict]:
    """The non-trivial ``local_minimum_worse`` points (Example 1's kind), any model."""
    return [r for r in rows if certified(r) and r["verdict"] == "local_minimum_worse" and trivial_of(r) == "none"]


def q4_near_identity(rows: list[dict]) -> list[dict]:
    """ResNet certified critical points with ``δ``: depth, δ, ``R − R_lin``, G and the a-priori bound."""
    return [{"data": r["data"], "depth": r["depth"], "delta": r["delta"], "gap": r["gap"], "G": r["G"],
             "bound": r["near_identity_bound"], "trivial": trivial_of(r) != "none"}
            for r in rows if family(r["model"]).residual and r["outcome"] == "critical" and r["delta"] is not None
            and r["gap"] is not None and math.isfinite(r["delta"])]


def rademacher_by_depth(depths, *, data: str = "diabetes", width: int = 2, draws: int = 6,
                        steps: int = 100) -> list[dict]:
    """The empirical Rademacher estimate of the near-identity class (C4's, δ ≤ δ₀) against depth.

    Per depth: the mean and standard error over ``draws`` sign vectors of a lower bound on
    ``sup_f (1/m) Σ σ_i f(x_i)`` (Adam, ``steps`` steps; :func:`resland.paper.near_identity.rademacher`).
    """
    import numpy as np
    import torch

    from ..data import load_dataset
    from ..paper.near_identity import DELTA0, rademacher

    X = torch.as_tensor(load_dataset(data).X)
    out = []
    for depth in sorted(set(depths)):
        vals = rademacher(X, depth, width, DELTA0, draws, steps)
        out.append({"depth": depth, "mean": float(np.mean(vals)),
                    "se": float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else math.nan})
    return out


def probes_monotone(probe_risks: list) -> bool:
    """``R_lin(h_l)`` never rises past its tolerance along depth (intervals ``[lower, upper]``)."""
    return all(b[0] <= a[1] + T.risk_tol(a[1]) for a, b in zip(probe_risks, probe_risks[1:]))


def q5_probes(rows: list[dict]) -> dict:
    """``(data, depth) → (certified ResNet minima with probes, of them not monotone)``."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["probe_risks"]:
            c = out[(r["data"], r["depth"])]
            c[0] += 1
            c[1] += not probes_monotone(json.loads(r["probe_risks"]))
    return {k: tuple(v) for k, v in sorted(out.items())}


def q6_unresolved(rows: list[dict]) -> list[dict]:
    """The unresolved runs (their parameters are in the export)."""
    return [r for r in rows if r["outcome"] == "unresolved"]


def core_of(r: dict) -> str:
    """``"full width"``, or the core ``"L₀×k₀"`` whose critical point the run's net carries by zero units
    (docs/theory.md §11)."""
    if r.get("core_depth") is None or (r["core_depth"], r["core_width"]) == (r["depth"], r["width"]):
        return "full width"
    return f"{r['core_depth']}×{r['core_width']}"


def q7_deep(rows: list[dict], depth_min: int = 8) -> dict:
    """The non-trivial certified ResNet critical points at depth ``≥ depth_min``: the rows, and their counts by
    depth, by data set, by verdict and by core (:func:`core_of`); ``distinct`` counts different points of the
    cores (data set, core and risk to 12 significant digits: one core point embedded at several depths and
    widths, or reached from several seeds, counts once)."""
    pts = [r for r in rows if evidence(r) and family(r["model"]).residual and r["depth"] >= depth_min]
    return {"points": pts, "by_depth": dict(sorted(Counter(r["depth"] for r in pts).items())),
            "by_data": dict(sorted(Counter(r["data"] for r in pts).items())),
            "by_verdict": dict(sorted(Counter(r["verdict"] for r in pts).items())),
            "by_core": dict(sorted(Counter(core_of(r) for r in pts).items())),
            "distinct": len({(r["data"], core_of(r), f"{r['risk']:.12g}") for r in pts})}


def headline(rows: list[dict]) -> dict:
    """Runs, data sets, outcomes, certified critical points (all, and ``trivial = none``), the trivial
    ones by kind, the unresolved share."""
    outcomes: dict = defaultdict(int)
    for r in rows:
        outcomes[r["outcome"] or "failed"] += 1
    n = len(rows)
    trivial = Counter(trivial_of(r) for r in rows if certified(r))
    evidence = [r for r in rows if certified(r) and trivial_of(r) == "none"]
    with_point = [r for r in evidence if r.get("point")]
    return {"runs": n, "data_sets": sorted({r["data"] for r in rows}), "outcomes": dict(sorted(outcomes.items())),
            "certified": sum(trivial.values()), "certified_non_trivial": trivial.get("none", 0),
            # distinct points (docs/theory.md §9) where the rows carry the `point` id; None for older exports
            "distinct_non_trivial": count_distinct(with_point) if with_point else None,
            "distinct_full_width": count_distinct([r for r in with_point if not r.get("zero_units")])
            if with_point else None,
            "trivial": {k: v for k, v in sorted(trivial.items()) if k != "none"},
            "unresolved_share": outcomes.get("unresolved", 0) / n if n else 0.0}


def stratum(r: dict) -> tuple[str, str, str]:
    """The cost stratum of a run or config: activation class (``relu`` or ``smooth``), kind, depth band."""
    return ("relu" if r["activation"] == "relu" else "smooth", r["kind"], "1–4" if r["depth"] <= 4 else "8–32")


def cost(rows: list[dict], workers: int = 2) -> dict:
    """What the atlas cost, per stratum ``(activation class, kind, depth band)``: ``(runs, core-seconds)``.

    A row's ``seconds`` is its task's wall time on one worker divided by the task's seeds, so
    core-seconds add up; ``"total"`` adds the wall time ``core-seconds / workers`` (the time on
    ``workers`` fully busy workers) and the runs per hour it implies.
    """
    out: dict = defaultdict(lambda: [0, 0.0])
    for r in rows:
        key = stratum(r)
        out[key][0] += 1
        out[key][1] += r["seconds"] or 0.0
    strata = {k: (v[0], v[1]) for k, v in sorted(out.items())}
    n, sec = sum(v[0] for v in strata.values()), sum(v[1] for v in strata.values())
    wall = sec / workers
    return {"strata": strata, "total": {"runs": n, "core_seconds": sec, "workers": workers, "wall_minutes": wall / 60,
                                        "runs_per_hour": n / wall * 3600 if wall else 0.0}}


