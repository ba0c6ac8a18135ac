"""The reaper leaves the rows of tasks whose worker died as a release or a failure would."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.repository import Repository
from orchestrator.schema import JobState, TaskState
from tests.integration.rows import add_job


def test_a_task_given_back_by_the_reaper_names_no_worker(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    lost, released = add_job(sessions, "job1", ["ready", "ready"])
    assert repo.claim(lost, "dead-worker", lease_s=-1)  # its lease has already run out
    assert repo.claim(released, "live-worker")
    assert repo.release(released, "store timeout", worker="live-worker")
    assert repo.reap_expired(max_attempts=3) == ([lost], [])
    tasks = {t.id: t for t in repo.tasks("job1")}
    for task in tasks.values():  # both are ready again, held by nobody
        assert (task.state, task.worker, task.lease_until) == (TaskState.READY, None, None)
    assert tasks[lost].error == "worker lost"


def test_a_task_failed_by_the_reaper_has_finished(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    lost, waiting = add_job(sessions, "job1", ["ready", "waiting"])
    assert repo.claim(lost, "dead-worker", lease_s=-1)
    assert repo.reap_expired(max_attempts=1) == ([], [lost])
    tasks = {t.id: t for t in repo.tasks("job1")}
    assert tasks[lost].state == TaskState.FAILED
    assert tasks[lost].finished_at is not None and tasks[lost].lease_until is None
    assert tasks[waiting].state == TaskState.CANCELLED and tasks[waiting].finished_at is not None
    job = repo.get_job("job1")
    assert job.state == JobState.FAILED and job.finished_at is not None
    assert job.error == "style.frames lost its worker 1 times"
