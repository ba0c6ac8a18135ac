"""Leases and task times come from the database's clock, whatever the host's clock says."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import repository, schema
from orchestrator.repository import Repository
from tests.integration.rows import add_job

SKEW = timedelta(hours=1)
SLACK = timedelta(seconds=2)  # statement latency, SQLite's millisecond precision


def database_now(sessions: sessionmaker[Session]) -> datetime:
    """Asked of the server directly, in each dialect's own words."""
    with sessions() as s:
        if s.get_bind().dialect.name == "sqlite":
            value = s.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
            return datetime.fromisoformat(str(value))
        return s.scalar(text("SELECT timezone('utc', clock_timestamp())"))  # type: ignore[no-any-return]


def host_clock_behind(monkeypatch: pytest.MonkeyPatch) -> Callable[[], datetime]:
    """This process's clock an hour slow, as on a host whose clock drifted."""
    real = schema.utcnow

    def slow() -> datetime:
        return real() - SKEW

    monkeypatch.setattr(schema, "utcnow", slow)
    monkeypatch.setattr(repository, "utcnow", slow, raising=False)
    return slow


@pytest.fixture
def slow_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[], datetime]:
    return host_clock_behind(monkeypatch)


def near(value: datetime | None, expected: datetime) -> bool:
    return value is not None and abs(value - expected) < SLACK


def test_task_times_follow_the_database_clock(
    sessions: sessionmaker[Session], slow_host: Callable[[], datetime]
) -> None:
    repo = Repository(sessions)
    (task_id,) = add_job(sessions, "job1", ["ready"])
    db_now = database_now(sessions)
    repo.mark_dispatched([task_id])
    task = repo.claim(task_id, "w", lease_s=60)
    assert task is not None
    assert near(task.dispatched_at, db_now) and near(task.started_at, db_now)
    assert near(task.lease_until, db_now + timedelta(seconds=60))
    assert near(repo.get_job("job1").started_at, db_now)
    repo.complete(task_id)
    (done,) = repo.tasks("job1")
    assert near(done.finished_at, db_now)


def test_a_worker_with_a_slow_clock_keeps_its_lease(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository(sessions)
    running, sent = add_job(sessions, "job1", ["ready", "ready"])
    # Given a worker (and a dispatcher) on a host whose clock is an hour slow
    host_clock_behind(monkeypatch)
    repo.mark_dispatched([sent])
    assert repo.claim(running, "w", lease_s=60)
    assert repo.heartbeat(running, 1, lease_s=60, worker="w")
    # When the reconciler runs on a host whose clock is right
    monkeypatch.undo()
    # Then the lease is still running and the message is recent
    assert repo.reap_expired(max_attempts=3) == ([], [])
    assert repo.undispatched(older_than_s=300) == []


def test_lease_renewals_have_sub_second_precision(sessions: sessionmaker[Session]) -> None:
    repo = Repository(sessions)
    (task_id,) = add_job(sessions, "job1", ["ready"])
    first = repo.claim(task_id, "w", lease_s=60)
    assert first is not None and first.lease_until is not None
    time.sleep(0.3)
    assert repo.heartbeat(task_id, 1, lease_s=60, worker="w")
    (renewed,) = repo.tasks("job1")
    assert renewed.lease_until is not None
    moved = (renewed.lease_until - first.lease_until).total_seconds()
    assert 0.25 < moved < 1.5


def test_a_failed_task_and_its_job_get_database_times(
    sessions: sessionmaker[Session], slow_host: Callable[[], datetime]
) -> None:
    repo = Repository(sessions)
    failing, waiting = add_job(sessions, "job1", ["ready", "waiting"])
    db_now = database_now(sessions)
    assert repo.claim(failing, "w")
    assert repo.fail(failing, "in.mp4: corrupt", worker="w")
    tasks = {t.id: t for t in repo.tasks("job1")}
    assert near(tasks[failing].finished_at, db_now) and near(tasks[waiting].finished_at, db_now)
    assert near(repo.get_job("job1").finished_at, db_now)
