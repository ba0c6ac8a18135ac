"""Progress of many jobs at once is read in a fixed number of statements, not several per job."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from frameq import progress
from frameq.progress import ProgressBar
from orchestrator.repository import Repository
from orchestrator.schema import Job, JobState, Task
from tests.integration.rows import add_job_in

JOBS = 1000


@contextmanager
def statements(sessions: sessionmaker[Session]) -> Iterator[list[str]]:
    """The SQL statements run on the sessions' engine inside the block."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine)
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def a_directory_of_jobs(sessions: sessionmaker[Session], n: int) -> list[str]:
    """Jobs of two tasks of 10 frames: every 10th finished, every other 7th with a task running
    (4 frames done) after one done, the rest not started."""
    ids = [f"job{i:04d}" for i in range(n)]
    with sessions.begin() as s:
        for i, job_id in enumerate(ids):
            states = ["done", "done"] if i % 10 == 0 else ["done", "running"] if i % 7 == 0 else ["ready"] * 2
            add_job_in(s, job_id, states)
        s.execute(update(Task).where(Task.state == "done").values(frames_done=Task.frames_total))
        s.execute(update(Task).where(Task.state == "running").values(frames_done=4, stage="composite"))
        s.execute(
            update(Job)
            .where(Job.id.in_(ids[::10]))
            .values(state=JobState.DONE, finished_at=Job.created_at, started_at=Job.created_at)
        )
    return ids


def test_progress_of_a_thousand_jobs_is_one_statement(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    ids = a_directory_of_jobs(sessions, JOBS)
    with statements(sessions) as seen:
        totals = repo.progress(ids)
    assert len(seen) == 1
    running = len([i for i in range(JOBS) if i % 7 == 0 and i % 10 != 0])
    assert (totals.jobs, totals.jobs_finished, totals.frames_total) == (JOBS, 100, 20 * JOBS)
    assert totals.frames_done == 100 * 20 + running * (10 + 4)
    assert totals.current_stage == "composite"


def test_progress_sums_what_each_job_shows(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    ids = a_directory_of_jobs(sessions, 50)
    views = [repo.view(job_id) for job_id in ids]
    totals = repo.progress(ids)
    assert totals.jobs_finished == sum(1 for v in views if v.job.finished_at is not None)
    assert totals.frames_total == sum(v.job.frames_total for v in views)
    assert totals.frames_done == sum(v.frames_done for v in views)
    assert totals.current_stage == next(v.current_stage for v in views if v.current_stage)


def test_progress_of_nothing_and_of_plans(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    empty = repo.progress([])
    assert (empty.jobs, empty.jobs_finished, empty.frames_total, empty.frames_done) == (0, 0, 0, 0)
    repo.create_job(job_id="new", recipe="cartoon", input_name="in.mp4", source_key="k", params={})
    planning = repo.progress(["new", "missing"])  # not planned yet: no frames known
    assert (planning.jobs, planning.frames_total, planning.frames_done, planning.current_stage) == (
        1,
        0,
        0,
        None,
    )


def test_the_bar_refreshes_a_thousand_jobs_with_one_statement(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository(sessions)
    ids = a_directory_of_jobs(sessions, JOBS)
    expected = repo.progress(ids)
    monkeypatch.setattr(progress, "POLL_S", 3600.0)  # only the refreshes this test makes
    out = io.StringIO()
    with ProgressBar(repo, ids, enabled=True, file=out) as bar, statements(sessions) as seen:
        bar.refresh()
        assert len(seen) == 1
    shown = out.getvalue().split("\r")[-1]
    assert shown.startswith("composite")
    assert f"{expected.frames_done}/{expected.frames_total}" in shown
    assert f"jobs 100/{JOBS}" in shown


def test_listing_jobs_takes_the_same_statements_for_any_number(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    ids = a_directory_of_jobs(sessions, 60)
    with statements(sessions) as seen:
        listed = repo.list_jobs(limit=50)
    assert len(seen) <= 4
    assert len(listed) == 50
    for got in listed:
        want = repo.view(got.job.id)
        assert (got.job.id, got.job.state, got.frames_done) == (want.job.id, want.job.state, want.frames_done)
        assert (got.tasks_by_state, got.current_stage) == (want.tasks_by_state, want.current_stage)
    assert {v.job.id for v in listed} <= set(ids)
