"""C4 (docs/theory.md §2, §4.3): near the identity, risk bounds and complexity do not grow with depth.

Two measurements on the diabetes data with tanh ResNets without block biases (tanh is
1-Lipschitz with |σ(z)| ≤ |z|, all the §4.3 proof uses):

1. Critical points reached from starts with budget ``δ = Σ‖V_l‖₂‖U_l‖₂ = δ₀`` at every depth:
   at each certified point, ``R − R_lin ≤ G`` (Proposition A, rigorous form) and
   ``G ≤ ‖t*‖(e^δ − 1)e^δ δ (1/m)Σ|ℓ'_i|‖x_i‖`` (the a-priori bound at the point's own δ).
2. The empirical Rademacher complexity of ``{x ↦ wᵀh_L(x) : ‖w‖ ≤ 1, δ ≤ δ₀}``: for random
   signs σ, ``sup (1/m)Σσ_i f(x_i)`` by projected gradient ascent (Adam). Ascent finds a lower
   bound on each supremum; the estimate is their mean over sign draws, with its standard error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..certificate import certify
from ..critical import find_critical_point
from ..data import load_dataset
from ..linear import NotAttainedWarning
from ..models import ResNet
from .._html import png
from .claims import Claim, audit_fields

DELTA0 = 0.5


@torch.no_grad()
def _gain(model: ResNet, l: int) -> float:
    """``‖V_l‖₂ ‖U_l‖₂``, block l's share of δ."""
    return float(torch.linalg.matrix_norm(model.V(l), ord=2) * torch.linalg.matrix_norm(model.U(l), ord=2))


def _delta(model: ResNet) -> float:
    return sum(_gain(model, l) for l in range(1, model.depth + 1))


def _set_budget(model: ResNet, delta0: float) -> None:
    """Scale every V_l so that ‖V_l‖‖U_l‖ = δ₀ / L."""
    with torch.no_grad():
        for l in range(1, model.depth + 1):
            model.V(l).mul_(delta0 / model.depth / _gain(model, l))


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
        _set_budget(model, delta0)
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


def run(quick: bool, progress=lambda *_: None) -> Claim:
    depths = (1, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    seeds = range(2)
    draws, steps = (4, 80) if quick else (12, 200)
    claim = Claim(
        id="C4", title="Near-identity regions: depth-independent bounds",
        statement=("When the blocks are near the identity, the risk at critical points and the Rademacher "
                   "complexity have upper bounds that do not grow with depth."),
        paper_value=None,
        commands=["resland reproduce --only C4" + (" --quick" if quick else "")],
    )
    ds = load_dataset("diabetes")
    X = torch.as_tensor(ds.X)
    points = []
    for depth in depths:
        for seed in seeds:
            progress(f"C4: critical points, depth {depth} seed {seed}")
            torch.manual_seed(seed)
            model = ResNet(X.shape[1], 2, depth, "tanh", block_bias=False)
            _set_budget(model, DELTA0)
            cp = find_critical_point(model, ds.X, ds.y, kind="any", max_iter=60 if quick else 40, seed=seed)
            rec = {"claim": "C4", "depth": depth, "seed": seed, "status": cp.status, "risk": cp.risk}
            if cp.converged:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotAttainedWarning)
                    cert = certify(cp.model, ds.X, ds.y, keep_parameters=True)  # fills Prop. A's and §4.3's bounds
                rec["audit"] = audit_fields(cert.to_dict(), "diabetes")
                gb, ni = cert.gap_bound, cert.near_identity
                rec.update(verdict=cert.verdict, gap=cert.risk - cert.linear_risk, G=gb["G"], G_rigorous=gb["rigorous"],
                           delta=ni["delta"], a_priori=ni["bound"], applicable=ni["applicable"],
                           holds=bool(cert.risk - cert.linear_risk <= gb["rigorous"] * (1 + 1e-12) + 1e-15
                                      and gb["G"] <= ni["bound"] * (1 + 1e-12) + 1e-15))
            points.append(rec)
    progress("C4: Rademacher complexity estimates")
    rad = []
    for depth in depths:
        vals = rademacher(X, depth, 2, DELTA0, draws, steps)
        rad.append({"depth": depth, "mean": float(np.mean(vals)), "se": float(np.std(vals, ddof=1) / math.sqrt(len(vals))),
                    "draws": vals})
    claim.records = points
    certified = [p for p in points if "holds" in p]
    bounds_ok = all(p["holds"] for p in certified)
    spread = max(r["mean"] for r in rad) - min(r["mean"] for r in rad)
    se = max(r["se"] for r in rad)
    flat = spread <= max(3 * math.sqrt(2) * se, 0.1 * float(np.mean([r["mean"] for r in rad])))
    depths_certified = {p["depth"] for p in certified}
    claim.measured = {"certified_points": len(certified), "bounds_hold_at_all": bounds_ok,
                      "rademacher": [{k: r[k] for k in ("depth", "mean", "se")} for r in rad], "rademacher_flat": flat}
    claim.details = {"delta0": DELTA0, "points": points, "flatness_rule":
                     "max − min of the depth means ≤ max(3·√2·SE_max, 10% of their mean)"}
    if not bounds_ok:
        claim.status, claim.reason = "not_reproduced", "a certified point violates R − R_lin ≤ G ≤ a-priori bound"
    elif set(depths) - depths_certified:
        claim.status = "inconclusive"
        claim.reason = f"no certified critical point at depths {sorted(set(depths) - depths_certified)}"
    elif not flat:
        claim.status = "not_reproduced" if not quick else "inconclusive"
        claim.reason = f"the Rademacher estimate varies by {spread:.3g} across depths (SE {se:.2g})"
    else:
        claim.status = "reproduced"
        claim.reason = (f"R − R_lin ≤ G ≤ a-priori bound at all {len(certified)} certified points; the Rademacher "
                        f"estimate stays within {spread:.2g} across depths {list(depths)}")
    claim.figures["bounds_and_complexity"] = _plot(certified, rad)
    return claim


def _plot(points, rad) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for key, mark, label in (("gap", "o", "R − R_lin"), ("G_rigorous", "s", "G (rigorous)"), ("a_priori", "^", "a-priori bound")):
        xs = [p["depth"] for p in points]
        ys = [max(p[key], 1e-18) for p in points]
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
