"""Database schema: jobs, their tasks (one per segment and stage), task dependencies, artifacts.

States are plain strings (a `str` Enum in Python) so that the same migration runs on SQLite
and PostgreSQL without database enum types. Times are naive UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(enum.StrEnum):
    WAITING = "waiting"  # inputs not all done yet
    READY = "ready"  # may be dispatched and claimed
    RUNNING = "running"  # claimed by a worker that holds the lease
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_JOB_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    # One job per tenant and Idempotency-Key (NULLs never clash: jobs without a key).
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(16), index=True)
    recipe: Mapped[str] = mapped_column(String(64))
    input_name: Mapped[str] = mapped_column(Text)
    source_key: Mapped[str] = mapped_column(Text)
    output_key: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(8))  # video | image, known once planned
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)  # summed over its tasks
    media: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    collected_at: Mapped[datetime | None] = mapped_column(DateTime)  # its intermediates deleted
    # Submitted over HTTP: whose it is, who to tell when it ends, and what made it (idempotency).
    tenant: Mapped[str | None] = mapped_column(ForeignKey("tenants.name"), index=True)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of what the key was sent with
    # What the job computes: sha256 of its input's content with its recipe and parameters.
    # Two jobs of one key make the same output, so a library batch runs each key once.
    item_key: Mapped[str | None] = mapped_column(String(64), index=True)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_state_queue", "state", "queue"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(64))  # the recipe's name for this step
    name: Mapped[str] = mapped_column(String(64))  # task type, e.g. style.frames
    queue: Mapped[str] = mapped_column(String(32))
    segment: Mapped[int | None] = mapped_column(Integer)  # None for job-level tasks
    state: Mapped[str] = mapped_column(String(16), default=TaskState.WAITING)
    deps_left: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)  # last message sent for it
    worker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output_key: Mapped[str | None] = mapped_column(Text)  # decided when the job is planned
    output_format: Mapped[str | None] = mapped_column(String(32))  # e.g. ffv1:grey (formats.py)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    read_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # read from the store by its last run
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class TaskDependency(Base):
    """`task_id` may start once `needs_id` is done."""

    __tablename__ = "task_deps"

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    needs_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Artifact(Base):
    """An object in the store. The key is deterministic, so a retry updates the same row."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    key: Mapped[str] = mapped_column(Text, unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Tenant(Base):
    """Who submits over HTTP. Limits bound what it may have under way at once."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_secret: Mapped[str] = mapped_column(Text)  # whsec_<base64>, Standard Webhooks' form
    max_active_jobs: Mapped[int] = mapped_column(Integer)  # queued or running
    max_queued_frames: Mapped[int] = mapped_column(BigInteger)  # frames of its unfinished jobs
    prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)  # store keys it may submit by reference
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(Base):
    """A tenant's API key, kept only as its SHA-256: the key is 32 random bytes, so a fast
    hash is enough (nothing to brute-force), and a stolen table opens nothing."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # shown in listings, part of the key
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class WebhookState(enum.StrEnum):
    PENDING = "pending"  # to be sent (again) at next_attempt_at
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # attempts used up; a replay makes it pending again


class WebhookDelivery(Base):
    """One event of a job for its webhook (the outbox): made when the job ends, sent and
    retried with backoff until the receiver takes it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "event", name="uq_webhook_job_event"),
        Index("ix_webhook_state_next", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(64))  # webhook-id: the same on every retry
    event: Mapped[str] = mapped_column(String(32))  # job.done, job.failed, job.cancelled
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=WebhookState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)


class WebhookAttempt(Base):
    """The delivery log: one row per request sent."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (refused, timed out)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class Batch(Base):
    """A library run by `frameq batch`: one source tree through one recipe into one destination.
    Its key is what identifies "the same command again", which resumes it."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of source, dest, recipe, params
    source: Mapped[str] = mapped_column(Text)
    dest: Mapped[str] = mapped_column(Text)
    recipe: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # its last run


class BatchItem(Base):
    """One file of a batch's source and the job that makes its output. Identical files (the
    same item key) share one job; a file that changed gets a new one."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("batch_id", "path", name="uq_batch_items_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)  # relative to the source, with "/"
    dest: Mapped[str] = mapped_column(Text)  # the output's path relative to the destination
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)  # with the size: unchanged files are not hashed again
    sha256: Mapped[str] = mapped_column(String(64))  # of the file's content
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    written_size: Mapped[int | None] = mapped_column(BigInteger)  # its output, once copied to dest
