"""Full-width deep nets (issue 34): where does each finder end, and what is certified there?

For every (data, rows, model, depth, width, activation, seed) cell the same seeded start is given to

* the stepping finder, ``kind="minimum"`` (``method="steps"``, the census default budget ``max_iter``), and
* the continuation finder (``method="continuation"``: the Tikhonov path, docs/theory.md §12), with a wall-clock
  limit per run,

in one process, one torch thread. Every end point is certified (``resland.certify``) and measured for full width
(``symmetry.inactive_units``: a unit whose contribution is at most 1e-6 is inactive) and given its distinct-point
id (``points.point_id``). The table counts outcomes, certified non-trivial full-width points and distinct ids.

    .venv/bin/python benchmarks/bench_fullwidth.py --out results/fullwidth.json [--shard 0/2] [--limit 150]

Figures go into docs/performance.md ("Full-width deep nets") with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import resland
from resland.data import subsample
from resland.homotopy import find_by_continuation
from resland.ensemble import Ensemble
from resland.linear import linear_fit_for
from resland.models import init_model
from resland.points import family_key, point_id
from resland.symmetry import inactive_units

#: (data, rows, model, depth, width, activation): full-width nets, n < m (the open regime).
CELLS = [
    ("grunfeld", None, "resnet", 8, 1, "tanh"),
    ("grunfeld", None, "resnet", 8, 2, "tanh"),
    ("engel", None, "resnet", 8, 2, "tanh"),
    ("engel", None, "resnet", 16, 2, "tanh"),
    ("engel", None, "resnet", 32, 1, "tanh"),
    ("diamonds", 2000, "resnet", 8, 1, "tanh"),
    ("cps1988", 2000, "resnet", 8, 1, "tanh"),
    ("movies", 2000, "resnet", 8, 1, "tanh"),
    ("flights", 2000, "resnet", 8, 1, "tanh"),
    ("diamonds", 2000, "resnet", 8, 1, "softplus"),
    ("grunfeld", None, "fc", 8, 2, "tanh"),
    ("engel", None, "fc", 8, 2, "tanh"),
]


def run_cell(cell, seed: int, limit: float, steps_iter: int) -> list[dict]:
    data, rows, model, depth, width, act = cell
    ds = resland.load_dataset(data)
    if rows:
        ds = subsample(ds, rows)
    net = init_model(model, ds.X.shape[1], width=width, depth=depth, activation=act, seed=seed)
    ens = Ensemble([net], ds.X, ds.y, ds.loss)
    fit = linear_fit_for(ens.fr.model, ens.fr.X, ens.fr.y, ens.fr.loss)
    out = []
    for method in ("steps", "continuation"):
        start = time.perf_counter()
        if method == "steps":
            cp = resland.find_critical_point(net, ds.X, ds.y, ds.loss, max_iter=steps_iter, fit=fit)
        else:
            cp = find_by_continuation(ens, 0, fit, kind="minimum", tol=1e-10, max_steps=2000, max_norm=1e6,
                                      time_limit=limit)
        seconds = time.perf_counter() - start
        cert = resland.certify(cp.model, ds.X, ds.y, ds.loss, fit=fit)
        units = inactive_units(cp.model, ds.X)
        critical = cp.outcome == "critical" and cert.verdict not in ("not_critical", "nondifferentiable")
        with torch.no_grad():
            pred = cp.model(torch.as_tensor(ds.X)).numpy()
        config = dict(net.config(), loss=ds.loss)
        out.append({"data": data, "rows": len(ds.y), "model": model, "depth": depth, "width": width,
                    "activation": act, "seed": seed, "n": ens.n, "method": method, "outcome": cp.outcome,
                    "verdict": cert.verdict, "trivial": cert.trivial, "risk": cert.risk, "linear_risk": fit.risk,
                    "grad_norm": cert.grad_norm, "lambda_min": cert.lambda_min, "param_norm": cp.param_norm,
                    "inactive_units": units["inactive"] if units else None,
                    "min_activity": units["min_activity"] if units else None,
                    "point": point_id(family_key(config), cert.data_sha256, cert.risk, pred) if critical else None,
                    "path": cp.path, "seconds": seconds})
        print(json.dumps({k: out[-1][k] for k in ("data", "depth", "width", "activation", "model", "seed", "method",
                                                   "outcome", "verdict", "trivial", "inactive_units", "risk",
                                                   "linear_risk", "seconds")}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/fullwidth.json")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--limit", type=float, default=150.0, help="seconds per continuation run")
    ap.add_argument("--steps-iter", type=int, default=200)
    ap.add_argument("--shard", default="0/1", help="i/k: run every k-th cell starting at i (two processes, 2 cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    i, k = (int(x) for x in args.shard.split("/"))
    jobs = [(c, s) for c in CELLS for s in range(args.seeds)][i::k]
    rows = []
    for cell, seed in jobs:
        rows += run_cell(cell, seed, args.limit, args.steps_iter)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                                              "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
