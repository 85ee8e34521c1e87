"""Shared by bench_atlas.py and bench_atlas_sample.py: one census task timed under both engines,
and the stratified ratio that weighs per-stratum timings by the atlas's own runs."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from resland.atlas import read_runs, stratum
from resland.census.runner import run_task

ENGINES = ("batched", "sequential")


def warm_up(task, options) -> None:
    """First calls (imports, kernels) of both engines, outside the timings: one seed of ``task``."""
    for engine in ENGINES:
        run_task(replace(task, seeds=task.seeds[:1], engine=engine), options)


def time_engines(task, options) -> dict:
    """Run ``task`` (the same seeds) with ``engine = "batched"`` and then ``"sequential"``.

    Returns ``n_params``, per engine ``seconds``, ``runs_per_hour``, ``outcomes``, ``verdicts``,
    and ``ratio`` (batched runs per hour over sequential).
    """
    out: dict = {}
    for engine in ENGINES:
        t = time.perf_counter()
        res = run_task(replace(task, engine=engine), options)
        wall = time.perf_counter() - t
        out["n_params"] = res[0]["n_params"]
        out[engine] = {"seconds": wall, "runs_per_hour": 3600 * len(res) / wall,
                       "outcomes": dict(Counter(r["outcome"] for r in res)),
                       "verdicts": dict(Counter(r["verdict"] for r in res))}
    out["ratio"] = out["sequential"]["seconds"] / out["batched"]["seconds"]
    return out


def atlas_weights(atlas_dir: str | Path, max_params: int = 200) -> Counter:
    """The atlas's runs with ``n ≤ max_params`` per cost stratum (:func:`resland.atlas.stratum`)."""
    return Counter(stratum(r) for r in read_runs(Path(atlas_dir) / "runs.parquet") if r["n_params"] <= max_params)


def stratified_ratio(sample: dict, weights: Counter) -> float:
    """``Σ_s N_s·(s/run, sequential)_s / Σ_s N_s·(s/run, batched)_s`` over the strata in ``sample``.

    ``sample[s]``: one ``(runs, batched seconds, sequential seconds)`` per timed task of stratum
    ``s``; a stratum's seconds per run are pooled over its tasks; ``N_s = weights[s]``.
    """
    num = den = 0.0
    for s, tasks in sample.items():
        runs = sum(t[0] for t in tasks)
        den += weights[s] * sum(t[1] for t in tasks) / runs
        num += weights[s] * sum(t[2] for t in tasks) / runs
    return num / den
