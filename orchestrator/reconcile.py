"""The reconciler: puts back what dead workers and a forgetful broker lost.

Run it periodically (`frameq reconcile --every S`, or the `frameq.reconcile` periodic task of
`frameq worker --beat`). Correctness never rests on the broker's own redelivery.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.dispatch import CeleryDispatcher
from orchestrator.repository import Repository
from orchestrator.retry import RetryPolicy
from orchestrator.settings import Settings


@dataclass(frozen=True)
class Reconciled:
    requeued: list[int]  # leases ran out: ready again
    failed: list[int]  # leases ran out too often
    sent: list[int]  # messages sent (requeued + ready tasks whose message was lost)


def reconcile(
    repo: Repository, dispatcher: CeleryDispatcher, settings: Settings, policy: RetryPolicy
) -> Reconciled:
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
    return Reconciled(requeued, failed, [task.id for task in sent])
