"""Vector outputs: the cost of k outputs against one (issue 27's targets).

For a tanh ResNet and an FC net of the same depth and width on the same data, with k = 1 (squared loss on a
scalar target) and k = 2, 3, 5, 10 (the cross-entropy on k classes), this times in one process, one torch
thread, float64:

* R and ∇R (one reverse pass over :class:`~resland.krylov.ChunkedRisk`),
* one Hessian-vector product (forward-over-reverse, recomputed per product: no cached graphs),
* one GGN-vector product (JVP + VJP),
each the median of ``--repeats`` timings, on the matrix-free finder's sizes (depth 4, width 8 on all 64 pixels:
n ≈ 4,200), and

* one dense GGN step of the batched finder (``second_order.ggn_step``: the m × k × n Jacobian, then a solve in
  the smaller of n and m·k) on the dense finder's sizes (depth 2, width 4 on the first 16 pixels: n ≤ 434),

and reports every k's ratio to k = 1. The target: gradient and HVP at most 1.2× the scalar net's, the GGN step
at most linear in k. Data: the first m rows of ``digits`` (labels 0..k−1 taken mod k, so every k uses the same
inputs; k = 1 regresses a ±½ parity target).

Usage: python benchmarks/bench_outputs.py [--m 1797] [--repeats 15] [--out benchmarks/results/bench_outputs.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _timing import median_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=1797)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/bench_outputs.json")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from resland import second_order
    from resland.data import load_dataset
    from resland.ensemble import Ensemble
    from resland.krylov.products import ChunkedRisk
    from resland.models import init_model

    ds = load_dataset("digits")
    X = ds.X[: args.m]
    rows = []
    for family in ("resnet", "fc"):
        base = None
        for k in (1, 2, 3, 5, 10):
            if k == 1:
                y, loss = np.asarray(ds.y[: args.m] % 2, dtype=float) - 0.5, "squared"
            else:
                y, loss = np.asarray(ds.y[: args.m] % k, dtype=float), "cross_entropy"
            net = init_model(family, X.shape[1], width=args.width, depth=args.depth, activation="tanh", seed=0,
                             d_out=k)
            fr = ChunkedRisk(net, X, y, loss)
            fr.graphs = lambda theta: None            # every product recomputes its chunk (no cached graphs)
            th = fr.theta0
            v = torch.randn(fr.n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            small = init_model(family, 16, width=4, depth=2, activation="tanh", seed=0, d_out=k)
            ens = Ensemble([small], X[:, :16], y, loss)
            g = ens.grad(ens.theta)
            mu = torch.tensor([1e-3], dtype=torch.float64)
            row = {
                "family": family, "k": k, "loss": loss, "n": fr.n, "m": fr.m, "n_dense": ens.n,
                "grad_s": median_time(lambda: fr.risk_and_grad(th), args.repeats, warmup=True),
                "hvp_s": median_time(lambda: fr.hvp(th, v), args.repeats, warmup=True),
                "ggn_s": median_time(lambda: fr.ggn(th, v), args.repeats, warmup=True),
                "ggn_step_s": median_time(lambda: second_order.ggn_step(ens, ens.theta, g, mu), max(3, args.repeats // 3), warmup=True),
            }
            base = base or row
            for key in ("grad_s", "hvp_s", "ggn_s", "ggn_step_s"):
                row[key[:-2] + "_ratio"] = row[key] / base[key]
            rows.append(row)
            print(f"{family:6s} k={k:2d} n={fr.n:5d} n_dense={ens.n:4d}  grad {row['grad_s'] * 1e3:7.2f} ms ({row['grad_ratio']:.2f}x)  "
                  f"hvp {row['hvp_s'] * 1e3:7.2f} ms ({row['hvp_ratio']:.2f}x)  ggn {row['ggn_s'] * 1e3:7.2f} ms "
                  f"({row['ggn_ratio']:.2f}x)  ggn step {row['ggn_step_s'] * 1e3:8.1f} ms ({row['ggn_step_ratio']:.2f}x)",
                  flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "threads": 1, "repeats": args.repeats, "depth": args.depth, "width": args.width}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
