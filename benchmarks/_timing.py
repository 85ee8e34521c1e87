"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import statistics
import time


def run_times(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median_time(fn, repeats: int, *, warmup: bool = False) -> float:
    """Median of ``repeats`` timed calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    return statistics.median(run_times(fn, repeats))
