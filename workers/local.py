"""Embedded mode: run jobs' tasks in this process, through the same `execute`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from workers.runtime import Runtime, execute


def run_jobs(runtime: Runtime, job_ids: Sequence[str]) -> None:
    """Run ready tasks of these jobs until none is left (every job done or failed)."""
    while (task_id := runtime.repo.next_ready(job_ids)) is not None:
        outcome = execute(runtime, task_id)
        if outcome.retry_in_s is not None:
            time.sleep(outcome.retry_in_s)  # a transient failure: back off, then go on


class Stop(Protocol):
    """A threading or multiprocessing Event."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def serve(runtime: Runtime, stop: Stop, idle_s: float = 0.5) -> None:
    """Run any job's ready tasks until `stop` is set: a worker of `frameq api`'s local pool.
    Several such processes share the database; claiming a task is atomic, so each runs once."""
    while not stop.is_set():
        task_id = runtime.repo.next_ready()
        if task_id is None:
            stop.wait(idle_s)
            continue
        outcome = execute(runtime, task_id)
        if outcome.retry_in_s is not None:
            stop.wait(outcome.retry_in_s)
