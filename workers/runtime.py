"""Running one task: claim its row, call its handler, record the outcome.

This is the one place for what every task shares (claiming, progress and cancellation,
error handling, timing, logging), whether it runs in-process or under Celery.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property

from sqlalchemy.exc import OperationalError

from orchestrator.db import make_engine, make_sessions, upgrade
from orchestrator.errors import Cancelled, ConfigError, InputError, StoreRefused, TransientError
from orchestrator.formats import Format
from orchestrator.params import JobParams
from orchestrator.recipes import ASSEMBLE_TASK
from orchestrator.repository import Expansion, Repository
from orchestrator.retention import collect_finished
from orchestrator.retry import RetryPolicy
from orchestrator.schema import Job, Task
from orchestrator.settings import Settings
from orchestrator.store import Store, open_store
from orchestrator.tasktypes import task_type

log = logging.getLogger("frameq.worker")

HEARTBEAT_S = 1.0


@dataclass(frozen=True)
class Result:
    """What a handler reports: the size of what it wrote at its task's output key."""

    size_bytes: int = 0
    expansion: Expansion | None = None
    also_stored: list[tuple[str, int]] = field(default_factory=list)  # (key, size) of other objects


@dataclass
class Runtime:
    """What a worker process holds for its whole life."""

    settings: Settings
    repo: Repository
    store: Store
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        settings.home.mkdir(parents=True, exist_ok=True)
        _log_to_file(settings)
        engine = make_engine(settings.database_url)
        if settings.database_url.startswith("sqlite"):
            upgrade(engine)  # embedded mode keeps its own database current
        store = open_store(settings.store_url, settings.home / "scratch")
        return cls(settings, Repository(make_sessions(engine)), store)


def _log_to_file(settings: Settings) -> None:
    """Details (tracebacks of internal errors) go to a log file, not the terminal."""
    root = logging.getLogger("frameq")
    if root.handlers:
        return
    handler = logging.FileHandler(settings.home / "frameq.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


class LeaseKeeper:
    """Renews a running task's lease in the background, about every second, with the frames
    done so far: long steps that report no frames (downloads, assembly) keep their lease, and
    the lease lapses only when the process dies. A refused renewal means the job was cancelled
    or another worker has the task: `lost` is set and the handler stops at its next report."""

    def __init__(self, repo: Repository, task_id: int, worker: str, lease_s: float) -> None:
        self.repo, self.task_id, self.worker, self.lease_s = repo, task_id, worker, lease_s
        self.frames_done = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frameq-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(min(HEARTBEAT_S, self.lease_s / 4)):
            try:
                if not self.repo.heartbeat(self.task_id, self.frames_done, self.lease_s, self.worker):
                    self.lost.set()
                    return
            except Exception as exc:  # the database is away for a moment: the lease has slack
                log.warning("lease renewal of task %s failed: %s", self.task_id, exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class TaskContext:
    runtime: Runtime
    task: Task
    job: Job
    lease: LeaseKeeper

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @cached_property
    def params(self) -> JobParams:
        """The job's parameters, fixed at submit time (crf, matte model, …): every worker agrees."""
        return JobParams.from_json(self.job.params)

    @property
    def output_key(self) -> str:
        """Where this task writes its result, decided when the job was planned."""
        if self.task.output_key is None:
            raise RuntimeError(f"task {self.task.id} ({self.task.name}) has no output key")
        return self.task.output_key

    @property
    def output_format(self) -> Format:
        if self.task.output_format is None:
            raise RuntimeError(f"task {self.task.id} ({self.task.name}) has no output format")
        return Format.parse(self.task.output_format)

    def inputs(self) -> dict[str, list[Task]]:
        """The finished tasks this one reads, by stage, in segment order."""
        return self.runtime.repo.inputs(self.task.id)

    def progress(self, frames_done: int) -> None:
        """Note progress (the lease keeper records it); raises Cancelled once the task must stop."""
        self.lease.frames_done = frames_done
        if self.lease.lost.is_set():
            raise Cancelled(f"task {self.task.id} of job {self.job.id}: cancelled, or taken over")


Handler = Callable[[TaskContext], Result]


@cache
def handler_for(task_name: str) -> Handler:
    """The task type's handler, imported on first use: a worker imports (and loads models for)
    only the task types it runs."""
    module, _, function = task_type(task_name).handler.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Outcome:
    """What running a task led to: tasks that became ready, or a retry after a delay."""

    ready: list[int] = field(default_factory=list)
    retry_in_s: float | None = None


def execute(runtime: Runtime, task_id: int) -> Outcome:
    """Run one task if it can be claimed, and record how it ended."""
    repo = runtime.repo
    task = repo.claim(task_id, runtime.name, runtime.settings.lease_s)
    if task is None:
        return Outcome()  # another worker has it, or it is already finished
    job = repo.get_job(task.job_id)
    started, read_before = time.perf_counter(), runtime.store.bytes_read
    try:
        with LeaseKeeper(repo, task.id, runtime.name, runtime.settings.lease_s) as lease:
            result = handler_for(task.name)(TaskContext(runtime, task, job, lease))
    except Cancelled:
        log.info("task %s (%s) stopped: job %s cancelled", task.id, task.name, job.id)
        return Outcome()
    except (InputError, StoreRefused) as exc:  # bad input, or a store no worker can change
        return _failed(runtime, task, exc)
    except ConfigError as exc:
        if runtime.settings.embedded:  # no other worker could do better: the job fails, and says why
            return _failed(runtime, task, exc)
        # This worker is not set up for the task (model files missing, ...): the task goes back,
        # for a worker that is, and the job fails only once its attempts are used up.
        log.error("worker %s cannot run %s (task %s): %s", runtime.name, task.name, task.id, exc)
        return _transient(runtime, task, ConfigError(f"{runtime.name}: {exc}"))
    except (TransientError, OperationalError) as exc:
        return _transient(runtime, task, exc)
    except Exception as exc:
        log.exception("task %s (%s) of job %s crashed", task.id, task.name, job.id)
        error = f"{job.input_name}: internal error in {task.name}: {type(exc).__name__}: {exc}"
        repo.fail(task.id, error, runtime.name)
        return Outcome()
    log.info("task %s (%s) done in %.2fs", task.id, task.name, time.perf_counter() - started)
    ready = repo.complete(
        task.id,
        result.size_bytes,
        result.expansion,
        worker=runtime.name,
        also_stored=result.also_stored,
        read_bytes=runtime.store.bytes_read - read_before,  # tasks of a process run one at a time
    )
    if task.name == ASSEMBLE_TASK:  # the job is done: what only its stages needed goes
        _collect(runtime, job.id)
    return Outcome(ready)


def _collect(runtime: Runtime, job_id: str) -> None:
    try:
        freed = collect_finished(runtime.repo, runtime.store, job_id)
        log.info("job %s: %s intermediate objects deleted (%s bytes)", job_id, freed.objects, freed.bytes)
    except Exception as exc:  # the job is done all the same; `frameq gc` deletes them later
        log.warning("job %s: intermediates not deleted: %s", job_id, exc)


def _failed(runtime: Runtime, task: Task, exc: Exception) -> Outcome:
    """A permanent failure whose message says it all: the task and its job fail with it."""
    log.info("task %s (%s) failed: %s", task.id, task.name, exc)
    runtime.repo.fail(task.id, str(exc), runtime.name)
    return Outcome()


def _transient(runtime: Runtime, task: Task, exc: Exception) -> Outcome:
    """A passing failure: give the task back to run again later, unless it has run too often."""
    policy = runtime.retry
    if policy.gives_up(task.attempts):
        log.warning("task %s (%s) gave up after %s attempts: %s", task.id, task.name, task.attempts, exc)
        runtime.repo.fail(task.id, f"{task.name} failed {task.attempts} times, last: {exc}", runtime.name)
        return Outcome()
    delay = policy.delay_s(task.attempts)
    log.info("task %s (%s) attempt %s: %s; again in %.1fs", task.id, task.name, task.attempts, exc, delay)
    if not runtime.repo.release(task.id, str(exc), runtime.name):
        return Outcome()  # the task was cancelled or taken over meanwhile
    return Outcome(retry_in_s=delay)
