"""Two workers at the same row at the same moment, on PostgreSQL (SQLite runs one writer at a time).

Each racer is a thread with its own connection. A third connection holds the contested row
locked until both racers wait on it, then lets go: every round is a real collision, not a
near miss that the scheduler happened to order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.repository import Repository
from orchestrator.schema import TaskState
from tests.integration.rows import add_job

ROUNDS = 30

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def collide(engine: Engine, task_id: int, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once, one thread each, all held up by the task's row lock until every
    one of them waits on it (or a few seconds passed, whatever they do). Returns their results."""
    with engine.connect() as holder:
        holder.execute(text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": task_id})
        return race(calls, lambda: release_when_blocked(holder, len(calls)))


def release_when_blocked(holder: Connection, waiters: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        holder.execute(text("SELECT pg_stat_clear_snapshot()"))  # else a transaction sees one snapshot
        blocked = holder.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
        if blocked is not None and blocked >= waiters:
            break
        time.sleep(0.005)
    holder.rollback()


def race(calls: list[Callable[[], Any]], meanwhile: Callable[[], None]) -> list[Any]:
    """Run the calls in threads started together; `meanwhile` runs while they are under way."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls) + 1)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    start.wait()
    meanwhile()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_two_workers_claiming_one_task_one_wins(sessions: sessionmaker[Session]) -> None:
    repo, engine = Repository(sessions), engine_of(sessions)
    for round_ in range(ROUNDS):
        (task_id,) = add_job(sessions, f"claim{round_}", ["ready"])
        claims = collide(engine, task_id, [partial(repo.claim, task_id, f"worker-{i}") for i in range(2)])
        winners = [task for task in claims if task is not None]
        assert len(winners) == 1, f"round {round_}: {len(winners)} workers claimed the task"
        (row,) = repo.tasks(f"claim{round_}")
        assert (row.state, row.worker, row.attempts) == (TaskState.RUNNING, winners[0].worker, 1)


def test_last_two_dependencies_finishing_at_once_make_the_dependent_ready_once(
    sessions: sessionmaker[Session],
) -> None:
    repo, engine = Repository(sessions), engine_of(sessions)
    for round_ in range(ROUNDS):
        job_id = f"deps{round_}"
        first, second, dependent = add_job(sessions, job_id, ["ready", "ready", "waiting"], {2: [0, 1]})
        assert repo.claim(first, "worker-a") and repo.claim(second, "worker-b")
        became_ready = collide(
            engine,
            dependent,
            [
                partial(repo.complete, first, worker="worker-a"),
                partial(repo.complete, second, worker="worker-b"),
            ],
        )
        both = [task_id for ready in became_ready for task_id in ready]
        assert both == [dependent], f"round {round_}: the racers made {both} ready"
        row = next(t for t in repo.tasks(job_id) if t.id == dependent)
        assert (row.state, row.deps_left) == (TaskState.READY, 0)
