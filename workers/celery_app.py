"""The Celery app for distributed mode: one queue per task type, routed by the one table.

Built by `make_app(settings)`, nothing at import time. Every task type is the same thin
Celery task: it runs `workers.runtime.execute` on a task id (the database row says what to
do), then sends the tasks that became ready, or the same task again after a backoff; one ready
task for a queue this worker serves, with nothing waiting there, it runs itself next.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_process_init

from orchestrator.dispatch import CeleryDispatcher, celery_config
from orchestrator.reconcile import ReconcileLoop, reconcile
from orchestrator.settings import Settings
from orchestrator.tasktypes import TASK_TYPES
from workers.runtime import Runtime, execute

RECONCILE_TASK = "frameq.reconcile"


def make_app(settings: Settings) -> Celery:
    app = Celery("frameq", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.update(
        task_acks_late=True,  # a task whose worker dies is delivered again ...
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # ... and a busy worker holds no second long task back
        task_routes={**app.conf.task_routes, RECONCILE_TASK: {"queue": "media", "routing_key": "media"}},
        beat_schedule={"reconcile": {"task": RECONCILE_TASK, "schedule": max(5.0, settings.lease_s / 4)}},
    )
    runtimes: dict[int, tuple[Runtime, CeleryDispatcher]] = {}

    def runtime() -> tuple[Runtime, CeleryDispatcher]:
        """One per process, opened after the pool forks (so no database connection or CUDA
        context is ever shared with a parent): when the process starts, so that its first task
        does not wait for the store client and the database connection."""
        pid = os.getpid()
        if pid not in runtimes:
            opened = Runtime.open(settings)
            runtimes[pid] = (opened, CeleryDispatcher(app, opened.repo))
        return runtimes[pid]

    @worker_process_init.connect(weak=False)
    def open_runtime(**_: Any) -> None:
        runtime()

    def run(task_id: int) -> None:
        current, dispatcher = runtime()
        consumed = set(app.amqp.queues.consume_from)  # the queues of this worker's -Q
        next_id: int | None = task_id
        while next_id is not None:
            outcome = execute(current, next_id)
            if outcome.retry_in_s is not None:
                dispatcher.send([next_id], countdown_s=outcome.retry_in_s)
            # A task that became ready on a queue this worker serves, while nothing waits there,
            # runs here at once: the message round trip would only add latency between stages.
            next_id = dispatcher.send_all_but_one(outcome.ready, consumed)

    for name in TASK_TYPES:
        app.task(name=name)(run)

    @app.task(name=RECONCILE_TASK)
    def reconcile_task() -> None:
        current, dispatcher = runtime()
        reconcile(current.repo, dispatcher, settings, current.retry, current.store)

    reconcile_in_every_worker(app, settings)
    return app


def reconcile_in_every_worker(app: Celery, settings: Settings) -> None:
    """Each `frameq worker` runs the reconciler in a thread of its main process, so a killed
    worker's tasks come back without --beat or a reconcile process; the cluster's lock lets
    one worker at a time do it (orchestrator.reconcile.ReconcileLoop).

    A worker bootstep, started after the pool: its first processes are forked before the thread
    opens a connection (ones forked later inherit the thread's sockets but never use them: each
    opens its own runtime), and the thread stops with the worker.
    """

    class Reconciler(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Pool",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.loop = ReconcileLoop(settings)

        def start(self, parent: Any) -> None:
            self.loop.start()

        def stop(self, parent: Any) -> None:
            self.loop.stop()

    app.steps["worker"].add(Reconciler)
