"""Census timings (issue 4). Every ratio is measured in this one process run, same machine.

1. Batched vs sequential engine, same spec (64 seeds of a ResNet d = 10, width 16,
   depth 4 on diabetes, kind minimum, V × 0.3), both on the local executor with 2 workers:
   certified critical points per second. For reference, the core finder
   (``find_critical_point``, L-BFGS + trust-region Newton) + ``certify`` on a few seeds.
2. Dask LocalCluster, 2 workers vs 1 worker, on a 40-run spec.
3. Wall time per run against depth (1..32) and against the number of samples m.

Run: .venv/bin/python benchmarks/bench_census.py [--out benchmarks/results/census.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import resland
from resland.census import RunStore, parse_spec, run_census
from resland.critical import find_critical_points
from resland.certificate import certify_ensemble
from resland.ensemble import Ensemble
from resland.functional import flat_parameters
from resland.models import init_model

from resland.census.dichotomy import CERTIFIED


def timed_census(raw: dict, executor: str, workers: int) -> dict:
    spec = parse_spec(raw)
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp) / "runs.db") as store:
        t = time.perf_counter()
        summary = run_census(spec, store, executor=executor, workers=workers)
        wall = time.perf_counter() - t
        rows = list(store.rows())
    certified = sum(r["verdict"] in CERTIFIED for r in rows)
    return {"runs": len(rows), "certified": certified, "converged": sum(r["converged"] for r in rows),
            "seconds": wall, "compute_seconds": summary.get("compute_seconds"), "certified_per_s": certified / wall,
            "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in {r["verdict"] for r in rows}}}


def batched_vs_sequential(seeds: int, core_seeds: int) -> dict:
    base = {"name": "bench", "seeds": seeds, "batch_size": (seeds + 1) // 2, "finder": {"max_iter": 200},
            "grid": [{"data": "diabetes", "model": "resnet", "depth": 4, "width": 16, "activation": "softplus",
                      "v_scale": 0.3}]}
    out = {"batched": timed_census({**base, "engine": "batched"}, "local", 2),
           "sequential": timed_census({**base, "engine": "sequential"}, "local", 2)}
    out["ratio_certified_per_s"] = out["batched"]["certified_per_s"] / max(out["sequential"]["certified_per_s"], 1e-300)
    # The core finder of resland.critical (L-BFGS + trust-region Newton), 2 threads, 60 iterations.
    ds = resland.load_dataset("diabetes")
    t = time.perf_counter()
    certified = 0
    for s in range(core_seeds):
        model = init_model("resnet", 10, width=16, depth=4, seed=s, v_scale=0.3)
        cp = resland.find_critical_point(model, ds.X, ds.y, max_iter=60)
        certified += resland.certify(cp.model, ds.X, ds.y).verdict in CERTIFIED
    wall = time.perf_counter() - t
    out["core_finder"] = {"runs": core_seeds, "certified": certified, "seconds": wall,
                          "certified_per_s": certified / wall}
    return out


def dask_scaling(seeds: int) -> dict:
    raw = {"name": "dask", "seeds": seeds, "batch_size": 4, "finder": {"max_iter": 100},
           "grid": [{"data": "diabetes", "model": "resnet", "depth": 2, "width": 8, "activation": "softplus",
                     "v_scale": 0.3}]}
    one = timed_census(raw, "dask", 1)
    two = timed_census(raw, "dask", 2)
    return {"runs": one["runs"], "one_worker_s": one["seconds"], "two_workers_s": two["seconds"],
            "speedup": one["seconds"] / two["seconds"],
            "speedup_after_cluster_start": one["compute_seconds"] / two["compute_seconds"]}


def scaling(seeds: int) -> dict:
    torch.set_num_threads(1)  # as in a census worker
    ds = resland.load_dataset("diabetes")
    by_depth = []
    for depth in (1, 2, 4, 8, 16, 32):
        by_depth.append(_one(ds.X, ds.y, depth, seeds))
    g = np.random.default_rng(0)
    by_m = []
    for m in (100, 200, 442, 1000, 2000):
        X = g.standard_normal((m, 10))
        y = np.tanh(X @ g.standard_normal(10)) + 0.3 * g.standard_normal(m)
        by_m.append(_one(X, y, 4, seeds) | {"m": m})
    return {"by_depth": by_depth, "by_m": by_m}


def _one(X, y, depth, seeds) -> dict:
    models = [init_model("resnet", X.shape[1], width=16, depth=depth, seed=s, v_scale=0.3) for s in range(seeds)]
    t = time.perf_counter()
    ens = Ensemble(models, X, y)
    cps = find_critical_points(ens, "minimum", max_iter=200)
    found = time.perf_counter() - t
    theta = torch.stack([flat_parameters(cp.model.parameters()) for cp in cps])
    certs = certify_ensemble(ens, theta, list(range(seeds)))
    wall = time.perf_counter() - t
    return {"depth": depth, "n_params": ens.n, "m": len(y), "seconds_per_run": wall / seeds,
            "finder_share": found / wall, "converged": sum(cp.converged for cp in cps),
            "certified": sum(c.verdict in CERTIFIED for c in certs), "runs": seeds,
            "mean_iterations": float(np.mean([cp.iterations for cp in cps]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--core-seeds", type=int, default=2)
    ap.add_argument("--dask-runs", type=int, default=40)
    ap.add_argument("--scaling-seeds", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/census.json")
    ap.add_argument("--skip", nargs="*", default=[], choices=["engines", "dask", "scaling"])
    args = ap.parse_args()
    res = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": torch.get_num_threads(),
                       "torch": torch.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d")}
    if "engines" not in args.skip:
        res["engines"] = batched_vs_sequential(args.seeds, args.core_seeds)
        print(json.dumps(res["engines"], indent=1), flush=True)
    if "dask" not in args.skip:
        res["dask"] = dask_scaling(args.dask_runs)
        print(json.dumps(res["dask"], indent=1), flush=True)
    if "scaling" not in args.skip:
        res["scaling"] = scaling(args.scaling_seeds)
        print(json.dumps(res["scaling"], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
