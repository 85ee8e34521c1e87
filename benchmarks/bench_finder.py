"""resland's finder against what a researcher would use instead, on the same starts.

Starts: the census starts of the open regime (fewer parameters than samples): diabetes
(m = 442), ResNets of width 1–2 and depth 1–2 (n = 32–95), tanh, softplus and relu, seeds
0..2 (``init_model``, V × 1), plus Example 1 (ρ = 1) and Example 2.

Peers (float64, the same risk through ``FlatRisk``):

* ``torch.optim.LBFGS`` (strong Wolfe line search), up to ``--lbfgs-iter`` iterations;
* SciPy ``trust-krylov`` with exact Hessian-vector products, and ``trust-exact`` with exact dense
  Hessians, up to ``--scipy-iter`` iterations;
* for saddles (``--kind any``): L-BFGS on ``½‖∇R‖²`` (gradients by double backward).

A run is *certified* when it ends with ``‖∇R‖ ≤ 1e-10·max(1, |R|)`` and ``certify`` gives a
verdict at a critical point; for ReLU networks resland may instead end on a Clarke-stationary
kink (``kink``). For each tool: the share certified (or kink), the median wall time per run and
per certified point, and resland's outcomes for the rest.

    python benchmarks/bench_finder.py [--kind minimum|any] [--seeds 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from collections import Counter

import numpy as np
import scipy.optimize
import torch

import resland
from resland.certificate import cert_outcome
from resland.critical import find_critical_point
from resland.curvature import HessianOperator
from resland.functional import FlatRisk
from resland.linear import NotAttainedWarning
from resland.models import ResNet, init_model
from resland.tolerances import is_critical


def starts(seeds: int):
    ds = resland.load_dataset("diabetes")
    for act in ("tanh", "softplus", "relu"):
        for width, depth in ((1, 1), (2, 1), (1, 2), (2, 2)):
            for s in range(seeds):
                yield (f"diabetes w{width} L{depth} {act} s{s}", ds,
                       init_model("resnet", 10, width=width, depth=depth, activation=act, seed=s))
    for name, ds in (("example1", resland.load_dataset("example1", rho=1.0)), ("example2", resland.load_dataset("example2"))):
        for s in range(seeds):
            torch.manual_seed(s)
            yield f"{name} relu s{s}", ds, ResNet(1, 1, 1 if name == "example1" else 2, "relu")


def certified(model, ds) -> bool:
    fr = FlatRisk(model, ds.X, ds.y, ds.loss)
    R, g = fr.risk_and_grad(fr.theta0)
    if not is_critical(R, float(torch.linalg.norm(g))):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAttainedWarning)
        return resland.certify(model, ds.X, ds.y, ds.loss).verdict not in ("not_critical", "nondifferentiable")


def run_resland(model, ds, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAttainedWarning)
        cp = find_critical_point(model, ds.X, ds.y, ds.loss, kind=kind)
        cert = resland.certify(cp.model, ds.X, ds.y, ds.loss)
    outcome = cert_outcome(cp, cert)
    return outcome in ("critical", "kink"), outcome


def run_lbfgs(model, ds, kind, iters):
    fr = FlatRisk(model, ds.X, ds.y, ds.loss)
    theta = fr.theta0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=iters, tolerance_grad=1e-14, tolerance_change=0,
                            history_size=30, line_search_fn="strong_wolfe")
    if kind == "minimum":
        objective = fr.risk
    else:
        def objective(t):
            g = torch.autograd.grad(fr.risk(t), t, create_graph=True)[0]
            return 0.5 * (g @ g)

    def closure():
        opt.zero_grad()
        val = objective(theta)
        val.backward()
        return val

    with torch.enable_grad():
        opt.step(closure)
    return fr.model_at(theta.detach())


def run_scipy(model, ds, method, iters):
    fr = FlatRisk(model, ds.X, ds.y, ds.loss)
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731

    def fun(x):
        R, g = fr.risk_and_grad(t(x))
        return (R, g.numpy()) if math.isfinite(R) else (np.inf, np.zeros_like(x))

    kw = {"hessp": lambda x, p: (HessianOperator(fr, t(x)) @ t(p)).numpy()} if method == "trust-krylov" else \
         {"hess": lambda x: HessianOperator(fr, t(x)).dense().numpy()}
    res = scipy.optimize.minimize(fun, fr.theta0.numpy(), jac=True, method=method,
                                  options={"maxiter": iters, "gtol": 1e-12}, **kw)
    return fr.model_at(t(res.x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="minimum", choices=("minimum", "any"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lbfgs-iter", type=int, default=5000)
    ap.add_argument("--scipy-iter", type=int, default=300)
    ap.add_argument("--tools", default="resland,lbfgs,trust-krylov,trust-exact")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tools = args.tools.split(",")
    if args.kind == "any":
        tools = [x for x in tools if x in ("resland", "lbfgs")]
    rows = []
    for label, ds, model in starts(args.seeds):
        for tool in tools:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if tool == "resland":
                        ok, outcome = run_resland(model, ds, args.kind)
                    else:
                        end = (run_lbfgs(model, ds, args.kind, args.lbfgs_iter) if tool == "lbfgs"
                               else run_scipy(model, ds, tool, args.scipy_iter))
                        ok, outcome = certified(end, ds), None
                except Exception as exc:  # a peer that crashes counts as not certified
                    ok, outcome = False, f"error: {type(exc).__name__}"
            sec = time.perf_counter() - t0
            rows.append({"start": label, "tool": tool, "certified": ok, "outcome": outcome, "seconds": sec})
            print(f"{label:34s} {tool:12s} {'certified' if ok else '—':10s} {outcome or '':14s} {sec:7.2f} s", flush=True)
    print("\n| tool | runs | certified (or kink) | median s / run | median s / certified | resland outcomes |")
    print("|---|---|---|---|---|---|")
    for tool in tools:
        sub = [r for r in rows if r["tool"] == tool]
        good = [r["seconds"] for r in sub if r["certified"]]
        outs = Counter(r["outcome"] for r in sub) if tool == "resland" else None
        print(f"| {tool} | {len(sub)} | {len(good)} ({100 * len(good) / len(sub):.0f} %) | "
              f"{statistics.median(r['seconds'] for r in sub):.2f} | "
              f"{statistics.median(good) if good else float('nan'):.2f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(outs.items())) if outs else ''} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"kind": args.kind, "torch": torch.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
