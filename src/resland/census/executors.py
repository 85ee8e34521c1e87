"""Executors: where a census's tasks run. Workers only compute; the client alone writes.

* ``local`` (default): a process pool of ``workers`` processes (spawned), each task on one
  torch thread. A worker that dies (``BrokenProcessPool``) has the pool rebuilt and its
  tasks resubmitted, up to ``retries`` times per task.
* ``dask``: ``dask.distributed``; an existing scheduler at ``scheduler`` (e.g. one started by
  dask-jobqueue on SLURM, see docs/census.md) or else a ``LocalCluster`` bound to
  127.0.0.1, started and closed here. Dask itself reschedules a task whose worker dies (up to
  its ``allowed-failures``); a task that still fails (``KilledWorker``, a lost connection) is
  resubmitted by the client up to ``retries`` times and counted.

Each row records ``attempts`` (1 + the failures of its task). At most ``2 × workers`` tasks
are in flight, so memory stays bounded however large the census.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from .._checks import ValidationError, check_choice, check_positive_int, check_scalar
from .runner import failed_rows, run_task
from .spec import Spec, Task
from .store import RunStore

EXECUTORS = ("local", "dask")


def check_options(executor: str, workers: int | None, scheduler: str | None, retries: int) -> int:
    """Validate the executor options; returns the worker count (default: the CPU count).

    Raises:
        ValidationError: an unknown executor, ``workers`` < 1, ``retries`` < 0, or a
            scheduler without ``executor='dask'``.
    """
    check_choice("executor", executor, EXECUTORS)
    workers = check_positive_int("workers", workers if workers is not None else (os.cpu_count() or 1))
    check_scalar(retries, "retries", int, min_val=0)
    if scheduler is not None and executor != "dask":
        raise ValidationError("The 'scheduler' option needs --executor dask. Got --executor local.")
    return workers


def pending_tasks(spec: Spec, store: RunStore, skip: set[tuple[str, int]] = frozenset()) -> list[Task]:
    """The spec's tasks minus the runs already stored and the ``(config_id, seed)`` keys in
    ``skip`` (runs held elsewhere, e.g. a committed export); a task keeps only its missing seeds."""
    done = store.done(spec.spec_hash) | set(skip)
    out = []
    for t in spec.tasks():
        missing = [s for s in t.seeds if (t.config_id, s) not in done]
        if missing:
            t.seeds = missing
            out.append(t)
    return out


def run_census(
    spec: Spec,
    store: RunStore,
    *,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 2,
    on_rows: Callable[[list[dict]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    task_fn: Callable = run_task,
    skip: set[tuple[str, int]] = frozenset(),
) -> dict:
    """Run every pending task of ``spec`` and write its rows to ``store``; returns a summary
    (tasks, runs, skipped, worker failures, and compute_seconds: wall time once the workers
    or the cluster were started).

    ``on_start(runs, skipped)`` is called once, ``on_rows(rows)`` after each task is stored.
    ``task_fn`` is what a worker runs per task (:func:`~resland.census.runner.run_task`;
    the tests inject worker deaths through it). ``skip``: ``(config_id, seed)`` keys of this
    spec that are done elsewhere (the atlas's committed export) and are not run again.

    Raises:
        ValidationError: bad executor options (:func:`check_options`); nothing is written
            then.
    """
    workers = check_options(executor, workers, scheduler, retries)
    store.add_spec(spec)
    tasks = pending_tasks(spec, store, skip)
    summary = {"tasks": len(tasks), "runs": sum(len(t.seeds) for t in tasks), "failures": 0,
               "skipped": spec.n_runs - sum(len(t.seeds) for t in tasks)}

    def deliver(rows: list[dict], failures: int) -> None:
        for r in rows:
            r["attempts"] = 1 + failures
        store.write(rows)
        if on_rows:
            on_rows(rows)

    def give_up(task: Task, failures: int, why: str) -> None:
        deliver(failed_rows(task, why), failures - 1)

    if on_start:
        on_start(summary["runs"], summary["skipped"])
    if not tasks:
        return summary
    run = _run_local if executor == "local" else _run_dask
    summary["failures"], summary["compute_seconds"] = run(task_fn, tasks, spec.task_options, workers, scheduler, retries,
                                                          deliver, give_up)
    return summary


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_local(task_fn, tasks, finder, workers, _scheduler, retries, deliver, give_up) -> tuple[int, float]:
    queue = list(enumerate(tasks))[::-1]
    attempts = {i: 0 for i, _ in queue}
    failures = 0
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    while queue:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)
        running: dict = {}
        dead: set[int] = set()
        try:
            while (queue or running) and not dead:
                while queue and len(running) < 2 * workers:
                    i, t = queue.pop()
                    running[pool.submit(task_fn, t, finder)] = i
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        rows = fut.result()
                    except BrokenProcessPool:
                        dead.add(i)
                        continue
                    deliver(rows, attempts[i])
        finally:
            pool.shutdown(wait=not dead, cancel_futures=True)
        # A worker died: the pool is gone, so every task in flight is charged one failure and retried.
        for i in sorted(dead | set(running.values()), reverse=True):
            attempts[i] += 1
            failures += 1
            if attempts[i] > retries:
                give_up(tasks[i], attempts[i], f"a worker process died {attempts[i]} times running this task")
            else:
                queue.append((i, tasks[i]))
    return failures, time.perf_counter() - start


def _run_dask(task_fn, tasks, finder, workers, scheduler, retries, deliver, give_up) -> tuple[int, float]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster if cluster is not None else scheduler)
    failures = 0
    start = time.perf_counter()  # after the cluster is up
    try:
        attempts = {}
        futures = {}
        queue = list(enumerate(tasks))[::-1]

        run_id = uuid.uuid4().hex[:12]  # keys stay unique on a scheduler shared with other censuses

        def submit(i):
            key = f"resland-{run_id}-{tasks[i].config_id}-{tasks[i].seeds[0]}-{attempts.get(i, 0)}"
            fut = client.submit(task_fn, tasks[i], finder, pure=False, key=key)
            futures[fut.key] = i
            return fut

        first = [submit(i) for i, _ in queue[-2 * workers:][::-1]]
        queue = queue[: -2 * workers] if len(queue) > 2 * workers else []
        ac = as_completed(first)
        for fut in ac:
            i = futures.pop(fut.key)
            try:
                rows = fut.result()
            except Exception as exc:  # KilledWorker, lost connection, …
                attempts[i] = attempts.get(i, 0) + 1
                failures += 1
                if attempts[i] > retries:
                    give_up(tasks[i], attempts[i], f"failed {attempts[i]} times on dask: {type(exc).__name__}: {exc}")
                else:
                    ac.add(submit(i))
                    continue
            else:
                deliver(rows, attempts.get(i, 0))
            if queue:
                ac.add(submit(queue.pop()[0]))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return failures, time.perf_counter() - start
