"""Atlas throughput: runs per hour on one core, batched against sequential, at n ≤ 200 parameters.

For each small configuration (the atlas regime: fewer parameters than samples, several data
sets, ResNet and FC, smooth and ReLU), one census task of ``--seeds`` seeds is run twice in this
process with one torch thread: ``engine = "batched"`` (all seeds in one vmapped finder and one
batched certification) and ``engine = "sequential"`` (the same finder one seed at a time, certify()
per run). Throughput = runs / wall seconds × 3600; the ratio is measured in the same run. Summaries:
the median of the rows' ratios, and the pooled ratio (all rows' sequential seconds over all
rows' batched seconds: the throughput ratio of an atlas made of these strata in equal parts). The
atlas wants ≥ 5× at n ≤ 200 (issue 14). Outcomes of both engines are reported side by side.

The finder settings are the atlas spec's (``atlas/atlas.toml`` [finder]: ``max_iter``,
``kink_iter``, ``newton_always_max``). The **atlas-weighted ratio** is the throughput ratio of
the atlas's own mix at n ≤ 200: each stratum of :func:`resland.atlas.cost` (activation class,
kind, depth band) is timed by the rows in it (seconds per run, averaged) and weighted by its
number of runs with n ≤ 200 in ``atlas/runs.parquet``.

Run: .venv/bin/python benchmarks/bench_atlas.py [--seeds 16] [--max-iter 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from engine_timing import atlas_weights, stratified_ratio, time_engines, warm_up
from resland.atlas import stratum
from resland.census import load_spec, parse_spec

CONFIGS = [  # (data, model, depth, width, activation, kind): atlas strata at n ≤ 200
    ("engel", "resnet", 4, 2, "tanh", "minimum"),
    ("engel", "fc", 4, 2, "tanh", "minimum"),
    ("grunfeld", "resnet", 2, 2, "softplus", "minimum"),
    ("spector", "resnet", 1, 2, "tanh", "minimum"),
    ("iris", "resnet", 2, 2, "softplus", "minimum"),
    ("diabetes", "resnet", 1, 2, "tanh", "minimum"),
    ("diabetes", "resnet", 1, 2, "relu", "minimum"),
    ("engel", "resnet", 16, 2, "tanh", "minimum"),
    ("grunfeld", "fc", 8, 4, "softplus", "minimum"),
    ("star98", "resnet", 2, 2, "tanh", "minimum"),
    ("iris", "resnet", 2, 2, "softplus", "any"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--max-iter", type=int, default=None, help="default: the atlas spec's")
    ap.add_argument("--atlas", default="atlas", help="the atlas directory: its [finder] settings and the weights")
    ap.add_argument("--configs", type=int, default=len(CONFIGS), help="use the first N configurations")
    ap.add_argument("--out", default="benchmarks/results/atlas_throughput.json")
    args = ap.parse_args()
    finder = {k: v for k, v in load_spec(Path(args.atlas) / "atlas.toml").finder.items() if k != "kind"}
    if args.max_iter is not None:
        finder["max_iter"] = args.max_iter
    warm = parse_spec({"name": "warm-up", "seeds": 2, "batch_size": 2, "finder": {**finder, "max_iter": 3},
                       "grid": [{"data": "spector", "model": "resnet", "depth": 1, "width": 2, "activation": "tanh"}]})
    warm_up(warm.tasks()[0], warm.task_options)
    rows = []
    for data, model, depth, width, act, kind in CONFIGS[: args.configs]:
        out = {"data": data, "model": model, "depth": depth, "width": width, "activation": act, "kind": kind}
        spec = parse_spec({"name": "bench-atlas", "seeds": args.seeds, "batch_size": args.seeds,
                           "finder": finder,
                           "grid": [{"data": data, "model": model, "depth": depth, "width": width,
                                     "activation": act, "kind": kind}]})
        (task,) = spec.tasks()
        out.update(time_engines(task, spec.task_options))   # the same seeds in one task, either engine
        rows.append(out)
        print(f"{data:9s} {model:6s} L={depth:<2d} k={width} {act:8s} {kind:7s} n={out['n_params']:4d}  batched "
              f"{out['batched']['runs_per_hour']:8.0f}/h  sequential {out['sequential']['runs_per_hour']:8.0f}/h  "
              f"ratio {out['ratio']:5.2f}  {out['batched']['outcomes']}", flush=True)
    # The atlas's own mix: its runs at n ≤ 200 per stratum, each stratum timed by the rows in it.
    strata: dict = {}
    for r in rows:
        strata.setdefault(stratum(r), []).append((args.seeds, r["batched"]["seconds"], r["sequential"]["seconds"]))
    weights = atlas_weights(args.atlas)
    weighted = stratified_ratio(strata, weights)
    covered = sum(weights[s] for s in strata) / sum(weights.values())
    print(f"atlas-weighted ratio {weighted:.2f} (strata holding {covered:.1%} of the atlas's runs at n ≤ 200: "
          + ", ".join(f"{'/'.join(s)} {weights[s]}" for s in strata) + ")")
    ratios = sorted(r["ratio"] for r in rows)
    pooled = sum(r["sequential"]["seconds"] for r in rows) / sum(r["batched"]["seconds"] for r in rows)
    median = statistics.median(ratios)
    print(f"median ratio {median:.2f}, pooled (all rows' runs per hour) {pooled:.2f}, "
          f"{sum(x >= 5 for x in ratios)} of {len(ratios)} rows ≥ 5")
    res = {"atlas_weighted_ratio": weighted, "atlas_weights": {"/".join(s): weights[s] for s in strata},
           "atlas_share_covered": covered, "median_ratio": median, "pooled_ratio": pooled, "finder": finder,
           "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1,
                       "torch": torch.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "seeds": args.seeds, "max_iter": args.max_iter, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
