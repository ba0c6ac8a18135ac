"""The Celery app declares one queue per task type and routes each task type to its queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings
from orchestrator.tasktypes import QUEUES, TASK_TYPES, task_names
from workers.celery_app import make_app


def settings(tmp_path: Path, broker: str | None) -> Settings:
    env = {"FRAMEQ_HOME": str(tmp_path)}
    if broker:
        env["FRAMEQ_BROKER_URL"] = broker
    return Settings.from_env(env)


def test_app_declares_every_queue_and_reliability_options(tmp_path: Path) -> None:
    app = make_app(settings(tmp_path, "redis://127.0.0.1:6379/15"))
    assert sorted(q.name for q in app.conf.task_queues) == sorted(QUEUES)
    assert set(TASK_TYPES) <= set(app.tasks)
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


def test_app_needs_a_broker(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FRAMEQ_BROKER_URL"):
        make_app(settings(tmp_path, None))


def test_each_task_type_lands_in_its_queue_on_redis(tmp_path: Path, redis_url: str) -> None:
    app = make_app(settings(tmp_path, redis_url))
    for task_id, name in enumerate(TASK_TYPES):
        app.send_task(name, args=[task_id])
    client = redis.Redis.from_url(redis_url)
    for queue in QUEUES:
        names = [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]
        assert sorted(names) == sorted(task_names(queue))


def test_reconciler_resends_only_what_the_broker_lost(tmp_path: Path, redis_url: str, sessions) -> None:
    from orchestrator.dispatch import CeleryDispatcher
    from orchestrator.reconcile import reconcile
    from orchestrator.repository import Repository
    from orchestrator.retry import RetryPolicy

    cfg = settings(tmp_path, redis_url).with_changes(resend_s=1.0)
    repo = Repository(sessions)
    repo.create_job(job_id="j", recipe="cartoon", input_name="x", source_key="k", params={})
    (plan_id,) = repo.source_stored("j")
    dispatcher = CeleryDispatcher.from_settings(cfg, repo)
    dispatcher.send([plan_id])
    client = redis.Redis.from_url(redis_url)
    import time

    time.sleep(1.2)
    # The message is still queued (a backlog): no duplicate is sent
    assert reconcile(repo, dispatcher, cfg, RetryPolicy()).sent == []
    # The broker lost it (restart): it is sent again
    client.flushdb()
    assert reconcile(repo, dispatcher, cfg, RetryPolicy()).sent == [plan_id]
    assert dispatcher.queue_depths()["media"] == 1


def test_a_worker_keeps_one_ready_task_of_its_queues_only_while_nobody_waits(
    tmp_path: Path, redis_url: str, sessions
) -> None:
    from orchestrator.dispatch import CeleryDispatcher
    from orchestrator.repository import Repository
    from tests.integration.rows import add_job

    repo = Repository(sessions)
    dispatcher = CeleryDispatcher.from_settings(settings(tmp_path, redis_url), repo)
    matte, style, other = add_job(sessions, "j", ["ready", "ready", "ready"])
    with sessions.begin() as s:  # one task on another queue
        from orchestrator.schema import Task

        s.get_one(Task, matte).queue, s.get_one(Task, style).queue = "matte", "style"
        s.get_one(Task, matte).name, s.get_one(Task, style).name = "matte.person", "style.frames"
        s.get_one(Task, other).queue, s.get_one(Task, other).name = "style", "style.frames"
    # Nothing waits: the matte worker keeps the matte task, the others go to the broker
    assert dispatcher.send_all_but_one([matte, style, other], {"matte"}) == matte
    assert dispatcher.queue_depths(["matte", "style"]) == {"matte": 0, "style": 2}
    assert all(t.dispatched_at is not None for t in repo.tasks("j"))  # none looks lost
    # Something waits in a queue it serves: it keeps nothing, so it takes nobody's turn
    (late,) = add_job(sessions, "k", ["ready"])
    with sessions.begin() as s:
        s.get_one(Task, late).queue, s.get_one(Task, late).name = "style", "style.frames"
    assert dispatcher.send_all_but_one([late], {"matte", "style"}) is None
    assert dispatcher.queue_depths(["style"]) == {"style": 3}
