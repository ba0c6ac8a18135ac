"""The one owner of job and task SQL. Each public method is one transaction.

The database row, not a broker message, says what is done: a worker claims a task with a
conditional update before it works, and completing it makes its dependents ready in the same
transaction, so a duplicate delivery finds the task already claimed or done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    CursorResult,
    DateTime,
    Update,
    and_,
    bindparam,
    case,
    delete,
    extract,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.batches import Item, Known
from orchestrator.clock import db_now
from orchestrator.errors import FrameqError, JobNotFound, LimitReached
from orchestrator.planning import TaskSpec
from orchestrator.recipes import ENTRY_STAGES, IMAGE_STAGE, IMAGE_TASK, PLAN_STAGE, PLAN_TASK, TERMINAL_TASKS
from orchestrator.schema import (
    FINISHED_JOB_STATES,
    Artifact,
    Batch,
    BatchItem,
    Job,
    JobState,
    Task,
    TaskDependency,
    TaskState,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from orchestrator.tasktypes import queue_for

LEASE_S = 300.0
KEYS_PER_QUERY = 500  # values bound in one IN list or insert: well within every database's limit
JOBS_PER_STATEMENT = 10_000  # job ids in one progress statement (SQLite binds 32,766 at most)
IDEMPOTENCY_CONSTRAINT = "uq_jobs_tenant_idempotency"  # schema.Job's (tenant, idempotency_key)


class TenantGone(FrameqError):
    """A job was submitted for a tenant that has no row (any more): its key opens nothing."""


class IdempotencyKeyTaken(FrameqError):
    """Another job of the tenant holds this Idempotency-Key: the same request, sent twice at
    once, and the other one recorded its job first."""


def check_limits(
    tenant: str, active: int, frames: int, max_active_jobs: int | None, max_queued_frames: int | None
) -> None:
    """LimitReached when a tenant with this load (unfinished jobs, their frames) may not have
    one more job; a limit of None is no limit."""
    if max_active_jobs is not None and active >= max_active_jobs:
        raise LimitReached(f"tenant {tenant} has {active} jobs under way (limit {max_active_jobs})")
    if max_queued_frames is not None and frames >= max_queued_frames:
        raise LimitReached(f"tenant {tenant} has {frames} frames queued (limit {max_queued_frames})")


def _held_by(worker: str | None) -> Any:
    """Only the current lease holder may report on a task (when the caller names itself)."""
    return true() if worker is None else Task.worker == worker


def _changed(s: Session, statement: Update) -> int:
    """Run an UPDATE and return how many rows it changed (the compare-and-set result)."""
    return cast(CursorResult[Any], s.execute(statement)).rowcount


@dataclass(frozen=True)
class ImageDone:
    """A finished image task of a group: what it wrote and what its image is."""

    task_id: int
    size_bytes: int
    media: dict[str, Any]
    also_stored: list[tuple[str, int]] = field(default_factory=list)
    # When its own work began and ended (not the group's), on the database's clock
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class BatchJob:
    """A new job of a library batch, its input already in the store (or refused: `error`)."""

    job_id: str
    recipe: str
    input_name: str
    source_key: str
    source_size: int
    params: dict[str, Any]
    item_key: str
    priority: int
    image_output_key: str | None  # for an image: where its output goes
    error: str | None = None


@dataclass(frozen=True)
class BatchRow:
    """An item of a batch with its job, as `frameq batch status` and the manifest show it."""

    path: str
    dest: str
    sha256: str
    written_size: int | None
    job_id: str | None
    state: str | None
    error: str | None
    kind: str | None
    frames: int | None
    output_key: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Expansion:
    """What a plan task learned: the media facts and the tasks to add to its job."""

    kind: str
    media: dict[str, Any]
    frames: int  # the source's: a job of three stages over 120 frames is 120 frames
    specs: list[TaskSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Origin:
    """Who submitted a job over HTTP: its tenant, the webhook to call when it ends, and the
    Idempotency-Key it came with (and a hash of what it was sent with)."""

    tenant: str
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    # The tenant's limits, checked in the transaction that records the job (None: unlimited).
    max_active_jobs: int | None = None
    max_queued_frames: int | None = None


@dataclass(frozen=True)
class JobView:
    """A job with its progress summed over its tasks."""

    job: Job
    frames_done: int
    tasks_by_state: dict[str, int]
    current_stage: str | None


@dataclass(frozen=True)
class StageView:
    """One stage of a job: its tasks' frames and states, and when it ran."""

    stage: str
    frames_done: int
    frames_total: int
    tasks_by_state: dict[str, int]
    started_at: datetime | None
    finished_at: datetime | None  # once every task of the stage is done


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing shows: a tenant's, by state, recipe or batch, older than a cursor."""

    tenant: str | None = None
    state: str | None = None
    recipe: str | None = None
    batch_id: str | None = None
    before: tuple[datetime, str] | None = None  # (created_at, id) of the last job of the page before


@dataclass(frozen=True)
class Progress:
    """Totals over a set of jobs (a directory's), for a progress bar."""

    jobs: int  # of those asked about, the ones that exist
    jobs_finished: int
    frames_total: int
    frames_done: int
    current_stage: str | None  # of the oldest running task


@dataclass(frozen=True)
class BatchSummary:
    """A tenant's jobs of one batch: how many in each state, and their frames."""

    jobs_by_state: dict[str, int]
    frames_total: int
    frames_done: int

    @property
    def jobs(self) -> int:
        return sum(self.jobs_by_state.values())

    @property
    def finished(self) -> bool:
        return all(state in FINISHED_JOB_STATES for state in self.jobs_by_state)


@dataclass(frozen=True)
class ReadyTask:
    """What a dispatcher needs to send a task: its id, task type and queue."""

    id: int
    name: str
    queue: str
    priority: int
    dispatched_at: datetime | None = None


def frames_done(frames_total: int, work_done: int, work_total: int) -> int:
    """A job's frames done, from the frames its tasks have done over all its stages: 120 frames
    through matte and composite are 240 frames of work, and 120 of them done is 60 frames."""
    return frames_total * work_done // work_total if work_total else 0


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
        origin: Origin | None = None,
        image_output_key: str | None = None,
    ) -> Job:
        """Record a job and its first task: plan, or for an image (`image_output_key`: where
        its output goes) the one task that does all. It waits until `source_stored` says the
        input is in the store, so no worker looks for it earlier. A job of a tenant at its
        limits is not recorded: LimitReached; nor one of a tenant without a row: TenantGone;
        nor one whose Idempotency-Key another job of the tenant holds: IdempotencyKeyTaken."""
        try:
            with self.sessions.begin() as s:
                if origin is not None:
                    self._check_limits(s, origin)
                job = Job(
                    tenant=origin.tenant if origin else None,
                    webhook_url=origin.webhook_url if origin else None,
                    idempotency_key=origin.idempotency_key if origin else None,
                    request_hash=origin.request_hash if origin else None,
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
                s.add(_entry_task(job, image_output_key))
            return job
        except IntegrityError as exc:
            if origin is not None and origin.idempotency_key is not None and _idempotency_clash(exc):
                raise IdempotencyKeyTaken(f"Idempotency-Key {origin.idempotency_key!r} is taken") from exc
            raise

    def source_stored(self, job_id: str) -> list[int]:
        """The input is in the store: the job's plan task may run. Returns its id."""
        with self.sessions.begin() as s:
            return list(
                s.scalars(
                    update(Task)
                    .where(
                        Task.job_id == job_id, Task.stage.in_(ENTRY_STAGES), Task.state == TaskState.WAITING
                    )
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
            work_done, work_total = s.execute(
                select(
                    func.coalesce(func.sum(Task.frames_done), 0),
                    func.coalesce(func.sum(Task.frames_total), 0),
                ).where(Task.job_id == job_id)
            ).one()
            done = frames_done(job.frames_total, int(work_done), int(work_total))
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

    def list_jobs(self, limit: int = 50, where: JobFilter | None = None) -> list[JobView]:
        """The newest jobs (of those `where` picks), each as `view` shows it, in three statements
        however many they are. Newest first, ties by id, so a (created_at, id) cursor pages."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if where is not None:
            for column, value in (
                (Job.tenant, where.tenant),
                (Job.state, where.state),
                (Job.recipe, where.recipe),
                (Job.batch_id, where.batch_id),
            ):
                if value is not None:
                    query = query.where(column == value)
            if where.before is not None:
                created, job_id = where.before
                query = query.where(
                    (Job.created_at < created) | ((Job.created_at == created) & (Job.id < job_id))
                )
        with self.sessions() as s:
            jobs = list(s.scalars(query).all())
            ids = [job.id for job in jobs]
            counts: dict[str, dict[str, int]] = {job_id: {} for job_id in ids}
            work: dict[str, tuple[int, int]] = {}  # job -> (frames done, frames) over its tasks
            for job_id, state, n, done, total in s.execute(
                select(
                    Task.job_id,
                    Task.state,
                    func.count(),
                    func.coalesce(func.sum(Task.frames_done), 0),
                    func.coalesce(func.sum(Task.frames_total), 0),
                )
                .where(Task.job_id.in_(ids))
                .group_by(Task.job_id, Task.state)
            ):
                counts[job_id][str(state)] = int(n)
                so_far = work.get(job_id, (0, 0))
                work[job_id] = (so_far[0] + int(done), so_far[1] + int(total))
            current: dict[str, str] = {}
            for job_id, stage in s.execute(
                select(Task.job_id, Task.stage)
                .where(Task.job_id.in_(ids), Task.state == TaskState.RUNNING)
                .order_by(Task.id)
            ):
                current.setdefault(job_id, stage)  # the oldest running task's, as in `view`
        return [
            JobView(
                job,
                frames_done(job.frames_total, *work.get(job.id, (0, 0))),
                counts[job.id],
                current.get(job.id),
            )
            for job in jobs
        ]

    def stages(self, job_id: str) -> list[StageView]:
        """The job's stages in the order their first task was made (plan first, assemble last)."""
        with self.sessions() as s:
            rows = s.execute(
                select(
                    Task.stage,
                    Task.state,
                    func.count(),
                    func.coalesce(func.sum(Task.frames_done), 0),
                    func.coalesce(func.sum(Task.frames_total), 0),
                    func.min(Task.started_at),
                    func.max(Task.finished_at),
                    func.min(Task.id),
                )
                .where(Task.job_id == job_id)
                .group_by(Task.stage, Task.state)
            ).all()
        by_stage: dict[str, dict[str, Any]] = {}
        for stage, state, n, done, total, started, finished, first in rows:
            seen = by_stage.setdefault(
                stage,
                {"first": first, "done": 0, "total": 0, "states": {}, "started": None, "finished": None},
            )
            seen["first"] = min(seen["first"], first)
            seen["done"] += int(done)
            seen["total"] += int(total)
            seen["states"][str(state)] = int(n)
            if started is not None and (seen["started"] is None or started < seen["started"]):
                seen["started"] = started
            if finished is not None and (seen["finished"] is None or finished > seen["finished"]):
                seen["finished"] = finished
        views = []
        for stage, seen in sorted(by_stage.items(), key=lambda item: item[1]["first"]):
            all_done = set(seen["states"]) == {TaskState.DONE}
            views.append(
                StageView(
                    stage,
                    seen["done"],
                    seen["total"],
                    seen["states"],
                    seen["started"],
                    seen["finished"] if all_done else None,
                )
            )
        return views

    def find_idempotent(self, tenant: str, key: str) -> Job | None:
        """The tenant's job submitted with this Idempotency-Key, if any."""
        with self.sessions() as s:
            return s.scalar(select(Job).where(Job.tenant == tenant, Job.idempotency_key == key))

    def tenant_load(self, tenant: str) -> tuple[int, int]:
        """What the tenant has under way: unfinished jobs, and their frames (of the sources,
        known once planned)."""
        with self.sessions() as s:
            return self._tenant_load(s, tenant)

    @staticmethod
    def _tenant_load(s: Session, tenant: str) -> tuple[int, int]:
        active, frames = s.execute(
            select(func.count(), func.coalesce(func.sum(Job.frames_total), 0)).where(
                Job.tenant == tenant, Job.state.not_in(FINISHED_JOB_STATES)
            )
        ).one()
        return int(active or 0), int(frames or 0)

    def _check_limits(self, s: Session, origin: Origin) -> None:
        """Count the tenant's load and refuse at its limits, one submission at a time: the
        first statement writes the tenant's row, which holds its row lock (PostgreSQL) or the
        database's write lock (SQLite) until this transaction ends, so two submissions cannot
        both see room for one more job. No row written: the tenant is gone (its job would
        fail the foreign key), and no lock was taken either."""
        written = s.execute(
            update(Tenant).where(Tenant.name == origin.tenant).values(name=Tenant.name).returning(Tenant.name)
        ).all()
        if not written:
            raise TenantGone(f"no tenant {origin.tenant!r}")
        active, frames = self._tenant_load(s, origin.tenant)
        check_limits(origin.tenant, active, frames, origin.max_active_jobs, origin.max_queued_frames)

    def progress(self, job_ids: Sequence[str]) -> Progress:
        """Totals over these jobs in one statement (one per JOBS_PER_STATEMENT): a bar over a
        directory of thousands of files asks several times a second, and a few queries per job
        would load the database."""
        step = JOBS_PER_STATEMENT
        parts = [self._progress(job_ids[i : i + step]) for i in range(0, len(job_ids), step)]
        return Progress(
            sum(p.jobs for p in parts),
            sum(p.jobs_finished for p in parts),
            sum(p.frames_total for p in parts),
            sum(p.frames_done for p in parts),
            next((p.current_stage for p in parts if p.current_stage), None),
        )

    def _progress(self, job_ids: Sequence[str]) -> Progress:
        picked = select(Job.id, Job.frames_total, Job.finished_at).where(Job.id.in_(job_ids)).cte("picked")
        work = (
            select(
                Task.job_id,
                func.sum(Task.frames_done).label("done"),
                func.sum(Task.frames_total).label("total"),
            )
            .join(picked, picked.c.id == Task.job_id)
            .group_by(Task.job_id)
            .subquery("work")
        )
        # frames_done() of each job, in SQL: its frames scaled by the share of its work done.
        done = case((work.c.total > 0, picked.c.frames_total * work.c.done // work.c.total), else_=0)
        stage = (
            select(Task.stage)
            .join(picked, picked.c.id == Task.job_id)
            .where(Task.state == TaskState.RUNNING)
            .order_by(Task.id)
            .limit(1)
            .scalar_subquery()
        )
        with self.sessions() as s:
            jobs, finished, total, frames, current = s.execute(
                select(
                    func.count(picked.c.id),
                    func.count(picked.c.finished_at),
                    func.coalesce(func.sum(picked.c.frames_total), 0),
                    func.coalesce(func.sum(done), 0),
                    stage,
                ).select_from(picked.outerjoin(work, work.c.job_id == picked.c.id))
            ).one()
        return Progress(int(jobs), int(finished), int(total), int(frames), current)

    def tasks(self, job_id: str) -> list[Task]:
        with self.sessions() as s:
            return list(s.scalars(select(Task).where(Task.job_id == job_id).order_by(Task.id)).all())

    def fail_job(self, job_id: str, error: str, *, server_side: bool = False) -> None:
        """Fail a job that has not finished. `server_side`: the failure was the server's (the
        store refused or did not answer), not the request's, so the same request may succeed
        later: the job lets go of its Idempotency-Key in the same transaction, and the client's
        retry with that key makes a new job instead of being answered with this one."""
        with self.sessions.begin() as s:
            self._finish_jobs(s, [Job.id == job_id], JobState.FAILED, error, forget_key=server_side)

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job that has not finished; running tasks stop at their next batch. False
        when it had finished, however shortly before."""
        with self.sessions.begin() as s:
            if s.get(Job, job_id) is None:
                raise JobNotFound(f"no job {job_id!r}")
            return bool(self._finish_jobs(s, [Job.id == job_id], JobState.CANCELLED, "cancelled"))

    # -- batches ------------------------------------------------------------------------

    def batch_summary(self, tenant: str, batch_id: str) -> BatchSummary | None:
        """The tenant's jobs of a batch, by state, and their frames, in one statement however
        many they are; None when the tenant has no job in it. A job's frames done are as
        `progress` counts them (its frames scaled by its share of work done); a done job's
        are all its frames."""
        in_batch = (Job.tenant == tenant, Job.batch_id == batch_id)
        work = (
            select(
                Task.job_id,
                func.sum(Task.frames_done).label("done"),
                func.sum(Task.frames_total).label("total"),
            )
            .join(Job, Job.id == Task.job_id)
            .where(*in_batch)
            .group_by(Task.job_id)
            .subquery("work")
        )
        done = case(
            (Job.state == JobState.DONE, Job.frames_total),
            (work.c.total > 0, Job.frames_total * work.c.done // work.c.total),
            else_=0,
        )
        query = (
            select(Job.state, func.count(), func.sum(Job.frames_total), func.coalesce(func.sum(done), 0))
            .select_from(Job)
            .outerjoin(work, work.c.job_id == Job.id)
            .where(*in_batch)
            .group_by(Job.state)
        )
        with self.sessions() as s:
            rows = s.execute(query).all()
        if not rows:
            return None
        return BatchSummary(
            jobs_by_state={str(state): int(n) for state, n, _, _ in rows},
            frames_total=sum(int(total or 0) for _, _, total, _ in rows),
            frames_done=sum(int(d or 0) for _, _, _, d in rows),
        )

    def cancel_batch(self, tenant: str, batch_id: str) -> int | None:
        """Cancel every unfinished job of the tenant's batch, in one transaction: how many it
        cancelled, or None when the tenant has no job in it."""
        in_batch = [Job.tenant == tenant, Job.batch_id == batch_id]
        with self.sessions.begin() as s:
            if s.scalar(select(Job.id).where(*in_batch).limit(1)) is None:
                return None
            return self._finish_jobs(s, in_batch, JobState.CANCELLED, "cancelled")

    # -- library batches (frameq batch) --------------------------------------------------

    def open_batch(self, batch_id: str, key: str, source: str, dest: str, recipe: str) -> Batch:
        """The batch of this key (the same command run before), or a new one as `batch_id`."""
        with self.sessions.begin() as s:
            batch = s.scalar(select(Batch).where(Batch.key == key))
            if batch is None:
                batch = Batch(id=batch_id, key=key, source=source, dest=dest, recipe=recipe)
                s.add(batch)
            batch.updated_at = utcnow()
        return batch

    def get_batch(self, batch_id: str) -> Batch:
        with self.sessions() as s:
            batch = s.get(Batch, batch_id)
            if batch is None:
                raise JobNotFound(f"no batch {batch_id!r}")
            return batch

    def known_items(self, batch_id: str) -> dict[str, Known]:
        """What the batch recorded of each file on its earlier runs, by relative path."""
        with self.sessions() as s:
            rows = s.execute(
                select(
                    BatchItem.path,
                    BatchItem.size,
                    BatchItem.mtime_ns,
                    BatchItem.sha256,
                    BatchItem.job_id,
                    BatchItem.written_size,
                ).where(BatchItem.batch_id == batch_id)
            ).all()
        return {
            row.path: Known(row.size, row.mtime_ns, row.sha256, row.job_id, row.written_size) for row in rows
        }

    def jobs_for_keys(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """For each item key, the job that makes it: (id, state). A done one whose output is
        still stored wins, then one under way, then a failed one; cancelled ones never do."""
        rank = {JobState.DONE: 0, JobState.RUNNING: 1, JobState.QUEUED: 1, JobState.FAILED: 2}
        found: dict[str, tuple[int, str, str]] = {}
        unique = sorted(set(keys))
        with self.sessions() as s:
            for start in range(0, len(unique), KEYS_PER_QUERY):
                rows = s.execute(
                    select(Job.item_key, Job.id, Job.state, Artifact.id)
                    .outerjoin(Artifact, Artifact.key == Job.output_key)
                    .where(Job.item_key.in_(unique[start : start + KEYS_PER_QUERY]))
                    .where(Job.state != JobState.CANCELLED)
                ).all()
                for key, job_id, state, output_artifact in rows:
                    if state == JobState.DONE and output_artifact is None:
                        continue  # its output expired: made again
                    candidate = (rank[JobState(state)], job_id, state)
                    if key not in found or candidate < found[key]:
                        found[str(key)] = candidate
        return {key: (job_id, state) for key, (_, job_id, state) in found.items()}

    def create_batch_jobs(self, batch_id: str, jobs: Sequence[BatchJob], items: Sequence[Item]) -> None:
        """Record new jobs of a batch (their inputs already stored, so their first tasks are
        ready; one whose input was refused is failed with the reason) and the batch's items,
        in one transaction."""
        now = db_now()
        with self.sessions.begin() as s:
            for new in jobs:
                job = Job(
                    id=new.job_id,
                    batch_id=batch_id,
                    recipe=new.recipe,
                    input_name=new.input_name,
                    source_key=new.source_key,
                    params=new.params,
                    priority=new.priority,
                    item_key=new.item_key,
                    state=JobState.QUEUED if new.error is None else JobState.FAILED,
                    error=new.error,
                    finished_at=None if new.error is None else now,
                )
                s.add(job)
                if new.error is None:
                    task = _entry_task(job, new.image_output_key)
                    task.state = TaskState.READY
                    s.add(task)
            s.flush()
            stored = [
                {
                    "job_id": n.job_id,
                    "task_id": None,
                    "key": n.source_key,
                    "size_bytes": n.source_size,
                    "created_at": now,
                }
                for n in jobs
                if n.error is None
            ]
            if stored:
                self._upsert_artifacts(s, stored)
            self._upsert_items(s, batch_id, items)

    @staticmethod
    def _upsert_items(s: Session, batch_id: str, items: Sequence[Item]) -> None:
        dialect_insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        for start in range(0, len(items), KEYS_PER_QUERY // 8):
            rows = [
                {
                    "batch_id": batch_id,
                    "path": item.file.path,
                    "dest": item.dest,
                    "size": item.file.size,
                    "mtime_ns": item.file.mtime_ns,
                    "sha256": item.sha256,
                    "job_id": item.job_id,
                }
                for item in items[start : start + KEYS_PER_QUERY // 8]
            ]
            statement = dialect_insert(BatchItem).values(rows)
            new = statement.excluded
            s.execute(
                statement.on_conflict_do_update(
                    index_elements=[BatchItem.batch_id, BatchItem.path],
                    set_={
                        "dest": new.dest,
                        "size": new.size,
                        "mtime_ns": new.mtime_ns,
                        "sha256": new.sha256,
                        # a copy made from another job's output is not this job's
                        "written_size": case(
                            (BatchItem.job_id == new.job_id, BatchItem.written_size), else_=None
                        ),
                        "job_id": new.job_id,
                    },
                )
            )

    def forget_items(self, batch_id: str, paths: Sequence[str]) -> None:
        """Items no longer in the batch's source (or left out by its filters now)."""
        with self.sessions.begin() as s:
            for start in range(0, len(paths), KEYS_PER_QUERY):
                chunk = paths[start : start + KEYS_PER_QUERY]
                s.execute(delete(BatchItem).where(BatchItem.batch_id == batch_id, BatchItem.path.in_(chunk)))

    def record_written(self, batch_id: str, written: Sequence[tuple[str, int]]) -> None:
        """Items whose output was copied to the destination: (path, size of the output)."""
        if written:
            with self.sessions.begin() as s:
                s.connection().execute(
                    update(BatchItem)
                    .where(BatchItem.batch_id == batch_id, BatchItem.path == bindparam("b_path"))
                    .values(written_size=bindparam("b_size")),
                    [{"b_path": path, "b_size": size} for path, size in written],
                )

    def batch_report(self, batch_id: str) -> list[BatchRow]:
        """Every item of the batch with its job, in path order, in one query."""
        with self.sessions() as s:
            rows = s.execute(
                select(
                    BatchItem.path,
                    BatchItem.dest,
                    BatchItem.sha256,
                    BatchItem.written_size,
                    Job.id,
                    Job.state,
                    Job.error,
                    Job.kind,
                    Job.frames_total,
                    Job.output_key,
                    Job.started_at,
                    Job.finished_at,
                )
                .outerjoin(Job, Job.id == BatchItem.job_id)
                .where(BatchItem.batch_id == batch_id)
                .order_by(BatchItem.path)
            ).all()
        return [BatchRow(*row) for row in rows]  # type: ignore[call-arg]

    def ready_tasks(self, job_ids: Sequence[str]) -> list[int]:
        """Ids of these jobs' ready tasks."""
        with self.sessions() as s:
            query = select(Task.id).where(Task.job_id.in_(job_ids), Task.state == TaskState.READY)
            return list(s.scalars(query.order_by(Task.id)).all())

    def running_tasks(self, job_ids: Sequence[str]) -> list[tuple[int, str | None]]:
        """(id, worker) of these jobs' running tasks."""
        found: list[tuple[int, str | None]] = []
        with self.sessions() as s:
            for start in range(0, len(job_ids), KEYS_PER_QUERY):
                query = select(Task.id, Task.worker).where(
                    Task.job_id.in_(job_ids[start : start + KEYS_PER_QUERY]), Task.state == TaskState.RUNNING
                )
                found += [(task_id, worker) for task_id, worker in s.execute(query).all()]
        return found

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
                s.execute(update(Task).where(Task.id.in_(task_ids)).values(dispatched_at=db_now()))

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

    def fail_abandoned_submissions(self, older_than_s: float) -> list[str]:
        """Jobs whose input never reached the store (the submitting process died mid-upload, by
        kill -9 or a crash): failed, so none waits for ever. Returns their ids."""
        with self.sessions.begin() as s:
            job_ids = list(
                s.scalars(
                    select(Job.id).where(
                        Job.state == JobState.QUEUED,
                        Job.created_at < db_now(-older_than_s),
                        Job.id.in_(
                            select(Task.job_id).where(
                                Task.stage.in_(ENTRY_STAGES), Task.state == TaskState.WAITING
                            )
                        ),
                    )
                ).all()
            )
            for job_id in job_ids:
                self._finish_jobs(
                    s,
                    [Job.id == job_id],
                    JobState.FAILED,
                    "submission interrupted: the input never reached the store",
                )
            return job_ids

    def reap_expired(self, max_attempts: int) -> tuple[list[int], list[int]]:
        """Running tasks whose lease ran out (their worker died): ready again, or failed when
        they have used up their attempts. Returns (ready ids, failed ids)."""
        with self.sessions() as s:
            expired = s.execute(
                select(Task.id, Task.attempts).where(
                    Task.state == TaskState.RUNNING, Task.lease_until < db_now()
                )
            ).all()
        ready, failed = [], []
        for task_id, attempts in expired:
            if attempts >= max_attempts:
                with self.sessions.begin() as s:
                    # As `fail` leaves it: finished now, no lease; the worker it lost is kept.
                    failing = self._expired(task_id).values(
                        state=TaskState.FAILED, finished_at=db_now(), lease_until=None
                    )
                    if _changed(s, failing):
                        task = s.get_one(Task, task_id)
                        error = f"{task.name} lost its worker {attempts} times"
                        task.error = error
                        self._finish_jobs(s, [Job.id == task.job_id], JobState.FAILED, error)
                        failed.append(task_id)
            else:
                with self.sessions.begin() as s:
                    # As `release` leaves it: nobody holds a ready task.
                    requeue = self._expired(task_id).values(
                        state=TaskState.READY, lease_until=None, worker=None, error="worker lost"
                    )
                    if _changed(s, requeue):
                        ready.append(task_id)
        return ready, failed

    @staticmethod
    def _expired(task_id: int) -> Update:
        return update(Task).where(
            Task.id == task_id, Task.state == TaskState.RUNNING, Task.lease_until < db_now()
        )

    def undispatched(self, older_than_s: float) -> list[int]:
        """Ready tasks whose last message is old enough to have been lost (broker restart)."""
        cutoff = db_now(-older_than_s)
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
        now = db_now()
        with self.sessions.begin() as s:
            # One statement takes the row and returns it: claiming runs between two tasks.
            task = s.scalars(
                update(Task)
                .where(Task.id == task_id, Task.state == TaskState.READY)
                .values(_taken_by(worker, lease_s, now))
                .returning(Task)
            ).one_or_none()
            if task is None:
                return None
            _start_jobs(s, [task.job_id], now)
            return task

    def claim_images(
        self, worker: str, lease_s: float, limit: int, priority: int, job_ids: Sequence[str] | None = None
    ) -> list[Task]:
        """Take up to `limit` ready image tasks of jobs at `priority` (the group's first task's:
        a job of another priority never waits for a group to end), oldest first, for this
        worker in one transaction: a group of images shares one claim, one lease and one
        completion. Only tasks never tried before: a task given back (its worker died, or a
        passing error) runs alone, so a poison image cannot use up its neighbours' attempts.
        Rows another worker is taking are skipped, not waited for."""
        if limit <= 0:
            return []
        now = db_now()
        pick = (
            select(Task.id)
            .join(Job, Job.id == Task.job_id)
            .where(
                Task.state == TaskState.READY,
                Task.queue == queue_for(IMAGE_TASK),  # the (state, queue) index
                Task.name == IMAGE_TASK,
                Task.attempts == 0,
                Job.priority == priority,
            )
            .order_by(Task.id)
            .limit(limit)
            .with_for_update(of=Task, skip_locked=True)
        )
        if job_ids is not None:
            pick = pick.where(Task.job_id.in_(job_ids))
        # A WITH query runs once: PostgreSQL may run a LIMIT ... FOR UPDATE subquery of an IN
        # again for later rows, and so take more than `limit` tasks.
        picked = pick.cte("picked")
        with self.sessions.begin() as s:
            tasks = list(
                s.scalars(
                    update(Task)
                    .where(Task.id.in_(select(picked.c.id)), Task.state == TaskState.READY)
                    .values(_taken_by(worker, lease_s, now))
                    .returning(Task)
                ).all()
            )
            _start_jobs(s, [t.job_id for t in tasks], now)
            return sorted(tasks, key=lambda t: t.id)

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        with self.sessions() as s:
            return {
                job.id: job
                for start in range(0, len(job_ids), KEYS_PER_QUERY)
                for job in s.scalars(select(Job).where(Job.id.in_(job_ids[start : start + KEYS_PER_QUERY])))
            }

    def give_back_untried(self, task_ids: Sequence[int], worker: str) -> int:
        """Members of a group that never started (the group stopped early): ready again, the
        attempt their claim counted not counted."""
        if not task_ids:
            return 0
        with self.sessions.begin() as s:
            _lock_in_order(s, task_ids)
            return _changed(
                s,
                update(Task)
                .where(Task.id.in_(task_ids), Task.state == TaskState.RUNNING, Task.worker == worker)
                .values(state=TaskState.READY, worker=None, lease_until=None, attempts=Task.attempts - 1),
            )

    def heartbeat_many(self, task_ids: Sequence[int], lease_s: float, worker: str) -> set[int]:
        """Extend the leases of a group's tasks; returns those this worker still holds (the
        others were cancelled or taken over)."""
        with self.sessions.begin() as s:
            _lock_in_order(s, task_ids)
            return set(
                s.scalars(
                    update(Task)
                    .where(Task.id.in_(task_ids), Task.state == TaskState.RUNNING, Task.worker == worker)
                    .values(lease_until=db_now(lease_s))
                    .returning(Task.id)
                ).all()
            )

    def complete_images(self, done: Sequence[ImageDone], worker: str) -> list[str]:
        """Mark a group's finished image tasks done, with their jobs, in one transaction;
        returns the ids of the jobs it finished (one whose task was meanwhile cancelled or
        taken over is left as it is). An image task is its job's only task: nothing waits on
        it, and it writes only the job's outputs, so its job is collected at once."""
        if not done:
            return []
        now = db_now()
        by_task = {d.task_id: d for d in done}
        with self.sessions.begin() as s:
            _lock_in_order(s, list(by_task))
            rows = s.execute(
                update(Task)
                .where(
                    Task.id.in_(by_task),
                    Task.name == IMAGE_TASK,
                    Task.state == TaskState.RUNNING,
                    Task.worker == worker,
                )
                .values(
                    state=TaskState.DONE,
                    frames_done=Task.frames_total,
                    read_bytes=0,
                    finished_at=now,
                    lease_until=None,
                )
                .returning(Task.id, Task.job_id, Task.output_key)
            ).all()
            if not rows:
                return []
            artifacts = [
                {"job_id": job_id, "task_id": task_id, "key": key, "size_bytes": size, "created_at": now}
                for task_id, job_id, output in rows
                for key, size in [(output, by_task[task_id].size_bytes), *by_task[task_id].also_stored]
            ]
            self._upsert_artifacts(s, artifacts)
            # Each task's and job's own times: the group's claim and completion are not theirs.
            times = [
                {"b_start": by_task[task_id].started_at, "b_end": by_task[task_id].finished_at}
                for task_id, _, _ in rows
            ]
            s.connection().execute(
                update(Task)
                .where(Task.id == bindparam("b_id"))
                .values(
                    started_at=func.coalesce(bindparam("b_start", type_=DateTime), Task.started_at),
                    finished_at=func.coalesce(bindparam("b_end", type_=DateTime), Task.finished_at),
                ),
                [{"b_id": task_id, **time} for (task_id, _, _), time in zip(rows, times, strict=True)],
            )
            s.connection().execute(
                update(Job)
                .where(Job.id == bindparam("b_job"), Job.state == JobState.RUNNING)
                .values(
                    state=JobState.DONE,
                    output_key=bindparam("b_output"),
                    media=bindparam("b_media", type_=JSON),
                    started_at=func.coalesce(bindparam("b_start", type_=DateTime), Job.started_at),
                    finished_at=func.coalesce(bindparam("b_end", type_=DateTime), now),
                    collected_at=now,
                ),
                [
                    {"b_job": job_id, "b_output": output, "b_media": by_task[task_id].media, **time}
                    for (task_id, job_id, output), time in zip(rows, times, strict=True)
                ],
            )
            return [job_id for _, job_id, _ in rows]

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
                        lease_until=db_now(lease_s),
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
        size_bytes: int = 0,
        expansion: Expansion | None = None,
        worker: str | None = None,
        also_stored: Sequence[tuple[str, int]] = (),
        read_bytes: int = 0,
    ) -> list[int]:
        """Mark a running task done and return the ids of the tasks that became ready.

        The same transaction records the artifact at the task's output key (and `also_stored`:
        other objects the task wrote, as (key, size)), adds the tasks a plan expands to, and,
        when the task is the job's terminal (assemble), marks the job done with its output.
        """
        now = db_now()
        with self.sessions.begin() as s:
            task = s.scalars(
                update(Task)
                .where(Task.id == task_id, Task.state == TaskState.RUNNING, _held_by(worker))
                .values(
                    state=TaskState.DONE,
                    frames_done=Task.frames_total,
                    read_bytes=read_bytes,
                    finished_at=now,
                    lease_until=None,
                )
                .returning(Task)
            ).one_or_none()
            if task is None:
                return []
            stored = [(task.output_key, size_bytes)] if task.output_key is not None else []
            self._record_artifacts(s, task, [*stored, *also_stored])
            newly_ready = self._expand(s, task.job_id, expansion) if expansion else []
            # One statement counts this input off its dependents and readies those it was the last
            # input of (SET reads the row as it was; a concurrent completion waits for the row lock
            # and then sees the count this one left, so a dependent becomes ready exactly once).
            newly_ready += [
                ready_id
                for ready_id, state in s.execute(
                    update(Task)
                    .where(
                        Task.id.in_(select(TaskDependency.task_id).where(TaskDependency.needs_id == task_id))
                    )
                    .values(
                        deps_left=Task.deps_left - 1,
                        state=case(
                            (and_(Task.deps_left == 1, Task.state == TaskState.WAITING), TaskState.READY),
                            else_=Task.state,
                        ),
                    )
                    .returning(Task.id, Task.state)
                )
                if state == TaskState.READY
            ]
            # The job ends with its one terminal task, never by counting what is left: two tasks
            # finishing at once could each see the other unfinished.
            if task.name in TERMINAL_TASKS:
                s.execute(
                    update(Job)
                    .where(Job.id == task.job_id, Job.state == JobState.RUNNING)
                    .values(state=JobState.DONE, output_key=task.output_key, finished_at=now)
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
                .values(state=TaskState.FAILED, error=error, finished_at=db_now(), lease_until=None),
            )
            if failed:
                job_id = s.get_one(Task, task_id).job_id
                self._finish_jobs(s, [Job.id == job_id], JobState.FAILED, error)
            return bool(failed)

    # -- store retention ----------------------------------------------------------------

    def record_input(self, job_id: str, key: str, size_bytes: int) -> None:
        """An object put in the store for the job before any task ran (its source, a background)."""
        with self.sessions.begin() as s:
            if s.scalar(select(Artifact.id).where(Artifact.key == key)) is None:
                s.add(
                    Artifact(job_id=job_id, task_id=None, key=key, size_bytes=size_bytes, created_at=db_now())
                )

    def artifacts(self, job_id: str) -> list[Artifact]:
        with self.sessions() as s:
            query = select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id)
            return list(s.scalars(query).all())

    def finished_jobs(self, finished_s_ago: float, *, collected: bool) -> list[Job]:
        """Jobs that finished (done, failed or cancelled) at least this long ago: those whose
        intermediates are still to be deleted, or (`collected`) those already done with that
        whose outputs are still stored.

        None of their tasks runs any more: done jobs ended with their last task, and the workers
        of a failed or cancelled one stop at their next batch, well within a lease."""
        query = select(Job).where(
            Job.state.in_(FINISHED_JOB_STATES), Job.finished_at <= db_now(-finished_s_ago)
        )
        if collected:
            query = query.where(Job.collected_at.is_not(None), Job.id.in_(select(Artifact.job_id)))
        else:
            query = query.where(Job.collected_at.is_(None))
        with self.sessions() as s:
            return list(s.scalars(query.order_by(Job.finished_at)).all())

    def mark_collected(self, job_id: str) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(collected_at=db_now()))

    def forget_artifacts(self, keys: Sequence[str]) -> None:
        """The objects at these keys were deleted from the store."""
        if keys:
            with self.sessions.begin() as s:
                s.execute(delete(Artifact).where(Artifact.key.in_(keys)))

    # -- helpers ------------------------------------------------------------------------

    def _record_artifacts(self, s: Session, task: Task, stored: Sequence[tuple[str, int]]) -> None:
        """Record objects the task wrote, in one statement; a rerun that overwrote the same key
        updates its row."""
        if stored:
            rows = [
                {"job_id": task.job_id, "task_id": task.id, "key": k, "size_bytes": n, "created_at": db_now()}
                for k, n in stored
            ]
            self._upsert_artifacts(s, rows)

    @staticmethod
    def _upsert_artifacts(s: Session, rows: list[dict[str, Any]]) -> None:
        dialect_insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = dialect_insert(Artifact).values(rows)
        s.execute(
            statement.on_conflict_do_update(
                index_elements=[Artifact.key],
                set_={"size_bytes": statement.excluded.size_bytes, "created_at": db_now()},
            )
        )

    def _expand(self, s: Session, job_id: str, expansion: Expansion) -> list[int]:
        """Insert the planned tasks; those that need no other task are ready at once: their ids."""
        job = s.get_one(Job, job_id)
        job.kind = expansion.kind
        job.media = expansion.media
        job.frames_total = expansion.frames
        created: dict[tuple[str, int | None], Task] = {}
        for spec in expansion.specs:
            task = Task(
                job_id=job_id,
                stage=spec.stage,
                name=spec.name,
                queue=spec.queue,
                segment=spec.segment,
                params=spec.params,
                output_key=spec.output_key,
                output_format=spec.output_format,
                frames_total=spec.frames_total,
                deps_left=len(spec.needs),
                state=TaskState.WAITING if spec.needs else TaskState.READY,
            )
            s.add(task)
            created[(spec.stage, spec.segment)] = task
        s.flush()
        for spec in expansion.specs:
            task = created[(spec.stage, spec.segment)]
            for need in spec.needs:
                s.add(TaskDependency(task_id=task.id, needs_id=created[need].id))
        s.flush()
        return [task.id for task in created.values() if task.state == TaskState.READY]

    def _finish_jobs(
        self,
        s: Session,
        which: Sequence[ColumnElement[bool]],
        state: JobState,
        error: str,
        *,
        forget_key: bool = False,
    ) -> int:
        """End the unfinished jobs `which` picks (failed or cancelled) with their unfinished
        tasks, in two statements however many they are: the tasks first, in the order a
        completion takes its rows (its task, then its job). Returns how many jobs it ended: a
        job that finished meanwhile is left as it is, and not counted."""
        now = db_now()
        unfinished = [*which, Job.state.not_in(FINISHED_JOB_STATES)]
        if s.get_bind().dialect.name == "postgresql":  # the rows in id order, as a group takes them
            s.execute(
                select(Task.id)
                .where(Task.job_id.in_(select(Job.id).where(*unfinished)))
                .order_by(Task.id)
                .with_for_update()
            )
        s.execute(
            update(Task)
            .where(
                Task.job_id.in_(select(Job.id).where(*unfinished)),
                Task.state.in_((TaskState.WAITING, TaskState.READY, TaskState.RUNNING)),
            )
            .values(state=TaskState.CANCELLED, finished_at=now, lease_until=None)
        )
        values: dict[str, Any] = {"state": state, "error": error, "finished_at": now}
        if forget_key:
            values["idempotency_key"] = None
        return _changed(s, update(Job).where(*unfinished).values(**values))

    # -- metrics ------------------------------------------------------------------------

    def metrics(self, buckets_s: Sequence[float]) -> MetricsSnapshot:
        """What a metrics scrape reports, in four grouped statements whatever the number of jobs.

        Cost: the ready tasks are found through the (state, queue) index; the per-type totals
        are one pass over the tasks table (a few hundred ms per million rows on PostgreSQL, and a
        job has segments x stages + 2 rows); jobs by state use their state index; the webhook
        outbox is small. Done tasks' durations are counted into `buckets_s` (cumulative, as a
        Prometheus histogram wants) in the same pass, so no row leaves the database."""
        with self.sessions() as s:
            seconds = _seconds_between(s, Task.started_at, Task.finished_at)
            ready = s.execute(
                select(Task.name, Job.priority, func.count())
                .join(Job, Job.id == Task.job_id)
                .where(Task.state == TaskState.READY)
                .group_by(Task.name, Job.priority)
            ).all()
            per_type = s.execute(
                select(
                    Task.name,
                    Task.state,
                    func.count(),
                    func.coalesce(func.sum(Task.frames_total), 0),
                    func.coalesce(func.sum(seconds), 0.0),
                    *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets_s),
                ).group_by(Task.name, Task.state)
            ).all()
            jobs = s.execute(select(Job.state, func.count()).group_by(Job.state)).all()
            webhooks = s.execute(
                select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
            ).all()
        tasks: dict[tuple[str, str], int] = {}
        done: dict[str, Durations] = {}
        for name, state, n, frames, total_s, *within in per_type:
            tasks[(name, str(state))] = int(n)
            if state == TaskState.DONE:
                # Every done task has both times: complete() needs it running (claimed, started).
                done[name] = Durations(int(n), int(frames), float(total_s), [int(c or 0) for c in within])
        return MetricsSnapshot(
            ready={(name, int(priority)): int(n) for name, priority, n in ready},
            tasks=tasks,
            done=done,
            jobs={str(state): int(n) for state, n in jobs},
            webhooks={str(state): int(n) for state, n in webhooks},
        )


def _taken_by(worker: str, lease_s: float, now: Any) -> dict[Any, Any]:
    """What claiming a task sets on its row."""
    return {
        Task.state: TaskState.RUNNING,
        Task.worker: worker,
        Task.attempts: Task.attempts + 1,
        Task.lease_until: db_now(lease_s),
        Task.started_at: now,
        Task.frames_done: 0,
        Task.error: None,
    }


def _lock_in_order(s: Session, task_ids: Sequence[int]) -> None:
    """Take these task rows' locks in id order (PostgreSQL), as every statement over several
    tasks of a group does: two transactions locking the same rows in different orders could
    deadlock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(Task.id).where(Task.id.in_(task_ids)).order_by(Task.id).with_for_update())


def _start_jobs(s: Session, job_ids: Sequence[str], now: Any) -> None:
    """A job starts with its first task."""
    if job_ids:
        s.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.state == JobState.QUEUED)
            .values(state=JobState.RUNNING, started_at=now)
        )


def _entry_task(job: Job, image_output_key: str | None) -> Task:
    """A new job's first task, waiting for its input (an image's is known to be one frame)."""
    if image_output_key is None:
        return Task(job_id=job.id, stage=PLAN_STAGE, name=PLAN_TASK, queue=queue_for(PLAN_TASK))
    job.kind, job.frames_total = "image", 1
    return Task(
        job_id=job.id,
        stage=IMAGE_STAGE,
        name=IMAGE_TASK,
        queue=queue_for(IMAGE_TASK),
        output_key=image_output_key,
        frames_total=1,
    )


def _idempotency_clash(exc: IntegrityError) -> bool:
    """Whether the INSERT failed on the (tenant, Idempotency-Key) constraint: PostgreSQL names
    it; SQLite names its columns."""
    diag = getattr(exc.orig, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None) == IDEMPOTENCY_CONSTRAINT
    return "UNIQUE constraint failed: jobs.tenant, jobs.idempotency_key" in str(exc.orig)


def _seconds_between(s: Session, start: Any, end: Any) -> Any:
    """`end - start` in seconds, as SQL: an interval's epoch on PostgreSQL, Julian days on SQLite
    (whose times are text; a double holds them to a few microseconds)."""
    if s.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


@dataclass(frozen=True)
class Durations:
    """The done tasks of one task type: how many, their frames, and their run times (from the
    last claim to completion: a task given back and run again counts its last run only)."""

    count: int
    frames: int
    sum_s: float
    within: list[int]  # how many took at most each bound the caller asked about, in its order


@dataclass(frozen=True)
class MetricsSnapshot:
    ready: dict[tuple[str, int], int]  # (task type, job priority) -> tasks ready to run
    tasks: dict[tuple[str, str], int]  # (task type, state) -> tasks
    done: dict[str, Durations]  # task type -> its done tasks
    jobs: dict[str, int]  # state -> jobs
    webhooks: dict[str, int]  # state -> webhook deliveries
