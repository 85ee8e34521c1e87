"""The Clarke test's least-norm point: Wolfe's algorithm (resland) against SciPy SLSQP.

The kink polish asks, at every round, for the least-norm point of ``g0 + Σ_groups conv{0,
columns of the group}`` (the adjacent pieces' gradient hull, grouped by sample). Random
instances of the sizes the polish meets (n = 3–60 parameters, 1–30 groups of 1–7 columns,
some with dependent columns, half with 0 in the hull), solved by both; reported: total time,
the largest optimality gap of resland's point (``‖x‖² − min over the polytope of xᵀv``, an upper
bound on ``‖x − x*‖²``) and how often SLSQP's point is shorter.

    python benchmarks/bench_kink_hull.py [--instances 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize
import torch

from resland.kinks import _least_norm_in_hull


def instance(rng):
    n, ng = int(rng.integers(3, 60)), int(rng.integers(1, 30))
    groups, c = [], 0
    for _ in range(ng):
        k = int(rng.choice([1, 1, 1, 2, 3, 7]))
        groups.append(list(range(c, c + k)))
        c += k
    D = rng.normal(size=(n, c)) * rng.choice([1e-3, 1.0, 10.0])
    if rng.random() < 0.3:
        D[:, -1] = 0.5 * D[:, 0]
    if rng.random() < 0.5:   # 0 in the hull
        g0 = -D @ np.concatenate([rng.dirichlet(np.ones(len(g) + 1))[:-1] for g in groups])
    else:
        g0 = rng.normal(size=n)
    return g0, D, groups


def slsqp(g0, D, groups):
    cons = [{"type": "ineq", "fun": (lambda x, g=g: 1.0 - x[g].sum())} for g in groups]
    res = scipy.optimize.minimize(lambda x: 0.5 * np.sum((D @ x + g0) ** 2), np.zeros(D.shape[1]),
                                  jac=lambda x: D.T @ (D @ x + g0), bounds=[(0, 1)] * D.shape[1], constraints=cons,
                                  method="SLSQP", options={"ftol": 1e-30, "maxiter": 500})
    return g0 + D @ res.x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t_w = t_s = 0.0
    worst_gap, shorter = 0.0, 0
    for _ in range(args.instances):
        g0, D, groups = instance(rng)
        t0 = time.perf_counter()
        _, r = _least_norm_in_hull(torch.as_tensor(g0), [torch.as_tensor(c) for c in D.T], groups)
        t_w += time.perf_counter() - t0
        x = r.numpy()
        gap = x @ x - (x @ g0 + sum(min(0.0, float((D[:, g].T @ x).min())) for g in groups))
        worst_gap = max(worst_gap, gap / max(1.0, float(np.abs(D).max()) ** 2))
        t0 = time.perf_counter()
        xs = slsqp(g0, D, groups)
        t_s += time.perf_counter() - t0
        shorter += np.linalg.norm(xs) < np.linalg.norm(x) * (1 - 1e-9) - 1e-13
    print(f"{args.instances} instances: Wolfe {t_w:.2f} s, SLSQP {t_s:.2f} s (ratio {t_s / t_w:.0f}x); "
          f"largest relative optimality gap {worst_gap:.2e}; SLSQP shorter by more than 1e-13 in {shorter}")


if __name__ == "__main__":
    main()
