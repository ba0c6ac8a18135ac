"""Webhooks: telling a job's submitter that it ended, reliably, signed, never to internal hosts.

An outbox in the database: when a job with a webhook URL has finished, `enqueue_finished`
records one delivery for it (a unique (job, event) row, so two API processes never make two);
`due` claims deliveries whose time has come by pushing their next attempt a lease ahead, so a
process that dies mid-send leaves them to another; each request sent is logged as an attempt.
A delivery that fails is retried with growing delays (RETRY_DELAYS_S), then marked failed;
`replay` sends it again.

Receivers are the tenants' own servers, so none is trusted to behave: a `Sender` sends several
deliveries at once and each attempt, from resolving the host to the answer's status line, ends
within TIMEOUT_S (a receiver dripping its answer a byte at a time, or a resolver that does not
answer, included); the answer's body is not read; each attempt resolves the host once, checks
those addresses (an IPv6 form carrying an internal IPv4 address included) and connects to one
of them, not only when the URL was checked.

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
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
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
    utcnow,
)

# Delays before the 2nd, 3rd, ... attempt: quick first retries for a receiver restarting, then
# spread over about six hours for one that is down (the schedule of common webhook senders).
RETRY_DELAYS_S = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 3 * 3600.0)
log = logging.getLogger("frameq.webhooks")

SEND_LEASE_S = 60.0  # a claimed delivery not recorded within this is claimed again
TIMEOUT_S = 10.0  # for a whole attempt, from connecting to the answer's status line
SENDERS = 8  # deliveries sent at once
ENQUEUE_LIMIT = 500  # deliveries recorded per round (9 parameters each, in one INSERT)
EVENTS = {"done": "job.done", "failed": "job.failed", "cancelled": "job.cancelled"}


Lookup = Callable[[str, int], Sequence[str]]  # (host, port) -> its addresses, as getaddrinfo finds them


def getaddrinfo(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, each once, in its order."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(
    url: str, allow_private: bool, timeout_s: float = TIMEOUT_S, lookup: Lookup = getaddrinfo
) -> str:
    """An http(s) URL whose host resolves only to public addresses (unless `allow_private`):
    a tenant must not make frameq call into its own network."""
    host, port = url_host(url)
    if not allow_private:
        try:
            allowed_addresses(host, port, allow_private, timeout_s, lookup)
        except TimeoutError:
            raise ConfigError(f"webhook host {host!r} does not resolve within {timeout_s:g} s") from None
    return url


def url_host(url: str) -> tuple[str, int]:
    """The host and port of a webhook URL, refused unless it is plain http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a bad [IPv6] host or port: refused now, not at every attempt
        raise ConfigError(f"webhook URL {url!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook URL must be http:// or https:// with a host, got {url!r}")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"webhook URL {url!r} must not contain spaces or control characters")
    if parts.username or parts.password:
        raise ConfigError("webhook URL must not carry credentials")
    return parts.hostname, port


def allowed_addresses(
    host: str, port: int, allow_private: bool, timeout_s: float = TIMEOUT_S, lookup: Lookup = getaddrinfo
) -> list[str]:
    """The addresses `host` resolves to, refused if any is internal (unless `allow_private`).
    Raises TimeoutError when the resolver takes over `timeout_s`."""
    addresses = resolve(host, port, timeout_s, lookup)
    for text in addresses if not allow_private else ():
        address = ipaddress.ip_address(text.split("%")[0])
        if is_internal(address):
            raise ConfigError(
                f"webhook host {host!r} is a loopback, link-local or private address ({address}); "
                "FRAMEQ_WEBHOOK_ALLOW_PRIVATE=1 allows it"
            )
    return addresses


def resolve(host: str, port: int, timeout_s: float, lookup: Lookup = getaddrinfo) -> list[str]:
    """`lookup(host, port)` within `timeout_s`: run in a thread of its own, since getaddrinfo
    takes no timeout and a slow resolver would otherwise hold a sender past its deadline (the
    thread is left to end by itself). Raises ConfigError when the host does not resolve, and
    TimeoutError when the answer is late."""
    if _literal(host):
        return [host]  # an address: nothing to ask
    answer: list[Sequence[str] | Exception] = []
    done = threading.Event()

    def run() -> None:
        try:
            answer.append(lookup(host, port))
        except Exception as exc:  # OSError; UnicodeError, for a name IDNA refuses
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="frameq-webhook-resolve", daemon=True).start()
    if not done.wait(max(0.0, timeout_s)):
        raise TimeoutError(f"resolving {host!r} took over {timeout_s:g} s")
    found = answer[0]
    if isinstance(found, Exception):
        raise ConfigError(f"webhook host {host!r} does not resolve: {found}")
    if not found:
        raise ConfigError(f"webhook host {host!r} does not resolve: no address")
    return list(found)


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


# IPv6 forms that carry an IPv4 address and reach it: `is_global` looks only at the IPv6 form.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix (RFC 6052)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use translators (RFC 8215)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, still routed by some stacks
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT (RFC 2765)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped (::ffff:a.b.c.d), 6to4
    (2002:aabb:ccdd::/48), NAT64 (64:ff9b::a.b.c.d), IPv4-compatible (::a.b.c.d),
    IPv4-translated (::ffff:0:a.b.c.d), or Teredo's client; None for any other."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in (_NAT64, _IPV4_COMPATIBLE, _IPV4_TRANSLATED)):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, reserved or multicast; for an IPv6 address that carries
    an IPv4 one, that one is judged as well."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64 or address.is_site_local:
            return True
        embedded = embedded_ipv4(address)
        if embedded is not None and is_internal(embedded):
            return True
    return not address.is_global or address.is_multicast


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
        "timestamp": (job.finished_at or utcnow()).isoformat() + "Z",  # naive UTC, as stored
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

    def enqueue_finished(self, limit: int = ENQUEUE_LIMIT) -> int:
        """Record a delivery for finished jobs with a webhook and none yet, at most `limit`
        of them, those that finished first first; how many. Bounded so that one statement's
        parameters stay within what the database takes (PostgreSQL: 65,535) after a backlog
        built up: the next rounds take the rest."""
        with self.sessions.begin() as s:
            jobs = list(
                s.scalars(
                    select(Job)
                    .where(
                        Job.webhook_url.is_not(None),
                        Job.state.in_(FINISHED_JOB_STATES),
                        ~exists().where(WebhookDelivery.job_id == Job.id),
                    )
                    .order_by(Job.finished_at.asc().nulls_last(), Job.id)
                    .limit(limit)
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
                }
                for job in jobs
            ]
            insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            # One statement, its rows as executemany's parameters: compiled once (and cached),
            # however many rows there are.
            statement = insert(WebhookDelivery).values(next_attempt_at=db_now(), created_at=db_now())
            s.execute(statement.on_conflict_do_nothing(), rows)
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


class Deadline:
    """One end for every step of a request: a timeout per read alone would let a receiver that
    answers a byte at a time hold the sender for ever."""

    def __init__(self, end: float) -> None:
        self.end = end  # time.monotonic()

    def left(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise expired("timed out")
        return left if timeout is None else min(timeout, left)


class CheckedStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self.deadline.left(timeout, httpcore.ConnectTimeout)
        return CheckedStream(self.stream.start_tls(ssl_context, server_hostname, left), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class CheckedBackend(httpcore.NetworkBackend):
    """How webhooks connect: to the addresses the host resolved to for this attempt, checked
    then, and only to those (a host may resolve to a public address when its URL is checked at
    submission and to an internal one a moment later; asking again as the connection is made
    could give yet another), with every step, resolving included, ending by one deadline."""

    def __init__(self, allow_private: bool, deadline: float, lookup: Lookup = getaddrinfo) -> None:
        self.allow_private = allow_private
        self.deadline = Deadline(deadline)
        self.lookup = lookup
        self.tcp = httpcore.SyncBackend()
        self._resolved: dict[tuple[str, int], list[str]] = {}

    def addresses(self, host: str, port: int) -> list[str]:
        """The host's checked addresses, resolved once per backend (one attempt). Raises
        ConfigError for a host refused or unknown, httpcore.ConnectTimeout past the deadline."""
        key = (host.strip("[]").lower(), port)
        if key not in self._resolved:
            left = self.deadline.left(None, httpcore.ConnectTimeout)
            try:
                found = allowed_addresses(key[0], port, self.allow_private, left, self.lookup)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
            self._resolved[key] = found
        return self._resolved[key]

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.addresses(host, port)
        except ConfigError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception = httpcore.ConnectError(f"{host!r} has no address")
        for address in addresses:
            try:
                stream = self.tcp.connect_tcp(
                    address,
                    port,
                    self.deadline.left(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
                continue
            return CheckedStream(stream, self.deadline)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP")


_TLS = ssl.create_default_context()
# What an attempt may meet, recorded as its error (never raised: an attempt not recorded would
# be claimed again and again).
_FAILURES = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, ValueError)


def send(
    delivery: Due,
    allow_private: bool,
    timeout_s: float = TIMEOUT_S,
    tls: ssl.SSLContext = _TLS,
    lookup: Lookup = getaddrinfo,
) -> tuple[int | None, str | None]:
    """POST one delivery; (status, error). The host is resolved once for the attempt, within
    its timeout, its addresses checked (they may have changed since the URL was), and the
    connection goes to one of those. The receiver's status is its whole answer: its body is
    not read. `tls` verifies https receivers (the system's certificate authorities)."""
    backend = CheckedBackend(allow_private, time.monotonic() + timeout_s, lookup)
    try:
        backend.addresses(*url_host(delivery.url))
    except ConfigError as exc:
        return None, str(exc)
    except httpcore.TimeoutException:
        return None, f"timed out after {timeout_s:g} s"
    timestamp = int(time.time())
    headers: dict[bytes | str, bytes | str] = {
        "content-type": "application/json",
        "user-agent": "frameq-webhooks",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(delivery.secret, delivery.message_id, timestamp, delivery.body),
    }
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)
    try:
        with (
            httpcore.ConnectionPool(ssl_context=tls, network_backend=backend, max_connections=1) as pool,
            pool.stream(
                "POST", delivery.url, headers=headers, content=delivery.body, extensions={"timeout": timeouts}
            ) as answer,
        ):
            status = answer.status
    except httpcore.TimeoutException:
        return None, f"timed out after {timeout_s:g} s"
    except _FAILURES as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return status, None if 200 <= status < 300 else f"HTTP {status}"


class Sender:
    """Sends due deliveries on a few threads of its own. Each round claims only as many as it has
    threads free, and none waits for another: a receiver that takes its whole timeout holds up
    its own delivery, not those that fall due meanwhile."""

    def __init__(self, webhooks: Webhooks, allow_private: bool, threads: int = SENDERS) -> None:
        self.webhooks = webhooks
        self.allow_private = allow_private
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="frameq-webhook-send")
        self.free = threads
        self.lock = threading.Lock()

    def round(self) -> int:
        """Record what finished, start sending what is due. Returns how many were started."""
        self.webhooks.enqueue_finished()
        with self.lock:
            free = self.free
        if not free:
            return 0
        due = self.webhooks.due(free)
        with self.lock:
            self.free -= len(due)
        for delivery in due:
            self.pool.submit(self._deliver, delivery)
        return len(due)

    def _deliver(self, delivery: Due) -> None:
        try:
            started = time.perf_counter()
            status, error = send(delivery, self.allow_private)
            self.webhooks.record(delivery, status, error, int((time.perf_counter() - started) * 1000))
        except Exception as exc:  # not recorded (a database blip): claimed again once its lease ends
            log.warning("webhook %s: %s: %s", delivery.message_id, type(exc).__name__, exc)
        finally:
            with self.lock:
                self.free += 1

    def close(self) -> None:
        """Wait for the deliveries under way (TIMEOUT_S at most)."""
        self.pool.shutdown(wait=True)
