"""Jobs and tasks written straight into the database, in a given shape (no planning)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.schema import Job, JobState, Task, TaskDependency


def add_job(
    sessions: sessionmaker[Session],
    job_id: str,
    states: Sequence[str],
    needs: Mapping[int, Sequence[int]] | None = None,
    frames: int = 10,
) -> list[int]:
    """A queued job with one segment task per state (`frames` each); `needs` maps a task's
    index to the indices of the tasks it waits for. Returns the task ids in order."""
    with sessions.begin() as s:
        return add_job_in(s, job_id, states, needs, frames)


def add_job_in(
    s: Session,
    job_id: str,
    states: Sequence[str],
    needs: Mapping[int, Sequence[int]] | None = None,
    frames: int = 10,
) -> list[int]:
    """`add_job` inside a transaction of the caller's (many jobs at once)."""
    needs = needs or {}
    s.add(
        Job(
            id=job_id,
            recipe="cartoon",
            input_name=f"{job_id}.mp4",
            source_key=f"jobs/{job_id}/source.mp4",
            params={},
            state=JobState.QUEUED,
            frames_total=frames * len(states),
        )
    )
    tasks = [
        Task(
            job_id=job_id,
            stage="style",
            name="style.frames",
            queue="style",
            segment=i,
            state=state,
            frames_total=frames,
            deps_left=len(needs.get(i, ())),
        )
        for i, state in enumerate(states)
    ]
    s.add_all(tasks)
    s.flush()
    for i, wanted in needs.items():
        s.add_all(TaskDependency(task_id=tasks[i].id, needs_id=tasks[j].id) for j in wanted)
    return [task.id for task in tasks]
