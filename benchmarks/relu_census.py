"""The ReLU measure of issue 25: a census of small depth-3 ResNets (relu, softplus, tanh) on the
six real sets with m ≤ 442, and the depth-1 ReLU runs of the atlas.

1. 288 runs: diabetes, star98, grunfeld, engel, iris, spector × width 2, 3 × relu, softplus, tanh
   × 8 seeds, depth 3, kind minimum, the atlas's finder settings, 2 local workers. Target: all
   of it within 25 minutes on 2 cores, unresolved ≤ 5 %.
2. From atlas/runs.parquet: the share of depth-1 ReLU runs that end ``critical`` or ``kink``
   (target ≥ 90 %), and the outcomes of the deeper ReLU runs.

Outcomes and verdicts are tallied apart: ``below_linear`` and ``diverging`` are outcomes, never
verdicts. Run: .venv/bin/python benchmarks/relu_census.py [--out benchmarks/results/relu_census.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

import resland
from resland.atlas import read_runs
from resland.census import RunStore, load_spec, parse_spec, run_census

ROOT = Path(__file__).resolve().parents[1]


def census_spec() -> dict:
    finder = load_spec(ROOT / "atlas" / "atlas.toml").finder
    return {"name": "relu-measure", "seeds": 8, "engine": "batched", "batch_size": 16,
            "finder": {k: v for k, v in finder.items() if k != "kind"} | {"kind": "minimum"},
            "grid": [{"data": ["diabetes", "star98", "grunfeld", "engel", "iris", "spector"], "model": "resnet",
                      "depth": 3, "width": [2, 3], "activation": ["relu", "softplus", "tanh"]}]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "relu_census.json"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    spec = parse_spec(census_spec())
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp) / "runs.db") as store:
        t = time.perf_counter()
        run_census(spec, store, workers=args.workers)
        wall = time.perf_counter() - t
        rows = list(store.rows())
    per_act: dict = {}
    for r in rows:
        act = json.loads(r["config"])["activation"]
        d = per_act.setdefault(act, {"runs": 0, "outcomes": Counter(), "verdicts": Counter(), "core_seconds": 0.0})
        d["runs"] += 1
        d["outcomes"][r["outcome"]] += 1
        if r["outcome"] == "critical":
            d["verdicts"][r["verdict"]] += 1
        d["core_seconds"] += r["seconds"] or 0.0
    unresolved = sum(r["outcome"] == "unresolved" for r in rows) / len(rows)
    atlas = [r for r in read_runs(ROOT / "atlas" / "runs.parquet") if r["activation"] == "relu"]
    depth1 = [r for r in atlas if r["depth"] == 1]
    out = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "resland": resland.__version__, "workers": args.workers,
        "census": {"runs": len(rows), "wall_seconds": wall, "unresolved_share": unresolved,
                   "per_activation": {k: {**v, "outcomes": dict(v["outcomes"]), "verdicts": dict(v["verdicts"])}
                                      for k, v in sorted(per_act.items())}},
        "atlas_relu": {"depth1_runs": len(depth1),
                       "depth1_critical_or_kink": sum(r["outcome"] in ("critical", "kink") for r in depth1),
                       "by_depth": {d: dict(Counter(r["outcome"] for r in atlas if r["depth"] == d))
                                    for d in sorted({r["depth"] for r in atlas})}},
    }
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    c = out["census"]
    print(f"census: {c['runs']} runs in {wall / 60:.1f} min on {args.workers} workers, unresolved {unresolved:.1%}")
    for k, v in c["per_activation"].items():
        print(f"  {k}: outcomes {v['outcomes']}, verdicts of critical points {v['verdicts']}, "
              f"{v['core_seconds'] / v['runs']:.1f} core-s/run")
    a = out["atlas_relu"]
    print(f"atlas depth-1 ReLU: {a['depth1_critical_or_kink']}/{a['depth1_runs']} critical or kink; by depth {a['by_depth']}")


if __name__ == "__main__":
    main()
