"""What the API process holds for its whole life, and the work it does in the background."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import Any

from orchestrator.db import make_engine, make_sessions, upgrade
from orchestrator.dispatch import CeleryDispatcher
from orchestrator.repository import Repository
from orchestrator.retention import gc
from orchestrator.retry import RetryPolicy
from orchestrator.settings import Settings
from orchestrator.store import Store, open_store
from orchestrator.tenants import Tenants
from orchestrator.webhooks import Sender, Webhooks

log = logging.getLogger("frameq.api")

WEBHOOK_EVERY_S = 1.0
HOUSEKEEPING_EVERY_S = 10.0


@dataclass
class Services:
    settings: Settings
    repo: Repository
    tenants: Tenants
    webhooks: Webhooks
    store: Store
    dispatcher: CeleryDispatcher | None  # distributed mode: where ready tasks are sent
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pool: list[SpawnProcess] = field(default_factory=list)
    _pool_stop: Any = None

    @classmethod
    def open(cls, settings: Settings) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        if settings.embedded:
            upgrade(engine)  # as `frameq run` does; a cluster's database is migrated by `frameq db upgrade`
        sessions = make_sessions(engine)
        repo = Repository(sessions)
        dispatcher = None if settings.embedded else CeleryDispatcher.from_settings(settings, repo)
        store = open_store(settings.store_url, settings.home / "scratch")
        return cls(settings, repo, Tenants(sessions), Webhooks(sessions), store, dispatcher)

    def start(self, local_workers: int) -> None:
        """Background work: webhooks always; in embedded mode a pool of `local_workers`
        processes running tasks, and the housekeeping a cluster's reconciler does."""
        self._spawn(self._deliver_webhooks, "frameq-webhooks")
        if self.settings.embedded:
            self._spawn(self._housekeeping, "frameq-housekeeping")
            context = multiprocessing.get_context("spawn")  # never fork a process with threads
            self._pool_stop = context.Event()
            for n in range(local_workers):
                process = context.Process(
                    target=_local_worker, args=(self.settings, self._pool_stop), name=f"frameq-worker-{n}"
                )
                process.start()
                self._pool.append(process)

    def stop(self) -> None:
        self._stop.set()
        if self._pool_stop is not None:
            self._pool_stop.set()  # workers stop after their current task
        for thread in self._threads:
            thread.join(15)
        for process in self._pool:
            process.join(30)
            if process.is_alive():
                process.terminate()  # its task's lease runs out and the next start runs it again
                process.join(5)
        self._pool.clear()
        # The event's semaphores are released with the last reference to it; one still held at
        # exit is reported by multiprocessing's resource tracker as leaked.
        self._pool_stop = None

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _deliver_webhooks(self) -> None:
        sender = Sender(self.webhooks, self.settings.webhook_allow_private)
        try:
            while not self._stop.wait(WEBHOOK_EVERY_S):
                try:
                    sender.round()
                except Exception as exc:  # a database blip: the next round tries again
                    log.warning("webhook round failed: %s: %s", type(exc).__name__, exc)
        finally:
            sender.close()

    def _housekeeping(self) -> None:
        """What the reconciler does in a cluster: tasks of a local worker that died are given
        back (their lease ran out), and finished jobs' leftovers are deleted."""
        policy = RetryPolicy()
        while not self._stop.wait(HOUSEKEEPING_EVERY_S):
            try:
                self.repo.reap_expired(policy.max_attempts)
                gc(
                    self.repo,
                    self.store,
                    older_than_s=self.settings.outputs_ttl_s,
                    grace_s=self.settings.lease_s,
                )
            except Exception as exc:
                log.warning("housekeeping failed: %s: %s", type(exc).__name__, exc)


def _local_worker(settings: Settings, stop: Any) -> None:
    from workers.local import serve
    from workers.runtime import Runtime

    serve(Runtime.open(settings), stop)
