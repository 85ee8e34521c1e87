"""The atlas's own throughput ratio, batched against sequential, at n ≤ 200 parameters.

bench_atlas.py times hand-picked rows; this times the atlas itself. From ``atlas/atlas.toml``'s
tasks whose configuration has n ≤ 200 parameters, ``--per-stratum`` tasks are drawn at random
(``--seed``) from each cost stratum of :func:`resland.atlas.cost` (activation class, kind,
depth band). Each task (its own seeds, up to the spec's batch of 16) runs with
``engine = "batched"``, as the atlas ran it, and with ``engine = "sequential"`` (the same finder one
seed at a time, certify() per run), in this process, one torch thread. The atlas ratio is the
stratified ratio estimate

    Σ_s N_s · (seconds per run, sequential)_s  /  Σ_s N_s · (seconds per run, batched)_s,

``N_s`` the atlas's runs at n ≤ 200 in stratum ``s`` (atlas/runs.parquet), the seconds per run
pooled over the stratum's sampled tasks: the ratio of the two engines' wall times for the whole
atlas at n ≤ 200. A 90 % interval comes from resampling the tasks within each stratum (bootstrap,
2,000 draws). Issue 14 asks for ≥ 5×.

Run: .venv/bin/python benchmarks/bench_atlas_sample.py [--per-stratum 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from engine_timing import atlas_weights, stratified_ratio as ratio, time_engines, warm_up
from resland.atlas import read_runs, stratum
from resland.census import load_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-stratum", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--atlas", default="atlas")
    ap.add_argument("--out", default="benchmarks/results/atlas_sample.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = load_spec(Path(args.atlas) / "atlas.toml")
    n_params = {r["config_id"]: r["n_params"] for r in read_runs(Path(args.atlas) / "runs.parquet")}
    weights = atlas_weights(args.atlas)
    by: dict = {}
    for t in spec.tasks():
        if n_params[t.config_id] <= 200:
            by.setdefault(stratum(t.config), []).append(t)
    rng = random.Random(args.seed)
    picks = {s: rng.sample(by[s], min(args.per_stratum, len(by[s]))) for s in sorted(by)}
    warm_up(next(iter(picks.values()))[0], spec.task_options)
    sample, rows = {}, []
    for s, tasks in picks.items():
        for task in tasks:
            row = {"stratum": "/".join(s), "config": task.config, "seeds": len(task.seeds),
                   **time_engines(task, spec.task_options)}
            rows.append(row)
            sample.setdefault(s, []).append((len(task.seeds), row["batched"]["seconds"], row["sequential"]["seconds"]))
            c = task.config
            print(f"{row['stratum']:22s} {c['data']:9s} {c['model']:6s} L={c['depth']:<2d} k={c['width']:<2d} "
                  f"{c['activation']:8s} n={row['n_params']:4d} seeds={row['seeds']:2d}  batched "
                  f"{row['batched']['seconds']:6.2f} s  sequential {row['sequential']['seconds']:6.2f} s  "
                  f"ratio {row['ratio']:5.2f}", flush=True)
    est = ratio(sample, weights)
    boot = np.random.default_rng(args.seed)
    draws = [ratio({s: [ts[i] for i in boot.integers(0, len(ts), len(ts))] for s, ts in sample.items()}, weights)
             for _ in range(2000)]
    lo, hi = np.quantile(draws, [0.05, 0.95])
    per = {"/".join(s): {"atlas_runs": weights[s], "ratio": ratio({s: ts}, weights)} for s, ts in sample.items()}
    for s, v in per.items():
        print(f"  {s:22s} atlas runs {v['atlas_runs']:5d}  ratio {v['ratio']:5.2f}")
    print(f"atlas ratio (n ≤ 200, stratified over {len(rows)} sampled tasks): {est:.2f}, "
          f"90 % bootstrap interval [{lo:.2f}, {hi:.2f}]")
    res = {"atlas_ratio": est, "interval_90": [float(lo), float(hi)], "strata": per, "per_stratum": args.per_stratum,
           "seed": args.seed, "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                          "threads": 1, "torch": torch.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
