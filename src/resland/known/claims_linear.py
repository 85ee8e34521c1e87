"""Linear networks as claims: Kawaguchi (2016) ``K16-1``, ``K16-2`` and Hardt & Ma (2017) ``HM17-1``, ``HM17-2``
(problems in :mod:`resland.known.linear_nets`, verdicts by :func:`resland.known.problem.certify_problem`).

* ``K16-1``: every local minimum of a deep linear net (scalar output, squared loss) is global. Descent and saddle
  search from seeded starts on diabetes (centred); reproduced when every certified end point is a global minimum or
  a saddle (strict or degenerate), none is ``spurious_minimum`` or undecided ``degenerate``.
* ``K16-2``: saddles with no negative eigenvalue exist: ``θ = 0`` at depth ``L ≥ 3`` (the Hessian vanishes and the
  lowest descent term has order ``L``), while at depth 2 it is a strict saddle.
* ``HM17-1``: for a linear residual net, every critical point with all ``‖A_l‖₂ < 1`` is a global minimum: descent and
  saddle search from small and large starts on two real sets with vector targets; every certified critical point
  inside the region must be ``global_minimum``, and at least one must lie there.
* ``HM17-2``: the region matters: outside it, critical points that are not global exist (``A_1 = A_2 = −I`` is one,
  by construction: every gradient has a zero factor), each certified a saddle.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from ..paper.claims import Claim
from .linear_nets import DeepLinear, LinearResNet, centred, iris_sepal_to_petal, linnerud
from .problem import certify_problem, find_critical, find_minimum

KAWAGUCHI, HARDT_MA = "kawaguchi-2016", "hardt-ma-2017"
#: Deep linear nets' hidden widths, by depth (quick runs use the first three).
K16_WIDTHS = ((3,), (3, 3), (4, 2, 3), (2, 2, 2, 2), (3, 2, 2, 2, 2))
COUNTEREXAMPLES = ("spurious_minimum", "below_baseline")
K16_DETAILS = {"model": "f(x) = W_L⋯W_1 x, no biases", "widths": [list(w) for w in K16_WIDTHS],
               "baseline": "least squares without intercept (the proved global minimum)",
               "finders": "descent: L-BFGS + Newton; saddle search: Levenberg–Marquardt on ∇R = 0, exact Hessian",
               "verdicts": "resland.known.problem.certify_problem"}
HM17_DETAILS = {"model": "f(x) = (I + A_L)⋯(I + A_1)x", "region": "max_l ‖A_l‖₂ < 1",
                "baseline": "least squares min_M ‖XMᵀ − Y‖²/m (the proved global minimum)",
                "starts": "A entries N(0, 0.01/d) (inside), and 20× that (saddle search, large start)"}


def _diabetes():
    from sklearn.datasets import load_diabetes

    b = load_diabetes()
    return centred(b.data), centred(b.target[:, None])[:, 0]


def _row(problem, how: str, seed: int, theta, cert) -> dict:
    return {**problem.config(), "how": how, "seed": seed, "verdict": cert.verdict, "risk": cert.risk,
            "baseline": cert.baseline["value"], "grad_norm": cert.grad_norm, "lambda_min": cert.lambda_min,
            "descent_order": cert.descent_order, "parameters": [float(v) for v in theta]}


def run_kawaguchi(quick: bool, progress=lambda *_: None, store=None, done=None) -> list[Claim]:
    X, y = _diabetes()
    widths = K16_WIDTHS[:3] if quick else K16_WIDTHS
    seeds = range(4 if quick else 12)
    cmd = f"resland reproduce --paper {KAWAGUCHI}" + (" --quick" if quick else "")
    rows = []
    for w in widths:
        p = DeepLinear(X, y, w, "diabetes")
        progress(f"K16: depth {p.depth}")
        for s in seeds:
            for how, find in (("descent", find_minimum), ("saddle search", find_critical)):
                th = find(p, seed=s)
                rows.append(_row(p, how, s, th, certify_problem(p, th)))
    return [_k16_minima(rows, cmd), _k16_zero(deep_linear_saddles(), cmd)]


def _tally(rows, key="depth") -> list[dict]:
    out = {}
    for r in rows:
        out.setdefault(r[key], Counter())[r["verdict"]] += 1
    return [{key: k, **dict(v)} for k, v in sorted(out.items())]


def _k16_minima(rows, cmd) -> Claim:
    claim = Claim(id="K16-1", paper=KAWAGUCHI, title="Deep linear nets: every local minimum is global",
                  statement="For deep linear networks with the squared loss, every local minimum is a global minimum.",
                  paper_value=None, commands=[cmd], details=K16_DETAILS)
    claim.records = [dict(r, claim="K16-1") for r in rows]
    claim.measured = {"data": "diabetes (442 × 10, centred and scaled, no intercept)", "per_depth": _tally(rows)}
    v = Counter(r["verdict"] for r in rows)
    bad = sum(v[c] for c in COUNTEREXAMPLES)
    if bad:
        claim.status, claim.reason = "not_reproduced", f"{bad} certified point(s) worse than global without descent"
    elif v["degenerate"]:
        claim.status, claim.reason = "inconclusive", f"{v['degenerate']} point(s) the expansion to order 6 did not decide"
    elif v["global_minimum"] == 0:
        claim.status, claim.reason = "inconclusive", "no run reached a global minimum"
    else:
        claim.status = "reproduced"
        claim.reason = (f"{len(rows)} runs: {v['global_minimum']} global minima, {v['saddle']} strict and "
                        f"{v['degenerate_saddle']} degenerate saddles, no spurious minimum "
                        f"({v['not_critical']} runs did not reach a critical point: not evidence)")
    return claim


def _k16_zero(zeros, cmd) -> Claim:
    claim = Claim(id="K16-2", paper=KAWAGUCHI, title="Deep linear nets: saddles without negative curvature",
                  statement="At depth ≥ 3 there are saddle points whose Hessian has no negative eigenvalue (θ = 0); "
                            "at depth 2 every saddle has a negative eigenvalue.",
                  paper_value=None, commands=[cmd], details=K16_DETAILS)
    claim.records = [dict(r, claim="K16-2") for r in zeros]
    claim.measured = {"theta_zero": [{k: r[k] for k in ("depth", "widths", "verdict", "lambda_min", "descent_order")}
                                     for r in zeros]}
    claim.figures = {"descent_order": _plot_zero(zeros)}
    ok = all((r["verdict"] == "saddle") if r["depth"] == 2 else
             (r["verdict"] == "degenerate_saddle" and r["descent_order"] == r["depth"]) for r in zeros)
    if ok:
        claim.status = "reproduced"
        claim.reason = (f"θ = 0: strict saddle at depth 2; at depths {[r['depth'] for r in zeros if r['depth'] > 2]} "
                        "λ_min = 0 and the lowest descent term along a Hessian null direction has order L")
    else:
        claim.status, claim.reason = "not_reproduced", "some depth's θ = 0 verdict differs (see measured)"
    return claim


def run_hardt_ma(quick: bool, progress=lambda *_: None, store=None, done=None) -> list[Claim]:
    depths = (2, 4, 8) if quick else (2, 4, 8, 16)
    seeds = range(3 if quick else 10)
    cmd = f"resland reproduce --paper {HARDT_MA}" + (" --quick" if quick else "")
    rows = []
    for loader in (iris_sepal_to_petal, linnerud):
        X, Y, name = loader()
        for L in depths:
            progress(f"HM17: {name}, depth {L}")
            p = LinearResNet(X, Y, L, name)
            for s in seeds:
                for how, th in (("descent", find_minimum(p, seed=s)),
                                ("saddle search", find_critical(p, seed=s)),
                                ("saddle search, large start", find_critical(p, p.start(s) * 20))):
                    rows.append(dict(_row(p, how, s, th, certify_problem(p, th)), max_block_norm=p.max_block_norm(th)))
            A = torch.zeros(L, p.d, p.d, dtype=torch.float64)
            A[0] = A[1] = -torch.eye(p.d, dtype=torch.float64)
            th = A.reshape(-1)
            rows.append(dict(_row(p, "constructed A_1 = A_2 = −I", 0, th, certify_problem(p, th)),
                             max_block_norm=p.max_block_norm(th)))
    crit = [r for r in rows if r["verdict"] not in ("not_critical", "failed", "nondifferentiable")]
    inside = [r for r in crit if r["max_block_norm"] < 1]
    outside = [r for r in crit if r["max_block_norm"] >= 1]
    measured = {"data": "iris (sepal → petal, 150 × 2) and linnerud (exercise → physiology, 20 × 3), standardised",
                "inside": dict(Counter(r["verdict"] for r in inside)), "outside": dict(Counter(r["verdict"] for r in outside)),
                "not_critical": sum(r["verdict"] == "not_critical" for r in rows)}
    one = Claim(id="HM17-1", paper=HARDT_MA, title="Linear residual nets: critical points near identity are global",
                statement="Every critical point of a linear residual network with all ‖A_l‖₂ < 1 is a global minimum.",
                paper_value=None, commands=[cmd], measured=measured, details=HM17_DETAILS)
    one.records = [dict(r, claim="HM17-1") for r in rows]
    one.figures = {"region": _plot_region(crit)}
    bad = [r for r in inside if r["verdict"] != "global_minimum"]
    if bad:
        one.status, one.reason = "not_reproduced", f"{len(bad)} critical point(s) inside the region are not global"
    elif not inside:
        one.status, one.reason = "inconclusive", "no certified critical point inside the region"
    else:
        one.status = "reproduced"
        one.reason = (f"all {len(inside)} certified critical points with max ‖A_l‖₂ < 1 are global minima (R = the "
                      f"least-squares risk to 1e-9); {len(outside)} more lie outside")
    two = Claim(id="HM17-2", paper=HARDT_MA, title="Linear residual nets: outside the region, saddles",
                statement="Outside the region ‖A_l‖₂ < 1 critical points need not be global (the condition is not "
                          "vacuous); such points are saddles.",
                paper_value=None, commands=[cmd], measured=measured, details=HM17_DETAILS)
    non_global = [r for r in outside if r["verdict"] != "global_minimum"]
    if any(r["verdict"] in COUNTEREXAMPLES + ("degenerate",) for r in outside):
        two.status, two.reason = "inconclusive", "a non-global point outside the region was not shown to be a saddle"
    elif non_global:
        two.status = "reproduced"
        two.reason = (f"{len(non_global)} non-global critical points outside the region, every one a certified saddle "
                      f"({dict(Counter(r['verdict'] for r in non_global))})")
    else:
        two.status, two.reason = "inconclusive", "no non-global critical point found outside the region"
    return [one, two]


def deep_linear_saddles() -> list[dict]:
    """``θ = 0`` of the deep linear nets of :data:`K16_WIDTHS` (depths 2–6) on diabetes, certified: the rows of
    ``K16-2`` and of the fixture ``fixtures/deep_linear_saddles.json``."""
    X, y = _diabetes()
    out = []
    for w in K16_WIDTHS:
        p = DeepLinear(X, y, w, "diabetes")
        th = torch.zeros(p.n, dtype=torch.float64)
        out.append(_row(p, "θ = 0", 0, th, certify_problem(p, th)))
    return out


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _plot_zero(zeros) -> bytes:
    """``R(tu) − R(0)`` against ``|t|`` at ``θ = 0`` along the descent direction of each depth (log-log: slope ``L``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = _diabetes()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ts = np.logspace(-3, -0.5, 30)
    for r in zeros:
        p = DeepLinear(X, y, r["widths"], "diabetes")
        a = X.T @ y
        a = a / np.linalg.norm(a)
        parts = []
        for i, (rows, cols) in enumerate(p.shapes):
            M = np.zeros((rows, cols))
            if i == 0:
                M[0] = a
            else:
                M[0, 0] = 1.0
            parts.append(M.reshape(-1))
        u = torch.as_tensor(np.concatenate(parts))
        R0 = float(p.risk(torch.zeros(p.n, dtype=torch.float64)))
        drop = [R0 - float(p.risk(t * u)) for t in ts]
        ax.loglog(ts, np.maximum(drop, 1e-300), label=f"L = {r['depth']} ({r['verdict']})")
    ax.set_xlabel("t")
    ax.set_ylabel("R(0) − R(t·u)")
    ax.set_ylim(1e-16, 1)
    ax.set_title("Kawaguchi 2016: θ = 0 of deep linear nets, descent of order L")
    ax.legend(fontsize=8)
    return _png(fig)


def _plot_region(rows) -> bytes:
    """``R − R*`` against ``max_l ‖A_l‖₂`` for every certified critical point, by verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for verdict, colour in (("global_minimum", "tab:green"), ("saddle", "tab:red"), ("degenerate_saddle", "tab:orange")):
        pts = [r for r in rows if r["verdict"] == verdict]
        if pts:
            ax.scatter([r["max_block_norm"] for r in pts], [max(r["risk"] - r["baseline"], 1e-16) for r in pts], s=18,
                       color=colour, label=f"{verdict} ({len(pts)})")
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("max_l ‖A_l‖₂ (Hardt & Ma's region: < 1)")
    ax.set_ylabel("R − R* (floored at 1e-16)")
    ax.set_title("Hardt & Ma 2017: certified critical points")
    ax.legend(fontsize=8)
    return _png(fig)


__all__ = ["deep_linear_saddles", "run_hardt_ma", "run_kawaguchi"]

