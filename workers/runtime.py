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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, cached_property
from typing import Any

from sqlalchemy.exc import OperationalError

from orchestrator.db import make_engine, make_sessions, upgrade
from orchestrator.errors import Cancelled, ConfigError, InputError, StoreRefused, TransientError
from orchestrator.formats import Format
from orchestrator.params import JobParams
from orchestrator.recipes import IMAGE_TASK, TERMINAL_TASKS
from orchestrator.repository import Expansion, ImageDone, Repository
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


@dataclass
class TaskLease:
    """One task's side of a lease keeper: the frames it has done, and whether it must stop."""

    frames_done: int = 0
    lost: threading.Event = field(default_factory=threading.Event)


class LeaseKeeper:
    """Renews running tasks' leases in the background, about every second (one task's with its
    frames done so far): long steps that report no frames (downloads, assembly) keep their
    lease, and a lease lapses only when the process dies. A refused renewal means the job was
    cancelled or another worker has the task: its `lost` is set and its handler stops at its next
    report. A group of images shares one keeper, and one statement a renewal."""

    def __init__(self, repo: Repository, task_ids: list[int], worker: str, lease_s: float) -> None:
        self.repo, self.worker, self.lease_s = repo, worker, lease_s
        self.leases = {task_id: TaskLease() for task_id in task_ids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frameq-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(min(HEARTBEAT_S, self.lease_s / 4)):
            try:
                if not self._renew():
                    return
            except Exception as exc:  # the database is away for a moment: the lease has slack
                log.warning("lease renewal of task(s) %s failed: %s", sorted(self.leases), exc)

    def _renew(self) -> bool:
        """Renew the leases still held; False once none is."""
        held = [task_id for task_id, lease in self.leases.items() if not lease.lost.is_set()]
        if len(self.leases) == 1:
            (task_id, lease), *_ = self.leases.items()
            renewed = self.repo.heartbeat(task_id, lease.frames_done, self.lease_s, self.worker)
            kept = {task_id} if renewed else set()
        else:
            kept = self.repo.heartbeat_many(held, self.lease_s, self.worker)
        for task_id in set(held) - kept:
            self.leases[task_id].lost.set()
        return bool(kept)

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
    lease: TaskLease

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
def resolve(handler: str) -> Callable[..., Any]:
    """A "module:function" of the task-type registry, imported on first use: a worker imports
    (and loads models for) only the task types it runs."""
    module, _, function = handler.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


@cache
def handler_for(task_name: str) -> Handler:
    """What runs a task of this type: a per-frame stage's handler inside the frame loop."""
    kind = task_type(task_name)
    handler = resolve(kind.handler)
    if not kind.per_frame:
        return handler  # type: ignore[no-any-return]
    from workers.frames import run_stage  # the frame loop imports this module

    return lambda ctx: run_stage(ctx, handler)


@dataclass(frozen=True)
class Outcome:
    """What running a task led to: tasks that became ready, or a retry after a delay."""

    ready: list[int] = field(default_factory=list)
    retry_in_s: float | None = None


# Images claimed, run and recorded together: a group shares one claim, one lease and one
# completion. A group holds jobs of one priority only, so a job of another priority never waits
# for one to end; one submitted meanwhile starts once this worker's group is done.
IMAGE_GROUP = 16
# A group's completion, tried again this often when the database refuses it for a moment.
COMPLETE_TRIES = 3


def execute(runtime: Runtime, task_id: int, job_ids: Sequence[str] | None = None) -> Outcome:
    """Run one task if it can be claimed, and record how it ended. An image task takes more
    ready image tasks (of `job_ids`, if given) with it, up to IMAGE_GROUP."""
    repo = runtime.repo
    task = repo.claim(task_id, runtime.name, runtime.settings.lease_s)
    if task is None:
        return Outcome()  # another worker has it, or it is already finished
    if task.name == IMAGE_TASK:
        priority = repo.get_job(task.job_id).priority
        more = (
            []
            if task.attempts > 1
            else repo.claim_images(runtime.name, runtime.settings.lease_s, IMAGE_GROUP - 1, priority, job_ids)
        )
        return _execute_images(runtime, [task, *more])
    job = repo.get_job(task.job_id)
    started, read_before = time.perf_counter(), runtime.store.bytes_read
    with LeaseKeeper(repo, [task.id], runtime.name, runtime.settings.lease_s) as keeper:
        result = _attempt(runtime, task, job, keeper.leases[task.id])
    if isinstance(result, Outcome):
        return result
    log.info("task %s (%s) done in %.2fs", task.id, task.name, time.perf_counter() - started)
    ready = repo.complete(
        task.id,
        result.size_bytes,
        result.expansion,
        worker=runtime.name,
        also_stored=result.also_stored,
        read_bytes=runtime.store.bytes_read - read_before,  # tasks of a process run one at a time
    )
    if task.name in TERMINAL_TASKS:  # the job is done: what only its stages needed goes
        _collect(runtime, job.id)
    return Outcome(ready)


def _execute_images(runtime: Runtime, tasks: list[Task]) -> Outcome:
    """A group of image tasks, one after the other under one lease keeper; the finished ones
    recorded in one transaction at the end, however the group ends (a failed one is recorded
    as it fails). A passing error stops the group: it would likely meet the next ones too, so
    they go back untried, their attempts not counted."""
    repo = runtime.repo
    jobs = repo.get_jobs([t.job_id for t in tasks])
    claimed_at, claimed = tasks[0].started_at, time.perf_counter()  # the database's clock, ours

    def at() -> datetime | None:
        return claimed_at + timedelta(seconds=time.perf_counter() - claimed) if claimed_at else None

    done: list[ImageDone] = []
    untried = [t.id for t in tasks]
    retry_in_s = None
    try:
        with LeaseKeeper(repo, [t.id for t in tasks], runtime.name, runtime.settings.lease_s) as keeper:
            for task in tasks:
                untried.remove(task.id)
                lease = keeper.leases[task.id]
                if lease.lost.is_set():
                    continue  # cancelled while the group ran
                began = at()
                result = _attempt(runtime, task, jobs[task.job_id], lease)
                if isinstance(result, Outcome):
                    if result.retry_in_s is not None:  # given back: the rest go back untried
                        retry_in_s = result.retry_in_s if task is tasks[0] else None
                        break
                    continue
                media = result.expansion.media if result.expansion else {}
                done.append(ImageDone(task.id, result.size_bytes, media, result.also_stored, began, at()))
    finally:  # an interrupt, too, keeps what is finished
        _complete_images(runtime, done)
        repo.give_back_untried(untried, runtime.name)
    log.info("%s image task(s) done in %.2fs", len(done), time.perf_counter() - claimed)
    return Outcome(retry_in_s=retry_in_s)


def _complete_images(runtime: Runtime, done: list[ImageDone]) -> None:
    """Record a group's finished images; a database that refuses for a moment is asked again
    (the completion only takes tasks this worker still runs: asking twice is harmless)."""
    for attempt in range(1, COMPLETE_TRIES + 1):
        try:
            runtime.repo.complete_images(done, runtime.name)
            return
        except OperationalError as exc:
            if attempt == COMPLETE_TRIES:
                raise
            log.warning("recording %s image task(s) failed, again: %s", len(done), exc)
            time.sleep(0.5 * attempt)


def _attempt(runtime: Runtime, task: Task, job: Job, lease: TaskLease) -> Result | Outcome:
    """The task's handler; a failure is recorded here, and what it leads to comes back."""
    try:
        return handler_for(task.name)(TaskContext(runtime, task, job, lease))
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
        runtime.repo.fail(task.id, error, runtime.name)
        return Outcome()


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
