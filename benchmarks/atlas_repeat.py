"""Recompute a sample of the atlas's tasks from scratch and compare them with the stored runs.

    python benchmarks/atlas_repeat.py [--per-stratum 3] [--seed 0]

Needs the working store atlas/atlas.db (``make atlas`` writes it). Samples ``--per-stratum``
tasks of each (activation class, kind, depth band) of atlas/atlas.toml, reruns each with the
census's own task function (one torch thread, as a worker runs it) and compares outcome,
verdict, certificate and finder record, bit for bit. A rerun from scratch gives the same
verdict counts when every sampled run is identical.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time

from resland.atlas import stratum
from resland.census import load_spec
from resland.census.runner import run_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-stratum", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    spec = load_spec("atlas/atlas.toml")
    conn = sqlite3.connect("atlas/atlas.db")
    by: dict = {}
    for t in spec.tasks():
        by.setdefault(stratum(t.config), []).append(t)
    rng = random.Random(args.seed)
    pick = [t for k in sorted(by) for t in rng.sample(by[k], min(args.per_stratum, len(by[k])))]
    same, differ, start = 0, 0, time.perf_counter()
    for t in pick:
        for r in run_task(t, spec.task_options):
            old = conn.execute("SELECT outcome, verdict, certificate, finder FROM runs WHERE spec_hash = ? AND "
                               "config_id = ? AND seed = ?", (spec.spec_hash, r["config_id"], r["seed"])).fetchone()
            if old == (r["outcome"], r["verdict"], r["certificate"], r["finder"]):
                same += 1
            else:
                differ += 1
                print("differs:", r["config_id"], r["seed"], t.config, old[:2] if old else None, (r["outcome"], r["verdict"]))
    print(f"{len(pick)} tasks, {same + differ} runs: {same} identical (outcome, verdict, certificate, finder), "
          f"{differ} differ; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
