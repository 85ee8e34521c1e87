"""Task functions for the census tests; importable by spawned worker processes."""

import os
from pathlib import Path

from resland.census import run_task


def die_once(task, finder):
    """Kill this worker process the first time any task runs (marker file in $RESLAND_TEST_MARKER)."""
    marker = Path(os.environ["RESLAND_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return run_task(task, finder)


def always_die(task, finder):
    os._exit(1)
