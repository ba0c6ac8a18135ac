"""The webhook outbox after a backlog built up: thousands of finished jobs with a webhook and no
delivery yet get theirs over a few rounds, each bounded, those that finished first first (on
SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.schema import Job, JobState, Tenant, WebhookDelivery
from orchestrator.webhooks import ENQUEUE_LIMIT, Webhooks

JOBS = 8000  # 9 parameters a delivery in one INSERT: 72,000, past PostgreSQL's 65,535


def test_a_backlog_of_finished_jobs_gets_its_deliveries_over_bounded_rounds(
    sessions: sessionmaker[Session],
) -> None:
    tenant = f"outbox-{secrets.token_hex(4)}"
    start = datetime(2025, 1, 1)
    order = list(range(JOBS))
    random.Random(0).shuffle(order)  # ids in another order than their ends
    states = [JobState.DONE, JobState.FAILED, JobState.CANCELLED]
    rows = [
        {
            "id": f"b{tenant[-8:]}{n:05d}",
            "recipe": "cartoon",
            "input_name": "in.png",
            "source_key": "uploads/in.png",
            "state": states[n % 3],
            "tenant": tenant,
            "webhook_url": f"https://example.com/hooks/{n}",
            "finished_at": start + timedelta(seconds=order[n]),
            "params": {},
            "media": {},
        }
        for n in range(JOBS)
    ]
    unfinished = {**rows[0], "id": f"r{tenant[-8:]}", "state": JobState.RUNNING, "finished_at": None}
    no_hook = {**rows[0], "id": f"n{tenant[-8:]}", "webhook_url": None}
    with sessions.begin() as s:
        s.add(Tenant(name=tenant, webhook_secret="whsec_", max_active_jobs=1, max_queued_frames=1))
    try:
        with sessions.begin() as s:
            s.execute(insert(Job), [*rows, unfinished, no_hook])  # executemany
        webhooks = Webhooks(sessions)
        first_finished = {rows[n]["id"] for n in range(JOBS) if order[n] < ENQUEUE_LIMIT}
        rounds = []
        while made := webhooks.enqueue_finished():
            rounds.append(made)
            assert made <= ENQUEUE_LIMIT
            if len(rounds) == 1:  # the jobs that finished first come first
                with sessions() as s:
                    assert set(s.scalars(select(WebhookDelivery.job_id))) == first_finished
            assert len(rounds) <= JOBS // ENQUEUE_LIMIT + 1
        assert sum(rounds) == JOBS and len(rounds) == -(-JOBS // ENQUEUE_LIMIT)
        with sessions() as s:
            delivered = list(s.scalars(select(WebhookDelivery.job_id)))
            assert len(delivered) == len(set(delivered)) == JOBS
            assert set(delivered) == {row["id"] for row in rows}
            untimed = WebhookDelivery.created_at.is_(None) | WebhookDelivery.next_attempt_at.is_(None)
            assert s.scalar(select(func.count()).where(untimed)) == 0
            events = dict(
                s.execute(select(WebhookDelivery.event, func.count()).group_by(WebhookDelivery.event)).all()
            )
        assert events == {"job.done": 2667, "job.failed": 2667, "job.cancelled": 2666}
        # and the sender's rounds hand them out as usual
        due = webhooks.due(5)
        assert len(due) == 5 and all(d.url.startswith("https://example.com/hooks/") for d in due)
    finally:
        with sessions.begin() as s:
            s.execute(delete(Job).where(Job.tenant == tenant))  # their deliveries with them
            s.execute(delete(Tenant).where(Tenant.name == tenant))
