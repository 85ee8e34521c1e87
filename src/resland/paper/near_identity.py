"""C4 (docs/theory.md §2, §4.3): near the identity, risk bounds and complexity do not grow with depth.

Two measurements on the grunfeld data with tanh ResNets without block biases (tanh is
1-Lipschitz with |σ(z)| ≤ |z|, all the §4.3 proof uses):

1. Census runs (descent and saddle search, :func:`resland.paper.dichotomy.census_runs`) from
   starts with budget ``δ = Σ‖V_l‖₂‖U_l‖₂ = δ₀`` at every depth: at each certified point,
   ``R − R_lin ≤ G`` (Proposition A, rigorous form) and
   ``G ≤ ‖t*‖(e^δ − 1)e^δ δ (1/m)Σ|ℓ'_i|‖x_i‖`` (the a-priori bound at the point's own δ).
   Every depth needs non-trivial evidence (a certified point that is not linear-equivalent, or
   a descent run below linear); linear-equivalent points alone leave the claim inconclusive.
2. The empirical Rademacher complexity of ``{x ↦ wᵀh_L(x) : ‖w‖ ≤ 1, δ ≤ δ₀}``: for random
   signs σ, ``sup (1/m)Σσ_i f(x_i)`` by projected gradient ascent (Adam). Ascent finds a lower
   bound on each supremum; the estimate is their mean over sign draws, with its standard error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data import load_dataset
from ..models import ResNet, block_gain, scale_to_budget
from .._html import png
from .claims import Claim

DELTA0 = 0.5


def _delta(model: ResNet) -> float:
    return sum(block_gain(model, l) for l in range(1, model.depth + 1))


def _project(model: ResNet, delta0: float) -> None:
    with torch.no_grad():
        wn = float(torch.linalg.norm(model.out.weight))
        if wn > 1:
            model.out.weight.div_(wn)
        d = _delta(model)
        if d > delta0:
            for l in range(1, model.depth + 1):
                model.V(l).mul_(delta0 / d)


def rademacher(X: torch.Tensor, depth: int, width: int, delta0: float, draws: int, steps: int, seed: int = 0):
    """Per-draw lower bounds on ``sup_f (1/m) Σ σ_i f(x_i)`` over the near-identity class."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for k in range(draws):
        sigma = torch.randint(0, 2, (X.shape[0],), generator=g).to(torch.float64) * 2 - 1
        torch.manual_seed(1000 * seed + k)
        model = ResNet(X.shape[1], width, depth, "tanh", out_bias=False, block_bias=False)
        scale_to_budget(model, delta0)
        _project(model, delta0)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        best = -math.inf
        for _ in range(steps):
            opt.zero_grad()
            corr = (sigma * model(X)).mean()
            (-corr).backward()
            opt.step()
            _project(model, delta0)
            with torch.no_grad():
                best = max(best, float((sigma * model(X)).mean()))
        values.append(best)
    return values


#: C4's starts: tanh ResNets without branch biases of width 1 on grunfeld (m = 220, d = 3;
#: n = 6L + 4 ≤ 196 < m up to L = 32), every start at δ = δ₀ (``init_model(delta0=...)``).
DATA, WIDTH = "grunfeld", 1


def holds(rec: dict) -> bool:
    """At a certified point: ``R − R_lin ≤ G`` (Proposition A, rigorous form) and ``G ≤`` the
    a-priori bound at the point's own δ (docs/theory.md §4.3), each up to rounding."""
    gap = rec["risk"] - rec["linear_risk"]
    return bool(gap <= rec["gap_bound"] * (1 + 1e-12) + 1e-15 and rec["G"] <= rec["a_priori"] * (1 + 1e-12) + 1e-15)


def run(quick: bool, progress=lambda *_: None, store="census.db") -> Claim:
    from .dichotomy import MAX_ITER, MAX_ITER_QUICK, Plan, per_grid, claims_table, census_runs, nontrivial_evidence, \
        worse_no_negative

    depths = (1, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    draws, steps = (4, 80) if quick else (12, 200)
    start = {"delta0": DELTA0}
    plans = [Plan(DATA, "minimum", range(2), WIDTH, start), Plan(DATA, "any", range(2), WIDTH, start)]
    claim = Claim(
        id="C4", title="Near-identity regions: depth-independent bounds",
        statement=("When the blocks are near the identity, the risk at critical points and the Rademacher "
                   "complexity have upper bounds that do not grow with depth."),
        paper_value=None,
        commands=["resland reproduce --only C4" + (" --quick" if quick else "")],
    )
    recs = census_runs("C4", plans, depths, store, progress, max_iter=MAX_ITER_QUICK if quick else MAX_ITER)
    for r in recs:
        if r.get("verdict") and r.get("gap_bound") is not None:
            r["holds"] = holds(r)
    progress("C4: Rademacher complexity estimates")
    X = torch.as_tensor(load_dataset(DATA).X)
    rad = []
    for depth in depths:
        vals = rademacher(X, depth, WIDTH, DELTA0, draws, steps)
        rad.append({"depth": depth, "mean": float(np.mean(vals)), "se": float(np.std(vals, ddof=1) / math.sqrt(len(vals))),
                    "draws": vals})
    claim.records = recs
    certified = [r for r in recs if "holds" in r]
    bounds_ok = all(r["holds"] for r in certified)
    spread = max(r["mean"] for r in rad) - min(r["mean"] for r in rad)
    se = max(r["se"] for r in rad)
    flat = spread <= max(3 * math.sqrt(2) * se, 0.1 * float(np.mean([r["mean"] for r in rad])))
    evidence = nontrivial_evidence(recs)
    missing = [d for d in depths if not any(r["depth"] == d for r in evidence)]
    claim.measured = {"certified_points": len(certified), "bounds_hold_at_all": bounds_ok,
                      "per_depth": claims_table(recs, "depth"),
                      "rademacher": [{k: r[k] for k in ("depth", "mean", "se")} for r in rad], "rademacher_flat": flat}
    claim.details = {"delta0": DELTA0, "data": DATA, "width": WIDTH, "grids": per_grid(plans),
                     "points": [{k: r.get(k) for k in ("depth", "seed", "kind", "outcome", "verdict", "trivial",
                                                        "risk", "linear_risk", "gap_bound", "G", "delta", "a_priori",
                                                        "applicable", "holds", "command")} for r in recs],
                     "worse_no_negative": worse_no_negative(recs),
                     "flatness_rule": "max − min of the depth means ≤ max(3·√2·SE_max, 10% of their mean)"}
    if not bounds_ok:
        claim.status, claim.reason = "not_reproduced", "a certified point violates R − R_lin ≤ G ≤ a-priori bound"
    elif missing:
        claim.status = "inconclusive"
        claim.reason = (f"no non-trivial evidence (a certified point with trivial = none, or a descent run "
                        f"below linear) at depths {missing}")
    elif not flat:
        claim.status = "not_reproduced" if not quick else "inconclusive"
        claim.reason = f"the Rademacher estimate varies by {spread:.3g} across depths (SE {se:.2g})"
    else:
        below = sum(r["outcome"] == "below_linear" for r in evidence)
        claim.status = "reproduced"
        claim.reason = (f"R − R_lin ≤ G ≤ a-priori bound at all {len(certified)} certified points; non-trivial "
                        f"evidence at every depth ({len(evidence) - below} certified points, {below} descent runs "
                        f"below linear); the Rademacher estimate stays within {spread:.2g} across depths "
                        f"{list(depths)}")
    claim.figures["bounds_and_complexity"] = _plot(certified, rad)
    return claim


def _plot(points, rad) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for key, mark, label in (("gap", "o", "R − R_lin"), ("gap_bound", "s", "G (rigorous)"), ("a_priori", "^", "a-priori bound")):
        xs = [p["depth"] for p in points]
        ys = [max(p["risk"] - p["linear_risk"] if key == "gap" else p[key], 1e-18) for p in points]
        a.scatter(xs, ys, marker=mark, label=label, s=20)
    a.set_xscale("log", base=2)
    a.set_yscale("log")
    a.set_xlabel("depth L")
    a.set_title("Bounds at certified critical points")
    a.legend(fontsize=8)
    b.errorbar([r["depth"] for r in rad], [r["mean"] for r in rad], yerr=[r["se"] for r in rad], fmt="-o", capsize=3)
    b.set_xscale("log", base=2)
    b.set_ylim(bottom=0)
    b.set_xlabel("depth L")
    b.set_title(f"Empirical Rademacher complexity, δ ≤ {DELTA0}")
    return png(fig)
