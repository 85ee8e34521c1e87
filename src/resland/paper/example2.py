"""C2, Example 2 of the paper (docs/theory.md §2): representations need not improve block by block.

Data ``x = (1, 2.5, 3)``, ``y = (1, 3, 2)``, ``R_lin = 25/78``. A 2-block ResNet with one ReLU
unit per block reaches ``R = 0``; at some global minima the linear probe of the block-1 output
is worse than that of the raw input, ``R_lin(h_1) > R_lin(h_0)``. Many restarts: the
distribution over the global minima found, not one lucky point. One witness is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from ..certificate import certify
from ..critical import find_critical_point
from ..data import example2 as example2_data
from ..models import ResNet
from ..theory import linear_probes
from .._html import png
from .claims import Claim, close

GLOBAL_TOL = 1e-10  # R ≤ this (mean squared loss) counts as the global minimum R = 0
PROBE_TOL = 1e-9  # R_lin(h_1) must exceed R_lin(h_0) by more than this
INIT_SD = 2.0  # restarts draw every parameter from N(0, INIT_SD²)


def run(quick: bool, progress=lambda *_: None) -> Claim:
    claim = Claim(
        id="C2", title="Example 2: per-block linear probes need not improve",
        statement=("A 2-block, one-unit-per-block ReLU ResNet on x = (1, 2.5, 3), y = (1, 3, 2) reaches R = 0, and at "
                   "some global minima R_lin(h_1) > R_lin(h_0) = 25/78."),
        paper_value={"R_lin(h_0)": 25 / 78, "fraction_of_global_minima_with_worse_h1": "about 6% (docs/theory.md §2)"},
        commands=["resland reproduce --only C2" + (" --quick" if quick else "")],
    )
    ds = example2_data()
    restarts = 400 if quick else 1500
    minima, witness = [], None
    for seed in range(restarts):
        if seed % 25 == 0:
            progress(f"C2: restart {seed}/{restarts}")
        torch.manual_seed(seed)
        model = ResNet(1, 1, 2, "relu")
        with torch.no_grad():  # every parameter ~ N(0, INIT_SD²)
            for p in model.parameters():
                p.copy_(INIT_SD * torch.randn_like(p))
        cp = find_critical_point(model, ds.X, ds.y, max_iter=40)
        rec = {"claim": "C2", "seed": seed, "status": cp.status, "risk": cp.risk, "grad_norm": cp.grad_norm}
        if cp.risk <= GLOBAL_TOL:
            probes = [p.risk for p in linear_probes(cp.model, ds.X, ds.y)]
            rec["probes"] = probes
            worse = probes[1] > probes[0] + PROBE_TOL
            rec["h1_worse_than_h0"] = worse
            minima.append(rec)
            # The witness must certify: a point inside its activation region (a global minimum on a
            # kink is a global minimum too, but has no Hessian for the certificate).
            if worse and witness is None and cp.outcome == "critical":
                witness = {"seed": seed, "config": cp.model.config(),
                           "state_dict": {k: v.tolist() for k, v in cp.model.state_dict().items()},
                           "risk": cp.risk, "probes": probes}
        claim.records.append(rec)
    n_worse = sum(r["h1_worse_than_h0"] for r in minima)
    frac = n_worse / len(minima) if minima else float("nan")
    h0 = minima[0]["probes"][0] if minima else float("nan")
    claim.measured = {"restarts": restarts, "global_minima": len(minima), "with_R_lin(h1) > R_lin(h0)": n_worse,
                      "fraction": frac, "R_lin(h_0)": h0}
    claim.details = {
        "global_tolerance": GLOBAL_TOL, "init": f"every parameter ~ N(0, {INIT_SD}²), torch.manual_seed(restart)", "probe_tolerance": PROBE_TOL,
        "probe_quantiles": _quantiles(minima), "witness": witness,
    }
    if witness is not None:
        model = ResNet(**{k: v for k, v in witness["config"].items() if k != "model"})
        model.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in witness["state_dict"].items()})
        cert = certify(model, ds.X, ds.y)
        claim.details["witness_certificate"] = {"verdict": cert.verdict, "risk": cert.risk,
                                                "linear_risk": cert.linear_risk, "reason": cert.reason}
    if not minima:
        claim.status, claim.reason = "inconclusive", "no restart reached R = 0 to tolerance"
    elif witness is None:
        claim.status = "inconclusive" if quick else "not_reproduced"
        claim.reason = f"none of {len(minima)} global minima had R_lin(h1) > R_lin(h0)"
    elif not close(h0, 25 / 78, 1e-12):
        claim.status, claim.reason = "not_reproduced", f"R_lin(h0) = {h0} ≠ 25/78"
    else:
        claim.status = "reproduced"
        claim.reason = (f"{n_worse} of {len(minima)} global minima ({100 * frac:.1f}%) have R_lin(h1) > R_lin(h0) = 25/78; "
                        "a witness is saved and re-certified")
    claim.figures["probes"] = _plot(minima)
    return claim


def _quantiles(minima) -> dict:
    if not minima:
        return {}
    P = np.array([r["probes"] for r in minima])
    return {f"h{l}": {q: float(np.quantile(P[:, l], float(q))) for q in ("0.0", "0.25", "0.5", "0.75", "1.0")}
            for l in range(P.shape[1])}


def _plot(minima) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for r in minima:
        worse = r["h1_worse_than_h0"]
        ax.plot([0, 1, 2], r["probes"], "-o", ms=3, lw=1.6 if worse else 0.6,
                color="tab:red" if worse else "tab:blue", alpha=0.9 if worse else 0.25)
    ax.axhline(25 / 78, color="k", lw=0.8, ls=":")
    ax.set_xticks([0, 1, 2], ["h₀ = x", "h₁", "h₂"])
    ax.set_ylabel("linear-probe risk R_lin(h_l)")
    ax.set_title(f"Example 2: {len(minima)} global minima (red: R_lin(h₁) > R_lin(h₀))")
    return png(fig)
