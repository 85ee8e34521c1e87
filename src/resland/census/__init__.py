"""Landscape censuses: sweep specs, batched runs, a SQLite run store, executors and reports.

``resland census SPEC --store runs.db`` expands a TOML spec (:mod:`.spec`) into tasks,
runs them (:mod:`.runner`) on a local process pool or Dask (:mod:`.executors`), and the
client writes one row per run to SQLite (:mod:`.store`). ``resland report`` and
``resland export`` read the store; :func:`.report.summarise` gives its counts (a
:class:`.report.CensusSummary`, rendered as a table in Jupyter).
"""

from .executors import EXECUTORS, pending_tasks, run_census
from .row import ROW_FIELDS, Run, RunSummary
from .runner import run_task
from .spec import Spec, Task, load_spec, parse_spec
from .store import RunStore

__all__ = ["EXECUTORS", "ROW_FIELDS", "Run", "RunStore", "RunSummary", "Spec", "Task", "load_spec", "parse_spec", "pending_tasks",
           "run_census", "run_task"]
