"""Atlas throughput: runs per hour on one core, batched against sequential, at n ≤ 200 parameters.

For each small configuration (the atlas regime: fewer parameters than samples, several data
sets, ResNet and FC, smooth and ReLU), one census task of ``--seeds`` seeds is run twice in this
process with one torch thread: ``engine = "batched"`` (all seeds in one vmapped finder and one
batched certification) and ``engine = "sequential"`` (the same finder one seed at a time, certify()
per run). Throughput = runs / wall seconds × 3600; the ratio is measured in the same run. Summaries:
the median of the rows' ratios, and the pooled ratio (all rows' sequential seconds over all
rows' batched seconds: the throughput ratio of an atlas made of these strata in equal parts). The
atlas wants ≥ 5× at n ≤ 200 (issue 14). Outcomes of both engines are reported side by side.

Run: .venv/bin/python benchmarks/bench_atlas.py [--seeds 32] [--max-iter 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from resland.census import parse_spec
from resland.census.runner import run_task

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
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--configs", type=int, default=len(CONFIGS), help="use the first N configurations")
    ap.add_argument("--out", default="benchmarks/results/atlas_throughput.json")
    args = ap.parse_args()
    rows = []
    for data, model, depth, width, act, kind in CONFIGS[: args.configs]:
        out = {"data": data, "model": model, "depth": depth, "width": width, "activation": act, "kind": kind}
        spec = parse_spec({"name": "bench-atlas", "seeds": args.seeds, "batch_size": args.seeds,
                           "finder": {"max_iter": args.max_iter},
                           "grid": [{"data": data, "model": model, "depth": depth, "width": width,
                                     "activation": act, "kind": kind}]})
        (batched,) = spec.tasks()
        for engine in ("batched", "sequential"):
            task = replace(batched, engine=engine)  # the same seeds in one task, either engine
            t = time.perf_counter()
            res = run_task(task, spec.task_options)
            wall = time.perf_counter() - t
            out["n_params"] = res[0]["n_params"]
            out[engine] = {"seconds": wall, "runs_per_hour": 3600 * len(res) / wall,
                           "outcomes": dict(Counter(r["outcome"] for r in res)),
                           "verdicts": dict(Counter(r["verdict"] for r in res))}
        out["ratio"] = out["batched"]["runs_per_hour"] / out["sequential"]["runs_per_hour"]
        rows.append(out)
        print(f"{data:9s} {model:6s} L={depth:<2d} k={width} {act:8s} {kind:7s} n={out['n_params']:4d}  batched "
              f"{out['batched']['runs_per_hour']:8.0f}/h  sequential {out['sequential']['runs_per_hour']:8.0f}/h  "
              f"ratio {out['ratio']:5.2f}  {out['batched']['outcomes']}", flush=True)
    ratios = sorted(r["ratio"] for r in rows)
    pooled = sum(r["sequential"]["seconds"] for r in rows) / sum(r["batched"]["seconds"] for r in rows)
    median = statistics.median(ratios)
    print(f"median ratio {median:.2f}, pooled (all rows' runs per hour) {pooled:.2f}, "
          f"{sum(x >= 5 for x in ratios)} of {len(ratios)} rows ≥ 5")
    res = {"median_ratio": median, "pooled_ratio": pooled, "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1,
                       "torch": torch.__version__, "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "seeds": args.seeds, "max_iter": args.max_iter, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
