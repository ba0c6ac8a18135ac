"""Images claimed, leased and recorded in groups (SQLite and PostgreSQL): who goes in a group,
and what a cancel, a retry or a finished group leaves on the rows."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.repository import ImageDone, Repository
from orchestrator.schema import Job, Task


def image_jobs(repo: Repository, ids: list[str], priority: int = 0) -> list[int]:
    """Image jobs whose inputs are stored: each one ready task; their ids."""
    task_ids = []
    for job_id in ids:
        repo.create_job(
            job_id=job_id,
            recipe="cartoon",
            input_name=f"{job_id}.jpg",
            source_key=f"jobs/{job_id}/source.jpg",
            params={"output_suffix": ".jpg"},
            priority=priority,
            image_output_key=f"jobs/{job_id}/output.jpg",
        )
        task_ids += repo.source_stored(job_id)
    return task_ids


def test_a_group_holds_one_priority_and_only_untried_tasks(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    bulk = image_jobs(repo, [f"bulk{i:02d}" for i in range(20)], priority=-10)
    urgent = image_jobs(repo, ["urgent"], priority=10)
    with sessions.begin() as s:  # one bulk task was tried before (its worker died)
        s.execute(update(Task).where(Task.id == bulk[1]).values(attempts=1))
    group = repo.claim_images("w1", 60, 15, priority=-10)
    assert [t.id for t in group] == [bulk[0], *bulk[2:16]]  # oldest first, the tried one left out
    assert urgent[0] not in [t.id for t in group]
    assert [t.id for t in repo.claim_images("w2", 60, 15, priority=10)] == urgent
    rest = repo.claim_images("w2", 60, 15, priority=-10)
    assert [t.id for t in rest] == bulk[16:]  # what w1 holds is not taken twice


def test_a_finished_group_is_recorded_with_each_tasks_own_times(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    ids = [f"img{i}" for i in range(3)]
    tasks = image_jobs(repo, ids)
    group = repo.claim_images("w1", 60, 3, priority=0)
    assert repo.cancel_job("img1")  # cancelled while the group ran
    claimed = group[0].started_at
    assert claimed is not None
    from datetime import timedelta

    done = [
        ImageDone(
            t,
            100 + t,
            {"width": 8, "height": 8},
            [],
            claimed + timedelta(seconds=i),
            claimed + timedelta(seconds=i + 1),
        )
        for i, t in enumerate(tasks)
    ]
    assert sorted(repo.complete_images(done, "w1")) == ["img0", "img2"]
    with sessions() as s:
        jobs = {j.id: j for j in s.scalars(select(Job))}
        rows = {t.id: t for t in s.scalars(select(Task))}
    assert jobs["img1"].state == "cancelled" and rows[tasks[1]].state == "cancelled"
    for i in (0, 2):
        job, task = jobs[ids[i]], rows[tasks[i]]
        assert job.state == "done" and job.output_key == f"jobs/{ids[i]}/output.jpg"
        assert job.media == {"width": 8, "height": 8} and job.collected_at is not None
        assert task.state == "done" and task.finished_at is not None and task.started_at is not None
        assert (task.finished_at - task.started_at).total_seconds() == 1.0  # its own second
    assert [a.key for a in repo.artifacts("img0")] == ["jobs/img0/output.jpg"]
    # Recording again changes nothing: the tasks are no longer this worker's running ones
    assert repo.complete_images(done, "w1") == []


def test_untried_members_go_back_without_an_attempt(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    tasks = image_jobs(repo, ["a", "b", "c"])
    repo.claim_images("w1", 60, 3, priority=0)
    assert repo.give_back_untried(tasks[1:], "w1") == 2
    assert repo.give_back_untried(tasks[1:], "w2") == 0  # not another worker's to give back
    with sessions() as s:
        rows = {t.id: t for t in s.scalars(select(Task))}
    assert [rows[t].state for t in tasks] == ["running", "ready", "ready"]
    assert [rows[t].attempts for t in tasks] == [1, 0, 0]
    assert repo.heartbeat_many(tasks, 60, "w1") == {tasks[0]}
