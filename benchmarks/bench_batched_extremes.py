"""Batched λ_min / λ_max for an ensemble against one call per model.

64 seeded ResNets (d = 10, L and width from --configs) at their initialisation on the diabetes
data (m = 442), softplus; both extremes to tol 1e-8 (the certificate's default), honest
residuals included. A/B in one process, median of --repeats:

* ``HessianOperator(ens, Θ).extremes(method="lanczos")`` on all members at once;
* ``HessianOperator(fr, θ).extremes(method="lanczos")`` once per member (each with its own graph).

Throughput ratio = sequential time / batched time. Run:
.venv/bin/python benchmarks/bench_batched_extremes.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--members", type=int, default=64)
    ap.add_argument("--configs", default="1:1,4:1,4:4,4:16", help="depth:width pairs")
    ap.add_argument("--chunk-sizes", default="64,16", help="HessianOperator.extremes chunk_size values to time")
    ap.add_argument("--out", default="benchmarks/results/batched_extremes.json")
    args = ap.parse_args()
    ds = resland.load_dataset("diabetes")
    rows = []
    for depth, width in (map(int, c.split(":")) for c in args.configs.split(",")):
        models = [init_model("resnet", 10, width=width, depth=depth, seed=s) for s in range(args.members)]
        ens = Ensemble(models, ds.X, ds.y)
        frs = [FlatRisk(m, ds.X, ds.y) for m in models]
        seeds = list(range(args.members))

        def sequential():
            return [HessianOperator(fr, fr.theta0).extremes(method="lanczos", seed=s) for fr, s in zip(frs, seeds)]

        ref = sequential()
        t_seq = median_time(sequential, args.repeats)
        row = {"depth": depth, "width": width, "n": ens.n, "sequential_s": t_seq,
               "matvecs_median": statistics.median(r.matvecs for r in ref), "batched": {}}
        for chunk in map(int, args.chunk_sizes.split(",")):
            run = lambda: HessianOperator(ens, ens.theta).extremes(seed=seeds, method="lanczos", chunk_size=chunk)  # noqa: E731
            out = run()
            diff = max(abs(a.lambda_min - b.lambda_min) for a, b in zip(out, ref))
            t_b = median_time(run, args.repeats)
            row["batched"][chunk] = {"seconds": t_b, "ratio": t_seq / t_b, "max_dlambda_min_vs_sequential": diff}
            print(f"n={ens.n:5d} members={args.members} sequential {t_seq:7.3f} s  batched(chunk {chunk:3d}) "
                  f"{t_b:7.3f} s  ratio {t_seq / t_b:5.2f}  |Δλ_min| {diff:.1e}", flush=True)
        rows.append(row)
    res = {"machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
           "date": time.strftime("%Y-%m-%d"), "members": args.members, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
