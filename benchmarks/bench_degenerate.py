"""What the §8 verdicts cost (docs/theory.md §8): certify() at the atlas's points worse than linear
without negative curvature, with the time of the symmetry projection + higher-order test
(``analyse_null_space``) and of the polish measured inside the same call.

Rows: up to ``--per-verdict`` atlas rows of each of degenerate_saddle, local_minimum_worse and
degenerate (their parameters are in atlas/runs.parquet), spread over n. Medians of ``--repeats``.
Run: .venv/bin/python benchmarks/bench_degenerate.py [--out benchmarks/results/degenerate.json]
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
from resland import certificate
from resland.atlas import read_runs
from resland.census.runner import config_model
from resland.replay import _set_parameters

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, log, key):
    def wrapper(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        log[key] = log.get(key, 0.0) + time.perf_counter() - t
        return out
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-verdict", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "degenerate.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [r for r in read_runs(ROOT / "atlas" / "runs.parquet") if r["parameters"]
            and r["verdict"] in certificate.WORSE_NO_NEGATIVE and r["outcome"] == "critical"]
    picked = []
    for v in certificate.WORSE_NO_NEGATIVE:
        sub = sorted((r for r in rows if r["verdict"] == v), key=lambda r: r["n_params"])
        step = max(1, len(sub) // args.per_verdict)
        picked += sub[::step][: args.per_verdict]
    out = []
    null_fn, polish_fn = certificate.analyse_null_space, certificate._polish
    for r in picked:
        model, ds, _ = config_model(r, r["seed"])
        _set_parameters(model, json.loads(r["parameters"]))
        samples = []
        for _ in range(args.repeats):
            log: dict = {}
            certificate.analyse_null_space = timed(null_fn, log, "null")
            certificate._polish = timed(polish_fn, log, "polish")
            try:
                t = time.perf_counter()
                cert = resland.certify(model, ds.X, ds.y, r["loss"])
                total = time.perf_counter() - t
            finally:
                certificate.analyse_null_space, certificate._polish = null_fn, polish_fn
            samples.append((total, log.get("null", 0.0), log.get("polish", 0.0)))
        med = [statistics.median(s[i] for s in samples) for i in range(3)]
        out.append({"data": r["data"], "model": r["model"], "depth": r["depth"], "width": r["width"],
                    "activation": r["activation"], "n": r["n_params"], "m": len(ds.y), "verdict": cert.verdict,
                    "stored_verdict": r["verdict"], "null_dim": (cert.higher_order or {}).get("null_dim"),
                    "certify_s": med[0], "null_space_s": med[1], "polish_s": med[2]})
        o = out[-1]
        print(f"{o['data']:9s} {o['model']:6s} L={o['depth']:<2d} k={o['width']:<2d} n={o['n']:<4d} {o['verdict']:19s} "
              f"null {o['null_dim']!s:>3s}  certify {o['certify_s']:.3f} s  (§8 {o['null_space_s']:.3f} s, "
              f"polish {o['polish_s']:.3f} s)")
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
           "torch": torch.__version__, "threads": 1, "repeats": args.repeats, "rows": out}
    Path(args.out).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
