"""Embedded mode: run a set of jobs' tasks in this process, through the same `execute`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from workers.runtime import Runtime, execute


def run_jobs(runtime: Runtime, job_ids: Sequence[str]) -> None:
    """Run ready tasks of these jobs until none is left (every job done or failed)."""
    while (task_id := runtime.repo.next_ready(job_ids)) is not None:
        outcome = execute(runtime, task_id)
        if outcome.retry_in_s is not None:
            time.sleep(outcome.retry_in_s)  # a transient failure: back off, then go on
