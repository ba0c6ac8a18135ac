"""Sending ready tasks to their queues (distributed mode): the producer side of Celery.

A message carries only a task id; the row says what to do. Lost or duplicated messages are
harmless: the reconciler sends lost ones again, and a duplicate finds its task claimed or done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from kombu import Queue

from orchestrator.errors import ConfigError
from orchestrator.repository import ReadyTask, Repository
from orchestrator.settings import Settings
from orchestrator.tasktypes import QUEUES, TASK_TYPES

PRIORITIES = {"high": 10, "normal": 0, "bulk": -10}  # job priority, larger runs first
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
# Redis lists per priority step, popped in order: 0 first (kombu's Redis priority emulation).
BROKER_STEPS = [0, 5, 9]


def priority_name(priority: int) -> str:
    """A job's priority by its name: jobs are recorded at these levels only (`frameq submit
    --priority` and the API take the names; `frameq run` records normal's)."""
    return PRIORITY_NAMES[priority]


def broker_priority(job_priority: int) -> int:
    return 0 if job_priority > 0 else 9 if job_priority < 0 else 5


def celery_config(settings: Settings) -> dict[str, Any]:
    """What the producer and the workers must agree on."""
    if settings.broker_url is None:
        raise ConfigError("distributed mode needs FRAMEQ_BROKER_URL (for example redis://127.0.0.1:6379/0)")
    return {
        "broker_url": settings.broker_url,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_routes": {name: {"queue": t.queue, "routing_key": t.queue} for name, t in TASK_TYPES.items()},
        "task_default_queue": "media",
        "broker_transport_options": {"priority_steps": BROKER_STEPS, "queue_order_strategy": "priority"},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # results live in the database and the store
        "broker_connection_retry_on_startup": True,
    }


class CeleryDispatcher:
    def __init__(self, app: Celery, repo: Repository) -> None:
        self.app = app
        self.repo = repo

    @classmethod
    def from_settings(cls, settings: Settings, repo: Repository) -> CeleryDispatcher:
        app = Celery("frameq", set_as_current=False)
        app.conf.update(celery_config(settings))
        return cls(app, repo)

    def send(self, task_ids: Sequence[int], countdown_s: float | None = None) -> list[ReadyTask]:
        """Send these tasks to their queues (after `countdown_s`, for a retry)."""
        ready = self.repo.describe(task_ids)
        self._send(ready, countdown_s)
        self.repo.mark_dispatched([task.id for task in ready])
        return ready

    def _send(self, ready: Sequence[ReadyTask], countdown_s: float | None = None) -> None:
        for task in ready:
            self.app.send_task(
                task.name,
                args=[task.id],
                queue=task.queue,
                routing_key=task.queue,
                priority=broker_priority(task.priority),
                countdown=countdown_s,
            )

    def send_all_but_one(self, task_ids: Sequence[int], queues: set[str]) -> int | None:
        """Send these tasks, except one that the caller, a worker serving `queues`, may run
        itself at once: the first on one of them, when nothing of any priority waits in any of
        them (so running it here takes nobody's turn). Returns its id, or None. It is marked
        dispatched with the others, so the reconciler does not send it as a lost message."""
        ready = self.repo.describe(task_ids)
        keep = next((t for t in ready if t.queue in queues), None)
        if keep is not None and any(self.queue_depths(sorted(queues)).values()):
            keep = None
        self._send([t for t in ready if t is not keep])
        self.repo.mark_dispatched([t.id for t in ready])
        return keep.id if keep is not None else None

    def queue_depths(self, queues: Sequence[str] = QUEUES) -> dict[str, int]:
        """Messages waiting in each queue (all priority levels)."""
        depths = {}
        with self.app.pool.acquire(block=True) as conn:  # pooled: this runs between two tasks
            for queue in queues:
                try:
                    depths[queue] = conn.default_channel.queue_declare(
                        queue=queue, passive=True
                    ).message_count
                except ChannelError:  # never declared: nothing waiting
                    depths[queue] = 0
        return depths
