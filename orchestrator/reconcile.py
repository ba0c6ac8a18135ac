"""The reconciler: puts back what dead workers and a forgetful broker lost.

Every worker runs it (`ReconcileLoop`), one at a time across the cluster, so recovering from a
killed worker needs no process of its own. `frameq reconcile --every S` and the
`frameq.reconcile` periodic task of `frameq worker --beat` run it as well. Correctness never
rests on the broker's own redelivery.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from orchestrator.db import RECONCILER_LOCK_KEY, ClusterLock, make_engine, make_sessions
from orchestrator.dispatch import CeleryDispatcher
from orchestrator.repository import Repository
from orchestrator.retention import gc
from orchestrator.retry import RetryPolicy
from orchestrator.settings import Settings
from orchestrator.store import Store, open_store

log = logging.getLogger("frameq.reconcile")


@dataclass(frozen=True)
class Reconciled:
    requeued: list[int]  # leases ran out: ready again
    failed: list[int]  # leases ran out too often
    sent: list[int]  # messages sent (requeued + ready tasks whose message was lost)
    collected: int = 0  # objects deleted from the store (orchestrator/retention.py)


def reconcile(
    repo: Repository,
    dispatcher: CeleryDispatcher,
    settings: Settings,
    policy: RetryPolicy,
    store: Store | None = None,
) -> Reconciled:
    """One round. With `store`, also what finished jobs left there: failed and cancelled jobs'
    intermediates, and outputs past FRAMEQ_OUTPUTS_TTL_DAYS; and jobs whose submitter died
    before their input reached the store are failed (retention.gc)."""
    requeued, failed = repo.reap_expired(policy.max_attempts)
    # Never sent (the send failed after the task became ready): send it. Sent long ago: lost
    # only if its queue is empty, as a broker restart empties queues whole while a backlog
    # keeps its messages (so a backlog gets no duplicates).
    depths = dispatcher.queue_depths()
    stale = [
        t.id
        for t in repo.describe(repo.undispatched(settings.resend_s))
        if t.dispatched_at is None or depths.get(t.queue) == 0
    ]
    sent = dispatcher.send(sorted(set(requeued) | set(stale)))
    collected = 0
    if store is not None:
        collected = gc(repo, store, older_than_s=settings.outputs_ttl_s, grace_s=settings.lease_s).objects
    return Reconciled(requeued, failed, [task.id for task in sent], collected)


def every_s(settings: Settings) -> float:
    """How often to reconcile: a few times per lease, so a dead worker's task waits little
    longer than its lease, and never so often that idle clusters poll hard."""
    return max(5.0, settings.lease_s / 4)


class ReconcileLoop:
    """Reconciles every `every_s` in a thread of this process while it holds the cluster's
    reconciler lock; every other process skips its rounds. The holder keeps the lock round
    after round, so the cluster reconciles once per round however many workers it has, and
    when the holder dies the server frees the lock and the next worker to try takes over."""

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frameq-reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        # Opened here, not in __init__: its connections belong to this thread alone.
        engine = make_engine(self.settings.database_url)
        repo = Repository(make_sessions(engine))
        lock = ClusterLock(self.settings.database_url, RECONCILER_LOCK_KEY)
        leading = False
        try:
            while True:
                try:  # a store client that cannot be made yet is tried again next round
                    dispatcher = CeleryDispatcher.from_settings(self.settings, repo)
                    store = open_store(self.settings.store_url, self.settings.home / "scratch")
                    break
                except Exception as exc:
                    log.warning("reconciler not started, again in %gs: %s", every_s(self.settings), exc)
                    if self._stop.wait(every_s(self.settings)):
                        return
            while True:
                leading = self._round(repo, dispatcher, store, lock, leading)
                if self._stop.wait(every_s(self.settings)):
                    return
        finally:
            lock.release()
            engine.dispose()

    def _round(
        self, repo: Repository, dispatcher: CeleryDispatcher, store: Store, lock: ClusterLock, leading: bool
    ) -> bool:
        """One round; returns whether this process is the cluster's reconciler now."""
        try:
            if not lock.held():
                return False
            if not leading:
                log.info("this worker reconciles the cluster now (every %gs)", every_s(self.settings))
            done = reconcile(repo, dispatcher, self.settings, self.policy, store)
            if done.requeued or done.failed or done.sent or done.collected:
                log.info(
                    "reconciled: requeued %s, failed %s, sent %s, %s objects deleted",
                    done.requeued,
                    done.failed,
                    done.sent,
                    done.collected,
                )
            return True
        except Exception as exc:  # a database or broker blip: the next round tries again
            log.warning(
                "reconcile failed, again in %gs: %s: %s", every_s(self.settings), type(exc).__name__, exc
            )
            return leading
