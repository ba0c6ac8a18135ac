"""Embedded mode: run jobs' tasks in this process, through the same `execute`."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from orchestrator.retry import RetryPolicy
from workers.runtime import Runtime, execute

log = logging.getLogger("frameq.worker")

# What the database may answer between two tasks ("database is locked", a dropped connection,
# a full connection pool): the next try, after a pause, usually succeeds.
DATABASE_ERRORS = (DBAPIError, PoolTimeout)
# Pauses after database errors in a row: exponential with full jitter, up to 30 s.
DATABASE_BACKOFF = RetryPolicy(base_s=0.5, cap_s=30.0)


# Jobs looked at together: a library's thousands would overflow the database's bound
# parameters in one IN list (SQLite's 32,766, PostgreSQL's 65,535).
RUN_CHUNK = 500


def run_jobs(runtime: Runtime, job_ids: Sequence[str]) -> None:
    """Run ready tasks of these jobs until none is left (every job done or failed), a chunk of
    RUN_CHUNK jobs at a time, highest priority first within it."""
    for start in range(0, len(job_ids), RUN_CHUNK):
        chunk = job_ids[start : start + RUN_CHUNK]
        while (task_id := runtime.repo.next_ready(chunk)) is not None:
            outcome = execute(runtime, task_id, chunk)
            if outcome.retry_in_s is not None:
                time.sleep(outcome.retry_in_s)  # a transient failure: back off, then go on


def reclaim_orphans(runtime: Runtime, job_ids: Sequence[str], *, mine: bool = False) -> int:
    """Make these jobs' tasks held by a process of this machine that is gone (a frameq killed
    by kill -9) ready again now, rather than once their lease runs out; with `mine`, this
    process's own too (it stops: an interrupt). Embedded mode only, where every worker is a
    local process. Returns how many."""
    host = socket.gethostname()
    released = 0
    for task_id, worker in runtime.repo.running_tasks(job_ids):
        name, _, pid = (worker or "").rpartition(":")
        if name != host or not pid.isdigit():
            continue
        if (mine and worker == runtime.name) or not _alive(int(pid)):
            released += runtime.repo.release(task_id, "its worker stopped", worker)
    return released


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Stop(Protocol):
    """A threading or multiprocessing Event."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def serve(runtime: Runtime, stop: Stop, idle_s: float = 0.5) -> None:
    """Run any job's ready tasks until `stop` is set: a worker of `frameq api`'s local pool.
    Several such processes share the database; claiming a task is atomic, so each runs once.

    A database error between tasks (finding, claiming or recording one) does not end the
    worker: it waits and tries again. A task it claimed but could not record is still under
    its lease, and goes to a worker again once that runs out."""
    failures = 0
    while not stop.is_set():
        try:
            task_id = runtime.repo.next_ready()
            outcome = execute(runtime, task_id) if task_id is not None else None
        except DATABASE_ERRORS as exc:
            failures += 1
            delay = max(0.2, DATABASE_BACKOFF.delay_s(failures))
            log.warning(
                "worker %s: database error, again in %.1fs: %s: %s",
                runtime.name,
                delay,
                type(exc).__name__,
                " ".join(str(exc).split())[:500],
            )
            stop.wait(delay)
            continue
        failures = 0
        if outcome is None:
            stop.wait(idle_s)
        elif outcome.retry_in_s is not None:
            stop.wait(outcome.retry_in_s)
