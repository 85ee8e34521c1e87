"""How often random starts end at a spurious minimum (Safran & Shamir 2018, issue 36): for n = k and n = k + 1.

Starts ``w_i ~ N(0, I_k/k)`` (seeds 0…starts−1); the finder of the claims run
(:func:`resland.known.safran_shamir.frequency_cell`: Adam on all starts of a cell at once, then Newton per start),
every end point certified by ``certify_student``. Prints one JSON line per (k, n): ends (spurious / global / other),
verdicts and the spurious share with its 95 % Wilson interval. ``--lbfgs`` uses the per-start L-BFGS finder of the
first pass (``find_student_minimum``) instead, for comparison.

    .venv/bin/python benchmarks/safran_shamir_frequency.py --ks 6 8 10 --starts 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import torch

from resland.known.safran_shamir import certify_student, find_student_minimum, frequency_table, wilson


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=list(range(6, 21)))
    ap.add_argument("--starts", type=int, default=200)
    ap.add_argument("--extra", type=int, nargs="+", default=[0, 1], help="n − k values")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lbfgs", action="store_true", help="per-start L-BFGS + Newton (the first pass's finder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.lbfgs:
        for row in frequency_table(args.ks, args.extra, args.starts, workers=args.workers):
            print(json.dumps(row), flush=True)
        return
    for k in args.ks:
        for extra in args.extra:
            n, t0 = k + extra, time.perf_counter()
            verdicts = Counter(certify_student(find_student_minimum(k, n, s))["verdict"] for s in range(args.starts))
            hits = verdicts.get("spurious_minimum", 0)
            print(json.dumps({"k": k, "n": n, "starts": args.starts, "verdicts": dict(verdicts),
                              "spurious_share": hits / args.starts, "wilson95": list(wilson(hits, args.starts)),
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
