"""The dense Hessian and the prediction Jacobian: closed form (resland.closed_form) against autodiff.

For atlas configurations at n ≤ 200 (PyTorch default starts, seeds 0..K−1), one torch thread:

* Hessian: ``HessianOperator(ens, Θ).dense(method=...)`` for a stack of ``K`` members (what the
  batched finder asks each iteration) and for one member (the sequential finder), ``closed_form``
  against ``autodiff`` (forward-over-reverse products against unit vectors under ``vmap``);
* Jacobian: ``ChainDerivatives.jacobian`` against per-sample ``jacrev`` under ``vmap``.

Medians of ``--repeats`` timings after one warm-up; the largest difference between the two
Hessians is reported relative to the largest entry.

Run: .venv/bin/python benchmarks/bench_closed_form.py [--members 16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.func import jacrev

from resland.curvature import HessianOperator
from resland.data import load_dataset
from resland.ensemble import Ensemble
from resland.models import init_model

CONFIGS = [  # (data, model, depth, width, activation)
    ("engel", "resnet", 4, 2, "tanh"),
    ("engel", "fc", 4, 2, "tanh"),
    ("iris", "resnet", 2, 2, "softplus"),
    ("diabetes", "resnet", 1, 2, "tanh"),
    ("engel", "resnet", 16, 2, "tanh"),
    ("grunfeld", "fc", 8, 4, "softplus"),
    ("star98", "resnet", 2, 2, "tanh"),
]


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/closed_form.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for data, model, depth, width, act in CONFIGS:
        ds = load_dataset(data)
        models = [init_model(model, ds.X.shape[1], width=width, depth=depth, activation=act, seed=s)
                  for s in range(args.members)]
        ens = Ensemble(models, ds.X, ds.y, ds.loss)
        theta, fr = ens.theta, ens.fr
        row = {"data": data, "model": model, "depth": depth, "width": width, "activation": act, "n": ens.n, "m": ens.m}
        for label, rows_ in (("stack", theta), ("one", theta[:1])):
            op = HessianOperator(ens, rows_)
            for method in ("closed_form", "autodiff"):
                row[f"hessian_{label}_{method}"] = median_seconds(lambda: op.dense(method=method), args.repeats)
            row[f"hessian_{label}_speedup"] = row[f"hessian_{label}_autodiff"] / row[f"hessian_{label}_closed_form"]
        H_cf, H_ad = HessianOperator(ens, theta).dense(method="closed_form"), HessianOperator(ens, theta).dense(method="autodiff")
        row["hessian_rel_diff"] = float((H_cf - H_ad).abs().max() / H_ad.abs().max())
        per_sample = torch.vmap(jacrev(lambda t, x: fr.predict(t, x[None])[0]), in_dims=(None, 0))
        row["jacobian_stack_closed_form"] = median_seconds(lambda: fr.chain_derivatives.jacobian(theta), args.repeats)
        row["jacobian_stack_autodiff"] = median_seconds(lambda: torch.vmap(lambda t: per_sample(t, fr.X))(theta),
                                                        args.repeats)
        rows.append(row)
        print(f"{data:9s} {model:6s} L={depth:<2d} k={width} {act:8s} n={ens.n:4d} m={ens.m:4d}  Hessian ×{args.members}: "
              f"closed {1e3 * row['hessian_stack_closed_form']:8.1f} ms, autodiff {1e3 * row['hessian_stack_autodiff']:8.1f} ms "
              f"({row['hessian_stack_speedup']:5.1f}x); one: {row['hessian_one_speedup']:5.1f}x; Jacobian ×{args.members}: "
              f"{1e3 * row['jacobian_stack_closed_form']:6.1f} vs {1e3 * row['jacobian_stack_autodiff']:6.1f} ms; "
              f"max diff {row['hessian_rel_diff']:.1e}", flush=True)
    res = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1,
                       "torch": torch.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "members": args.members, "repeats": args.repeats, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
