"""Job and task state transitions on real SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import JobNotFound
from orchestrator.params import JobParams
from orchestrator.planning import Segment, expand
from orchestrator.recipes import get_recipe
from orchestrator.repository import Expansion, Repository
from orchestrator.schema import JobState, TaskState


def new_job(repo: Repository, job_id: str = "job1", priority: int = 0) -> int:
    repo.create_job(
        job_id=job_id, recipe="cartoon", input_name="in.mp4", source_key="k", params={}, priority=priority
    )
    assert repo.next_ready([job_id]) is None  # the plan waits until the input is stored
    repo.source_stored(job_id)
    task_id = repo.next_ready([job_id])
    assert task_id is not None
    return task_id


def plan(repo: Repository, plan_id: int, segments: int = 2) -> list[int]:
    assert repo.claim(plan_id, "w") is not None
    segs = [Segment(i, i * 10, None, 5) for i in range(segments)]
    specs = expand(get_recipe("cartoon"), segs, "video", "job1", JobParams(".mp4"))
    return repo.complete(plan_id, expansion=Expansion("video", {}, 5 * segments, specs))


def test_a_task_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    plan_id = new_job(repo)
    assert repo.claim(plan_id, "worker-a") is not None
    assert repo.claim(plan_id, "worker-b") is None  # a duplicate delivery finds it taken
    assert repo.get_job("job1").state == JobState.RUNNING


def test_plan_expands_and_dependents_become_ready_in_order(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    ready = plan(repo, new_job(repo), segments=2)
    tasks = {(t.stage, t.segment): t for t in repo.tasks("job1")}
    assert ready == sorted([tasks[("style", 0)].id, tasks[("style", 1)].id])
    assert tasks[("assemble", None)].state == TaskState.WAITING
    assert repo.get_job("job1").frames_total == 10

    for i, seg in enumerate((0, 1)):
        task = tasks[("style", seg)]
        assert repo.claim(task.id, "w")
        assert repo.heartbeat(task.id, 3)
        became_ready = repo.complete(task.id, 100)
        assert became_ready == ([] if i == 0 else [tasks[("assemble", None)].id])
    assert repo.complete(tasks[("style", 1)].id, 1) == []  # second completion is a no-op

    assemble = tasks[("assemble", None)]
    inputs = repo.inputs(assemble.id)
    assert [t.output_key for t in inputs["style"]] == [
        "jobs/job1/style/00000.mp4",
        "jobs/job1/style/00001.mp4",
    ]
    assert repo.claim(assemble.id, "w")
    repo.complete(assemble.id, 200)
    view = repo.view("job1")
    assert view.job.state == JobState.DONE
    assert view.job.output_key == "jobs/job1/output.mp4"
    assert view.frames_done == 10 and view.tasks_by_state == {"done": 4}


def test_failure_fails_the_job_and_cancels_its_other_tasks(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    plan(repo, new_job(repo), segments=3)
    style = [t for t in repo.tasks("job1") if t.stage == "style"]
    assert repo.claim(style[0].id, "w")
    repo.fail(style[0].id, "in.mp4: corrupt video")
    view = repo.view("job1")
    assert view.job.state == JobState.FAILED and view.job.error == "in.mp4: corrupt video"
    assert view.tasks_by_state == {"done": 1, "failed": 1, "cancelled": 3}
    assert repo.next_ready(["job1"]) is None
    assert repo.claim(style[1].id, "w") is None


def test_cancel_stops_running_tasks_at_their_next_heartbeat(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    plan(repo, new_job(repo), segments=1)
    style = next(t for t in repo.tasks("job1") if t.stage == "style")
    assert repo.claim(style.id, "w")
    assert repo.cancel_job("job1")
    assert not repo.heartbeat(style.id, 2)
    assert repo.complete(style.id, 1) == []
    assert repo.get_job("job1").state == JobState.CANCELLED
    assert not repo.cancel_job("job1")  # already finished


def test_higher_priority_jobs_run_first(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    new_job(repo, "bulk", priority=0)
    urgent = new_job(repo, "urgent", priority=10)
    assert repo.next_ready() == urgent


def test_artifact_of_a_rerun_is_one_row(sessions: sessionmaker[Session]) -> None:
    from sqlalchemy import func, select

    from orchestrator.schema import Artifact

    repo = Repository(sessions)
    plan(repo, new_job(repo), segments=1)
    style = next(t for t in repo.tasks("job1") if t.stage == "style")
    repo.claim(style.id, "w")
    repo.complete(style.id, 10)
    with sessions.begin() as s:  # as if the lease expired and the task ran again
        s.get_one(type(style), style.id).state = TaskState.RUNNING
    repo.complete(style.id, 12)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Artifact)) == 1
        assert s.scalar(select(Artifact.size_bytes)) == 12


def test_unknown_job(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(JobNotFound):
        Repository(sessions).view("nope")


def test_a_worker_whose_lease_was_taken_over_cannot_report(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    plan(repo, new_job(repo), segments=1)
    style = next(t for t in repo.tasks("job1") if t.stage == "style")
    assert repo.claim(style.id, "slow-worker", lease_s=-1)  # its lease has already run out
    assert repo.reap_expired(max_attempts=3) == ([style.id], [])
    assert repo.claim(style.id, "new-worker")
    assert not repo.heartbeat(style.id, 3, worker="slow-worker")  # told to stop
    assert repo.complete(style.id, 1, worker="slow-worker") == []
    assert repo.complete(style.id, 1, worker="new-worker") == [repo.tasks("job1")[-1].id]  # assemble


def test_expired_leases_fail_the_job_after_the_last_attempt(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    plan(repo, new_job(repo), segments=1)
    style = next(t for t in repo.tasks("job1") if t.stage == "style")
    for attempt in range(1, 3):
        assert repo.claim(style.id, f"w{attempt}", lease_s=-1)
        ready, failed = repo.reap_expired(max_attempts=2)
        assert (ready, failed) == (([style.id], []) if attempt < 2 else ([], [style.id]))
    job = repo.get_job("job1")
    assert job.state == JobState.FAILED and "lost its worker 2 times" in (job.error or "")
