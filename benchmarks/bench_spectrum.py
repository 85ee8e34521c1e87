"""Top-k Hessian eigenvalues: resland's block Lanczos against SciPy ``eigsh`` (ARPACK) on the same operator.

Both are fed the same exact Hessian-vector products (``HessianOperator``; SciPy through ``.to_scipy()``), in one
process, one torch thread, alternating, ``--repeats`` times; the table gives the median wall time of each, the
ratio of the medians, the products used and the largest difference between the two sets of eigenvalues.

    .venv/bin/python benchmarks/bench_spectrum.py [--rows 10000] [--depth 16] [--width 32] [--k 10]

Figures go into docs/performance.md ("Spectra") with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

import resland
from resland.data import subsample
from resland.models import init_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="diamonds")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = subsample(resland.load_dataset(args.data), args.rows)
    net = init_model("resnet", ds.X.shape[1], width=args.width, depth=args.depth, activation="tanh", seed=0)
    H = resland.HessianOperator.from_model(net, ds.X, ds.y, ds.loss)
    op = H.to_scipy()
    times = {"resland": [], "scipy": []}
    out = {}
    for _ in range(args.repeats):
        p0 = H.products
        t = time.perf_counter()
        e = H.eigenvalues(args.k, "largest", tol=1e-10)
        times["resland"].append(time.perf_counter() - t)
        out["resland_products"] = H.products - p0
        p0 = H.products
        t = time.perf_counter()
        vals = spla.eigsh(op, k=args.k, which="LA", tol=1e-10, return_eigenvectors=False)
        times["scipy"].append(time.perf_counter() - t)
        out["scipy_products"] = H.products - p0
    ref = np.sort(vals)
    med = {k: statistics.median(v) for k, v in times.items()}
    out.update(n=H.n, m=len(ds.y), k=args.k, median_s=med, ratio=med["scipy"] / med["resland"],
               max_abs_diff=float(np.abs(e.values.numpy() - ref).max()), lambda_max=float(ref[-1]),
               max_residual=float(e.residuals.max()), torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
