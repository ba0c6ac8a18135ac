"""Database schema: jobs, their tasks (one per segment and stage), task dependencies, artifacts.

States are plain strings (a `str` Enum in Python) so that the same migration runs on SQLite
and PostgreSQL without database enum types. Times are naive UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
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
