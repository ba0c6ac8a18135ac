"""Job and task state transitions on real SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import JobNotFound, LimitReached
from orchestrator.params import JobParams
from orchestrator.planning import Segment, expand
from orchestrator.recipes import get_recipe
from orchestrator.repository import Expansion, IdempotencyKeyTaken, Origin, Repository, TenantGone
from orchestrator.schema import JobState, TaskState, Tenant
from orchestrator.submit import new_id
from orchestrator.tenants import Tenants


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


# -- tenants' jobs: limits, idempotency keys, batches --------------------------------------


def tenant_with(sessions: sessionmaker[Session], **limits: int) -> Tenant:
    return Tenants(sessions).ensure(f"t-{secrets.token_hex(4)}", **limits)


def origin_of(tenant: Tenant, key: str | None = None) -> Origin:
    return Origin(
        tenant.name,
        idempotency_key=key,
        request_hash="h",
        max_active_jobs=tenant.max_active_jobs,
        max_queued_frames=tenant.max_queued_frames,
    )


def tenant_job(repo: Repository, origin: Origin, batch_id: str | None = None) -> str:
    job_id = new_id()
    repo.create_job(
        job_id=job_id,
        recipe="cartoon",
        input_name="in.mp4",
        source_key=f"jobs/{job_id}/source.mp4",
        params={},
        batch_id=batch_id,
        origin=origin,
    )
    return job_id


def test_a_tenants_limit_holds_against_submissions_at_once(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    origin = origin_of(tenant_with(sessions, max_active_jobs=2))
    start = threading.Barrier(8)

    def submit(_: int) -> str:
        start.wait()
        try:
            tenant_job(repo, origin)
        except LimitReached as exc:
            return str(exc)
        return "made"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(submit, range(8)))
    assert outcomes.count("made") == 2, outcomes
    assert [o for o in outcomes if o != "made"] == [
        f"tenant {origin.tenant} has 2 jobs under way (limit 2)"
    ] * 6
    assert repo.tenant_load(origin.tenant) == (2, 0)


def test_a_job_of_a_tenant_without_a_row_is_refused(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    with pytest.raises(TenantGone, match="no tenant 'gone'"):
        tenant_job(repo, Origin("gone", max_active_jobs=5, max_queued_frames=5))
    assert repo.list_jobs() == []


def idempotent(repo: Repository, tenant: Tenant, key: str) -> str | None:
    job = repo.find_idempotent(tenant.name, key)
    return job.id if job is not None else None


def test_an_idempotency_key_is_held_by_one_job_until_a_server_side_failure(
    sessions: sessionmaker[Session],
) -> None:
    repo = Repository(sessions)
    tenant = tenant_with(sessions)
    first = tenant_job(repo, origin_of(tenant, "k"))
    with pytest.raises(IdempotencyKeyTaken):
        tenant_job(repo, origin_of(tenant, "k"))
    other = tenant_with(sessions)
    assert tenant_job(repo, origin_of(other, "k"))  # keys are per tenant
    # A bad input fails the job, which keeps its key: the same request would fail the same way.
    repo.fail_job(first, "in.mp4: not a video")
    assert idempotent(repo, tenant, "k") == first
    # A failure of the server's lets go of it: the client's retry makes a new job.
    second = new_id()
    repo.create_job(
        job_id=second,
        recipe="cartoon",
        input_name="x",
        source_key="x",
        params={},
        origin=origin_of(tenant, "k2"),
    )
    repo.fail_job(second, "the store refused", server_side=True)
    failed = repo.get_job(second)
    assert (failed.state, failed.error, failed.idempotency_key) == (
        JobState.FAILED,
        "the store refused",
        None,
    )
    assert idempotent(repo, tenant, "k2") is None
    third = tenant_job(repo, origin_of(tenant, "k2"))
    assert idempotent(repo, tenant, "k2") == third


def test_cancel_is_false_for_a_job_that_finished_while_it_waited(sessions: sessionmaker[Session]) -> None:
    """The job reads as running, then its last task completes (another transaction holds their
    rows, as `complete` does) before the cancel's UPDATE gets them: the cancel changes nothing
    and says so."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the cancel cannot wait on a row lock")
    repo = Repository(sessions)
    plan_id = new_job(repo)
    assert repo.claim(plan_id, "w") is not None
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    with engine.connect() as other, ThreadPoolExecutor(1) as pool:
        other.execute(text("UPDATE tasks SET state = 'done' WHERE id = :id"), {"id": plan_id})
        other.execute(text("UPDATE jobs SET state = 'done' WHERE id = 'job1'"))
        try:
            cancelled = pool.submit(repo.cancel_job, "job1")
            deadline = time.monotonic() + 30
            while True:
                with engine.connect() as watcher:  # a transaction of its own: a fresh view of the waits
                    if watcher.scalar(waiting):
                        break
                assert time.monotonic() < deadline, "the cancel never waited for the rows"
                time.sleep(0.05)
        finally:
            other.commit()
        assert cancelled.result(30) is False
    job = repo.get_job("job1")
    assert job.state == JobState.DONE and job.error is None
    assert [t.state for t in repo.tasks("job1")] == [TaskState.DONE]


def test_a_batch_is_summed_and_cancelled_in_one_go(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    tenant, other = tenant_with(sessions), tenant_with(sessions)
    mine, theirs = origin_of(tenant), origin_of(other)
    queued = tenant_job(repo, mine, "b1")
    under_way = tenant_job(repo, mine, "b1")
    done = tenant_job(repo, mine, "b1")
    failed = tenant_job(repo, mine, "b1")
    outside = tenant_job(repo, mine, "b2")
    not_mine = tenant_job(repo, theirs, "b1")  # the same batch id, another tenant's
    for job_id in (under_way, done, outside):
        repo.source_stored(job_id)
        [plan_id] = [t.id for t in repo.tasks(job_id)]
        assert repo.claim(plan_id, "w") is not None
        segments = [Segment(i, i * 10, None, 6) for i in range(2)]
        specs = expand(get_recipe("cartoon"), segments, "video", job_id, JobParams(".mp4"))
        repo.complete(plan_id, expansion=Expansion("video", {}, 12, specs))
    first, second = (t for t in repo.tasks(under_way) if t.stage == "style")
    repo.claim(first.id, "w")
    repo.complete(first.id)
    repo.claim(second.id, "w")
    repo.heartbeat(second.id, 3)  # 9 of 12 frames of style work: 9 of its 12 frames
    for task in repo.tasks(done):
        if task.stage == "style":
            repo.claim(task.id, "w")
            repo.complete(task.id)
    [assemble] = [t for t in repo.tasks(done) if t.stage == "assemble"]
    repo.claim(assemble.id, "w")
    repo.complete(assemble.id)
    repo.fail_job(failed, "broken")

    summary = repo.batch_summary(tenant.name, "b1")
    assert summary is not None
    assert summary.jobs_by_state == {"queued": 1, "running": 1, "done": 1, "failed": 1}
    assert (summary.jobs, summary.frames_total, summary.finished) == (4, 24, False)
    assert summary.frames_done == 12 + 9 == repo.progress([queued, under_way, done, failed]).frames_done
    assert repo.batch_summary(tenant.name, "nope") is None
    assert repo.batch_summary(other.name, "b2") is None

    assert repo.cancel_batch(tenant.name, "b1") == 2  # the queued one and the one under way
    states = {job_id: repo.get_job(job_id).state for job_id in (queued, under_way, done, failed)}
    assert states == {queued: "cancelled", under_way: "cancelled", done: "done", failed: "failed"}
    assert {t.state for t in repo.tasks(under_way)} == {TaskState.DONE, TaskState.CANCELLED}
    assert repo.claim(second.id, "w2") is None and not repo.heartbeat(second.id, 4)
    assert repo.get_job(outside).state == JobState.RUNNING
    assert repo.get_job(not_mine).state == JobState.QUEUED
    after = repo.batch_summary(tenant.name, "b1")
    assert after is not None and after.finished
    assert after.jobs_by_state == {"cancelled": 2, "done": 1, "failed": 1}
    assert repo.cancel_batch(tenant.name, "b1") == 0
    assert repo.cancel_batch(tenant.name, "nope") is None
