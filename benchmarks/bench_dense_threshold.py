"""Where the dense Hessian + ``eigh`` stops paying: dense against Lanczos for λ_min and λ_max.

ResNets d = 10, L = 1 and 4, widths 1..24 (n = 32..2027) at their seeded initialisation on the
diabetes data (m = 442), softplus. For each n, median of --repeats runs, one process:

* single model: ``HessianOperator(fr, θ).extremes`` dense against Lanczos
  (tol 1e-8, the certificate's default; both with their honest residual checks);
* ensemble of --members models: ``HessianOperator(ens, Θ).extremes`` dense against Lanczos.

The crossover sets ``tolerances.DENSE_EIG_MAX`` and ``tolerances.BATCHED_DENSE_MAX``
(docs/performance.md). Run: .venv/bin/python benchmarks/bench_dense_threshold.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import resland
from _timing import median_time
from resland.curvature import HessianOperator
from resland.ensemble import Ensemble
from resland.functional import FlatRisk
from resland.models import init_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--configs", default="1:1,1:2,4:1,4:2,4:4,4:6,4:8,4:12,4:16,4:24",
                    help="depth:width pairs (n = depth·(21·width) + 11)")
    ap.add_argument("--out", default="benchmarks/results/dense_threshold.json")
    args = ap.parse_args()
    ds = resland.load_dataset("diabetes")
    rows = []
    print(f"{'n':>6} {'dense s':>9} {'lanczos s':>9} {'ratio':>6}   {'batched dense':>13} {'batched lanczos':>15} {'ratio':>6}")
    for depth, width in (map(int, c.split(":")) for c in args.configs.split(",")):
        models = [init_model("resnet", 10, width=width, depth=depth, seed=s) for s in range(args.members)]
        fr = FlatRisk(models[0], ds.X, ds.y)
        H = lambda: HessianOperator(fr, fr.theta0)  # noqa: E731  (a fresh graph per timing)
        d, lz = H().extremes(method="dense"), H().extremes(method="lanczos")
        t_d = median_time(lambda: H().extremes(method="dense"), args.repeats, warmup=True)
        t_l = median_time(lambda: H().extremes(method="lanczos"), args.repeats, warmup=True)
        ens = Ensemble(models, ds.X, ds.y)
        seeds = list(range(args.members))
        Hs = lambda: HessianOperator(ens, ens.theta)  # noqa: E731
        t_bd = median_time(lambda: Hs().extremes(seed=seeds, method="dense"), max(1, args.repeats // 2), warmup=True)
        t_bl = median_time(lambda: Hs().extremes(seed=seeds, method="lanczos"), max(1, args.repeats // 2), warmup=True)
        row = {"depth": depth, "width": width, "n": fr.n, "dense_s": t_d, "lanczos_s": t_l, "lanczos_matvecs": lz.matvecs,
               "dlambda_min": abs(d.lambda_min - lz.lambda_min), "batched_dense_s": t_bd, "batched_lanczos_s": t_bl}
        rows.append(row)
        print(f"{fr.n:6d} {t_d:9.4f} {t_l:9.4f} {t_d / t_l:6.2f}   {t_bd:13.4f} {t_bl:15.4f} {t_bd / t_bl:6.2f}", flush=True)
    res = {"machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
           "date": time.strftime("%Y-%m-%d"), "members": args.members, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
