"""How often random starts end at a spurious minimum (Safran & Shamir 2018, issue 36): for n = k and n = k + 1.

Starts ``w_i ~ N(0, I_k/k)`` (seeds 0…starts−1), finder: L-BFGS (strong Wolfe) then Newton on the exact Hessian
(:func:`resland.known.safran_shamir.find_student_minimum`), every end point certified by ``certify_student``.
Prints one JSON line per (k, n): counts by verdict and the spurious share with its 95 % Wilson interval.

    .venv/bin/python benchmarks/safran_shamir_frequency.py --ks 6 8 10 --starts 100 [--plus1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter

import torch

from resland.known.safran_shamir import certify_student, find_student_minimum


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial share."""
    if total == 0:
        return (math.nan, math.nan)
    p = hits / total
    den = 1 + z * z / total
    mid = (p + z * z / (2 * total)) / den
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[6, 8, 10, 12, 14, 16, 18, 20])
    ap.add_argument("--starts", type=int, default=200)
    ap.add_argument("--extra", type=int, nargs="+", default=[0, 1], help="n − k values")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for k in args.ks:
        for extra in args.extra:
            n, t0 = k + extra, time.perf_counter()
            verdicts = Counter(certify_student(find_student_minimum(k, n, s))["verdict"] for s in range(args.starts))
            hits = verdicts.get("spurious_minimum", 0)
            lo, hi = wilson(hits, args.starts)
            print(json.dumps({"k": k, "n": n, "starts": args.starts, "verdicts": dict(verdicts),
                              "spurious_share": hits / args.starts, "wilson95": [lo, hi],
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
