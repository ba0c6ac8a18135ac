"""The one owner of job and task SQL. Each public method is one transaction.

The database row, not a broker message, says what is done: a worker claims a task with a
conditional update before it works, and completing it makes its dependents ready in the same
transaction, so a duplicate delivery finds the task already claimed or done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, func, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import JobNotFound
from orchestrator.planning import TaskSpec
from orchestrator.recipes import PLAN_STAGE, PLAN_TASK
from orchestrator.routing import queue_for
from orchestrator.schema import (
    FINISHED_JOB_STATES,
    Artifact,
    Job,
    JobState,
    Task,
    TaskDependency,
    TaskState,
    utcnow,
)

LEASE_S = 300.0


def _held_by(worker: str | None) -> Any:
    """Only the current lease holder may report on a task (when the caller names itself)."""
    return true() if worker is None else Task.worker == worker


def _changed(s: Session, statement: Update) -> int:
    """Run an UPDATE and return how many rows it changed (the compare-and-set result)."""
    return cast(CursorResult[Any], s.execute(statement)).rowcount


@dataclass(frozen=True)
class Expansion:
    """What a plan task learned: the media facts and the tasks to add to its job."""

    kind: str
    media: dict[str, Any]
    specs: list[TaskSpec] = field(default_factory=list)


@dataclass(frozen=True)
class JobView:
    """A job with its progress summed over its tasks."""

    job: Job
    frames_done: int
    tasks_by_state: dict[str, int]
    current_stage: str | None


@dataclass(frozen=True)
class ReadyTask:
    """What a dispatcher needs to send a task: its id, task type and queue."""

    id: int
    name: str
    queue: str
    priority: int
    dispatched_at: datetime | None = None


class Repository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- jobs ---------------------------------------------------------------------------

    def create_job(
        self,
        *,
        job_id: str,
        recipe: str,
        input_name: str,
        source_key: str,
        params: dict[str, Any],
        priority: int = 0,
        batch_id: str | None = None,
    ) -> Job:
        """Record a job and its first task (plan). The plan waits until `source_stored` says
        the input is in the store, so no worker looks for it earlier."""
        with self.sessions.begin() as s:
            job = Job(
                id=job_id,
                batch_id=batch_id,
                recipe=recipe,
                input_name=input_name,
                source_key=source_key,
                params=params,
                priority=priority,
                state=JobState.QUEUED,
            )
            s.add(job)
            s.add(
                Task(
                    job_id=job_id,
                    stage=PLAN_STAGE,
                    name=PLAN_TASK,
                    queue=queue_for(PLAN_TASK),
                    state=TaskState.WAITING,
                )
            )
        return job

    def source_stored(self, job_id: str) -> list[int]:
        """The input is in the store: the job's plan task may run. Returns its id."""
        with self.sessions.begin() as s:
            return list(
                s.scalars(
                    update(Task)
                    .where(Task.job_id == job_id, Task.stage == PLAN_STAGE, Task.state == TaskState.WAITING)
                    .values(state=TaskState.READY)
                    .returning(Task.id)
                ).all()
            )

    def get_job(self, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            return job

    def view(self, job_id: str) -> JobView:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            done = s.scalar(select(func.coalesce(func.sum(Task.frames_done), 0)).where(Task.job_id == job_id))
            counts = dict(
                s.execute(
                    select(Task.state, func.count()).where(Task.job_id == job_id).group_by(Task.state)
                ).all()
            )
            current = s.scalar(
                select(Task.stage)
                .where(Task.job_id == job_id, Task.state == TaskState.RUNNING)
                .order_by(Task.id)
                .limit(1)
            )
            return JobView(job, int(done or 0), {str(k): int(v) for k, v in counts.items()}, current)

    def list_jobs(self, limit: int = 50) -> list[JobView]:
        with self.sessions() as s:
            ids = s.scalars(select(Job.id).order_by(Job.created_at.desc()).limit(limit)).all()
        return [self.view(job_id) for job_id in ids]

    def tasks(self, job_id: str) -> list[Task]:
        with self.sessions() as s:
            return list(s.scalars(select(Task).where(Task.job_id == job_id).order_by(Task.id)).all())

    def fail_job(self, job_id: str, error: str) -> None:
        with self.sessions.begin() as s:
            self._finish_job(s, job_id, JobState.FAILED, error)

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job that has not finished; running tasks stop at their next batch."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            if job.state in FINISHED_JOB_STATES:
                return False
            self._finish_job(s, job_id, JobState.CANCELLED, "cancelled")
            return True

    # -- tasks --------------------------------------------------------------------------

    def next_ready(self, job_ids: Sequence[str] | None = None) -> int | None:
        """The ready task to run next: highest job priority first, then oldest."""
        with self.sessions() as s:
            query = (
                select(Task.id)
                .join(Job, Job.id == Task.job_id)
                .where(Task.state == TaskState.READY)
                .order_by(Job.priority.desc(), Task.id)
                .limit(1)
            )
            if job_ids is not None:
                query = query.where(Task.job_id.in_(job_ids))
            return s.scalar(query)

    def describe(self, task_ids: Sequence[int]) -> list[ReadyTask]:
        if not task_ids:
            return []
        with self.sessions() as s:
            rows = s.execute(
                select(Task.id, Task.name, Task.queue, Job.priority, Task.dispatched_at)
                .join(Job, Job.id == Task.job_id)
                .where(Task.id.in_(task_ids))
                .order_by(Task.id)
            ).all()
        return [ReadyTask(*row) for row in rows]

    def mark_dispatched(self, task_ids: Sequence[int]) -> None:
        if task_ids:
            with self.sessions.begin() as s:
                s.execute(update(Task).where(Task.id.in_(task_ids)).values(dispatched_at=utcnow()))

    def release(self, task_id: int, error: str, worker: str | None = None) -> bool:
        """Give a running task back after a transient failure: ready to run again."""
        with self.sessions.begin() as s:
            return bool(
                _changed(
                    s,
                    update(Task)
                    .where(Task.id == task_id, Task.state == TaskState.RUNNING, _held_by(worker))
                    .values(state=TaskState.READY, error=error, lease_until=None, worker=None),
                )
            )

    def reap_expired(self, max_attempts: int) -> tuple[list[int], list[int]]:
        """Running tasks whose lease ran out (their worker died): ready again, or failed when
        they have used up their attempts. Returns (ready ids, failed ids)."""
        now = utcnow()
        with self.sessions() as s:
            expired = s.execute(
                select(Task.id, Task.attempts).where(Task.state == TaskState.RUNNING, Task.lease_until < now)
            ).all()
        ready, failed = [], []
        for task_id, attempts in expired:
            if attempts >= max_attempts:
                with self.sessions.begin() as s:
                    if _changed(s, self._expired(task_id, now).values(state=TaskState.FAILED)):
                        task = s.get_one(Task, task_id)
                        error = f"{task.name} lost its worker {attempts} times"
                        task.error = error
                        self._finish_job(s, task.job_id, JobState.FAILED, error)
                        failed.append(task_id)
            else:
                with self.sessions.begin() as s:
                    values = {"state": TaskState.READY, "lease_until": None, "error": "worker lost"}
                    if _changed(s, self._expired(task_id, now).values(**values)):
                        ready.append(task_id)
        return ready, failed

    @staticmethod
    def _expired(task_id: int, now: Any) -> Update:
        return update(Task).where(Task.id == task_id, Task.state == TaskState.RUNNING, Task.lease_until < now)

    def undispatched(self, older_than_s: float) -> list[int]:
        """Ready tasks whose last message is old enough to have been lost (broker restart)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(Task.id)
                    .where(Task.state == TaskState.READY)
                    .where((Task.dispatched_at.is_(None)) | (Task.dispatched_at < cutoff))
                    .order_by(Task.id)
                ).all()
            )

    def claim(self, task_id: int, worker: str, lease_s: float = LEASE_S) -> Task | None:
        """Take a ready task for this worker, or None if another has it or it is finished."""
        now = utcnow()
        with self.sessions.begin() as s:
            claimed = _changed(
                s,
                update(Task)
                .where(Task.id == task_id, Task.state == TaskState.READY)
                .values(
                    state=TaskState.RUNNING,
                    worker=worker,
                    attempts=Task.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_s),
                    started_at=now,
                    frames_done=0,
                    error=None,
                ),
            )
            if not claimed:
                return None
            task = s.get_one(Task, task_id)
            s.execute(
                update(Job)
                .where(Job.id == task.job_id, Job.state == JobState.QUEUED)
                .values(state=JobState.RUNNING, started_at=now)
            )
            return task

    def heartbeat(
        self, task_id: int, frames_done: int, lease_s: float = LEASE_S, worker: str | None = None
    ) -> bool:
        """Record progress and extend the lease. False when the task must stop: its job was
        cancelled, or its lease ran out and another worker holds the task now."""
        with self.sessions.begin() as s:
            return bool(
                _changed(
                    s,
                    update(Task)
                    .where(Task.id == task_id, Task.state == TaskState.RUNNING, _held_by(worker))
                    .values(
                        frames_done=frames_done,
                        lease_until=utcnow() + timedelta(seconds=lease_s),
                    ),
                )
            )

    def inputs(self, task_id: int) -> dict[str, list[Task]]:
        """The done tasks this task needs, by stage, in segment order."""
        with self.sessions() as s:
            needed = s.scalars(
                select(Task)
                .join(TaskDependency, TaskDependency.needs_id == Task.id)
                .where(TaskDependency.task_id == task_id)
                .order_by(Task.stage, Task.segment)
            ).all()
        by_stage: dict[str, list[Task]] = {}
        for task in needed:
            by_stage.setdefault(task.stage, []).append(task)
        return by_stage

    def complete(
        self,
        task_id: int,
        output_key: str | None,
        size_bytes: int = 0,
        expansion: Expansion | None = None,
        worker: str | None = None,
        also_stored: Sequence[tuple[str, int]] = (),
    ) -> list[int]:
        """Mark a running task done and return the ids of the tasks that became ready.

        The same transaction records the artifact (and `also_stored`: other objects the task
        wrote, as (key, size)), adds the tasks a plan expands to, and finishes the job when
        this was its last task.
        """
        now = utcnow()
        with self.sessions.begin() as s:
            task = s.get_one(Task, task_id)
            done = _changed(
                s,
                update(Task)
                .where(Task.id == task_id, Task.state == TaskState.RUNNING, _held_by(worker))
                .values(
                    state=TaskState.DONE,
                    output_key=output_key,
                    frames_done=Task.frames_total,
                    finished_at=now,
                    lease_until=None,
                ),
            )
            if not done:
                return []
            stored = [(output_key, size_bytes)] if output_key is not None else []
            for key, size in [*stored, *also_stored]:
                self._record_artifact(s, task, key, size)
            ready = self._expand(s, task.job_id, expansion) if expansion else []
            ready += list(
                s.scalars(
                    update(Task)
                    .where(
                        Task.id.in_(select(TaskDependency.task_id).where(TaskDependency.needs_id == task_id))
                    )
                    .values(deps_left=Task.deps_left - 1)
                    .returning(Task.id)
                ).all()
            )
            newly_ready = list(
                s.scalars(
                    update(Task)
                    .where(
                        Task.id.in_(ready),
                        Task.deps_left == 0,
                        Task.state == TaskState.WAITING,
                    )
                    .values(state=TaskState.READY)
                    .returning(Task.id)
                ).all()
            )
            left = s.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.job_id == task.job_id, Task.state != TaskState.DONE)
            )
            if left == 0:
                s.execute(
                    update(Job)
                    .where(Job.id == task.job_id, Job.state == JobState.RUNNING)
                    .values(state=JobState.DONE, output_key=output_key, finished_at=now)
                )
            return sorted(newly_ready)

    def fail(self, task_id: int, error: str, worker: str | None = None) -> bool:
        """A permanent failure: the task and its job fail with this reason (only while the
        task runs, and only by its lease holder when the caller names itself)."""
        with self.sessions.begin() as s:
            failed = _changed(
                s,
                update(Task)
                .where(Task.id == task_id, Task.state == TaskState.RUNNING, _held_by(worker))
                .values(state=TaskState.FAILED, error=error, finished_at=utcnow(), lease_until=None),
            )
            if failed:
                self._finish_job(s, s.get_one(Task, task_id).job_id, JobState.FAILED, error)
            return bool(failed)

    # -- helpers ------------------------------------------------------------------------

    def _record_artifact(self, s: Session, task: Task, key: str, size_bytes: int) -> None:
        artifact = s.scalar(select(Artifact).where(Artifact.key == key))
        if artifact is None:
            s.add(Artifact(job_id=task.job_id, task_id=task.id, key=key, size_bytes=size_bytes))
        else:  # a rerun overwrote the same object
            artifact.size_bytes = size_bytes
            artifact.created_at = utcnow()

    def _expand(self, s: Session, job_id: str, expansion: Expansion) -> list[int]:
        """Insert the planned tasks; return all their ids (readiness is settled by the caller)."""
        job = s.get_one(Job, job_id)
        job.kind = expansion.kind
        job.media = expansion.media
        job.frames_total = sum(spec.frames_total for spec in expansion.specs)
        created: dict[tuple[str, int | None], Task] = {}
        for spec in expansion.specs:
            task = Task(
                job_id=job_id,
                stage=spec.stage,
                name=spec.name,
                queue=spec.queue,
                segment=spec.segment,
                params=spec.params,
                frames_total=spec.frames_total,
                deps_left=len(spec.needs),
                state=TaskState.WAITING,
            )
            s.add(task)
            created[(spec.stage, spec.segment)] = task
        s.flush()
        for spec in expansion.specs:
            task = created[(spec.stage, spec.segment)]
            for need in spec.needs:
                s.add(TaskDependency(task_id=task.id, needs_id=created[need].id))
        s.flush()
        return [task.id for task in created.values()]

    def _finish_job(self, s: Session, job_id: str, state: JobState, error: str) -> None:
        now = utcnow()
        s.execute(
            update(Job)
            .where(Job.id == job_id, Job.state.not_in(FINISHED_JOB_STATES))
            .values(state=state, error=error, finished_at=now)
        )
        s.execute(
            update(Task)
            .where(
                Task.job_id == job_id,
                Task.state.in_((TaskState.WAITING, TaskState.READY, TaskState.RUNNING)),
            )
            .values(state=TaskState.CANCELLED, finished_at=now, lease_until=None)
        )
