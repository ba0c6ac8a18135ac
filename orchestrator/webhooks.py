"""Webhooks: telling a job's submitter that it ended, reliably, signed, never to internal hosts.

An outbox in the database: when a job with a webhook URL has finished, `enqueue_finished`
records one delivery for it (a unique (job, event) row, so two API processes never make two);
`due` claims deliveries whose time has come by pushing their next attempt a lease ahead, so a
process that dies mid-send leaves them to another; each request sent is logged as an attempt.
A delivery that fails is retried with growing delays (RETRY_DELAYS_S), then marked failed;
`replay` sends it again.

Requests are signed as the Standard Webhooks specification says: headers `webhook-id` (the
same on every retry, so a receiver can drop duplicates), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the tenant's
secret, its `whsec_` base64 after the prefix).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.clock import db_now
from orchestrator.errors import ConfigError
from orchestrator.schema import (
    FINISHED_JOB_STATES,
    Job,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookState,
)

# Delays before the 2nd, 3rd, ... attempt: quick first retries for a receiver restarting, then
# spread over about six hours for one that is down (the schedule of common webhook senders).
RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 3 * 3600.0)
SEND_LEASE_S = 60.0  # a claimed delivery not recorded within this is claimed again
TIMEOUT_S = 10.0
EVENTS = {"done": "job.done", "failed": "job.failed", "cancelled": "job.cancelled"}


def check_url(url: str, allow_private: bool) -> str:
    """An http(s) URL whose host resolves only to public addresses (unless `allow_private`):
    a tenant must not make frameq call into its own network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook URL must be http:// or https:// with a host, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("webhook URL must not carry credentials")
    if allow_private:
        return url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"webhook host {parts.hostname!r} does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise ConfigError(
                f"webhook host {parts.hostname!r} is a loopback, link-local or private address ({address}); "
                "FRAMEQ_WEBHOOK_ALLOW_PRIVATE=1 allows it"
            )
    return url


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: float = 300.0) -> bool:
    """What a receiver checks (the tests use it): a signature of ours, and a fresh timestamp.
    Header names in any case: HTTP's are case-insensitive, and receivers' frameworks differ in
    the case they hand them over in."""
    headers = {name.lower(): value for name, value in headers.items()}
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body)
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    given = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, g) for g in given)


def payload(job: Job, event: str) -> dict[str, Any]:
    return {
        "type": event,
        "timestamp": (job.finished_at or datetime.now()).isoformat() + "Z",
        "data": {
            "id": job.id,
            "state": job.state,
            "recipe": job.recipe,
            "input_name": job.input_name,
            "error": job.error,
            "frames_total": job.frames_total,
            "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
        },
    }


@dataclass(frozen=True)
class Due:
    """A claimed delivery: what to send, and with which secret."""

    id: int
    message_id: str
    url: str
    body: bytes
    secret: str
    attempts: int  # made before this one


class Webhooks:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def enqueue_finished(self) -> int:
        """Record a delivery for every finished job with a webhook and none yet; how many."""
        with self.sessions.begin() as s:
            jobs = list(
                s.scalars(
                    select(Job).where(
                        Job.webhook_url.is_not(None),
                        Job.state.in_(FINISHED_JOB_STATES),
                        ~exists().where(WebhookDelivery.job_id == Job.id),
                    )
                ).all()
            )
            if not jobs:
                return 0
            rows = [
                {
                    "job_id": job.id,
                    "message_id": f"msg_{job.id}_{job.state}",
                    "event": EVENTS[job.state],
                    "url": job.webhook_url,
                    "payload": payload(job, EVENTS[job.state]),
                    "state": WebhookState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": db_now(),
                    "created_at": db_now(),
                }
                for job in jobs
            ]
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            s.execute(insert(WebhookDelivery).values(rows).on_conflict_do_nothing())
            return len(rows)

    def due(self, limit: int = 20) -> list[Due]:
        """Claim pending deliveries whose attempt is due."""
        with self.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.state == WebhookState.PENDING,
                        WebhookDelivery.next_attempt_at <= db_now(),
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                ).all()
            )
            if not ids:
                return []
            claimed = s.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(ids),
                    WebhookDelivery.state == WebhookState.PENDING,
                    WebhookDelivery.next_attempt_at <= db_now(),
                )
                .values(next_attempt_at=db_now(SEND_LEASE_S))
                .returning(WebhookDelivery.id)
            ).all()
            rows = s.execute(
                select(WebhookDelivery, Tenant.webhook_secret)
                .join(Job, Job.id == WebhookDelivery.job_id)
                .join(Tenant, Tenant.name == Job.tenant)
                .where(WebhookDelivery.id.in_([c[0] for c in claimed]))
            ).all()
            return [
                Due(d.id, d.message_id, d.url, json.dumps(d.payload).encode(), secret, d.attempts)
                for d, secret in rows
            ]

    def record(self, delivery: Due, status_code: int | None, error: str | None, duration_ms: int) -> None:
        """Log an attempt; a 2xx delivers, anything else schedules the next try or gives up."""
        ok = status_code is not None and 200 <= status_code < 300
        attempts = delivery.attempts + 1
        with self.sessions.begin() as s:
            s.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    at=db_now(),
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            values: dict[str, Any] = {"attempts": attempts}
            if ok:
                values |= {"state": WebhookState.DELIVERED, "delivered_at": db_now()}
            elif attempts > len(RETRY_DELAYS_S):
                values |= {"state": WebhookState.FAILED}
            else:
                values |= {"next_attempt_at": db_now(RETRY_DELAYS_S[attempts - 1])}
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))

    def deliveries(self, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
        with self.sessions() as s:
            found = list(
                s.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.job_id == job_id)
                    .order_by(WebhookDelivery.id)
                ).all()
            )
            attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in found}
            for attempt in s.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttempt.id)
            ):
                attempts[attempt.delivery_id].append(attempt)
        return [(d, attempts[d.id]) for d in found]

    def replay(self, job_id: str, delivery_ids: Sequence[int] | None = None) -> int:
        """Send the job's deliveries (these, or all) again now, whatever became of them."""
        with self.sessions.begin() as s:
            query = update(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
            if delivery_ids is not None:
                query = query.where(WebhookDelivery.id.in_(delivery_ids))
            changed = s.execute(
                query.values(state=WebhookState.PENDING, attempts=0, next_attempt_at=db_now()).returning(
                    WebhookDelivery.id
                )
            ).all()
            return len(changed)


def send(client: httpx.Client, delivery: Due, allow_private: bool) -> tuple[int | None, str | None]:
    """POST one delivery; (status, error). The host is checked again: its address may have changed."""
    try:
        check_url(delivery.url, allow_private)
    except ConfigError as exc:
        return None, str(exc)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "frameq-webhooks",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(delivery.secret, delivery.message_id, timestamp, delivery.body),
    }
    try:
        answer = client.post(delivery.url, content=delivery.body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return answer.status_code, None if answer.is_success else f"HTTP {answer.status_code}"


def deliver_round(webhooks: Webhooks, client: httpx.Client, allow_private: bool) -> int:
    """One round: record what finished, send what is due. Returns how many were sent."""
    webhooks.enqueue_finished()
    sent = 0
    for delivery in webhooks.due():
        started = time.perf_counter()
        status, error = send(client, delivery, allow_private)
        webhooks.record(delivery, status, error, int((time.perf_counter() - started) * 1000))
        sent += 1
    return sent
