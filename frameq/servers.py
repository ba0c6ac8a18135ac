"""The servers of distributed mode, the database and the broker: one that does not answer is
named in one line (the setting and the address, never the password), not in a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError

from orchestrator.db import make_engine
from orchestrator.dispatch import CeleryDispatcher
from orchestrator.errors import ConfigError, FrameqError, Unreachable
from orchestrator.settings import Settings

# What the database driver and the broker client raise when their server does not answer.
DATABASE_ERRORS = (OperationalError, InterfaceError)
BROKER_ERRORS = (BrokerError, ConnectionError)


def redact(url: str) -> str:
    """The URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc))


def _reason(exc: BaseException) -> str:
    """The first line of what the driver said (SQLAlchemy wraps it, with a link, in more lines)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(cause).__name__


def database_unreachable(settings: Settings, exc: BaseException) -> FrameqError:
    """What a database error means to the user, in one line. A server that answered with an
    error code (wrong password, no such database, SQLite's lock) is not unreachable: waiting
    would not help, and the line says what it answered."""
    address = redact(settings.database_url)
    cause = getattr(exc, "orig", None)
    # libpq reports a server's refusal at connect time as "FATAL: ..." (no SQLSTATE then).
    answered = getattr(cause, "sqlstate", None) or "FATAL:" in str(cause)
    if answered or settings.database_url.startswith("sqlite"):
        return ConfigError(f"the database at {address} (FRAMEQ_DATABASE_URL) refused: {_reason(exc)}")
    return Unreachable("the database", "FRAMEQ_DATABASE_URL", address, _reason(exc))


def broker_unreachable(settings: Settings, exc: BaseException, then: str = "") -> Unreachable:
    """`then`: what became of the work, when some was done before the broker was needed."""
    reason = _reason(exc) + (f"; {then}" if then else "")
    return Unreachable("the broker", "FRAMEQ_BROKER_URL", redact(settings.broker_url or ""), reason)


def check_database(settings: Settings) -> None:
    """Connect once, on an engine of its own that is closed again: a worker checks before its
    pool forks, and a forked process must not inherit an open connection."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DATABASE_ERRORS as exc:
        raise database_unreachable(settings, exc) from None  # Unreachable, or refused for good
    finally:
        engine.dispose()


def wait_for_database(
    settings: Settings, say: Callable[[str], None], sleep: Callable[[float], None] = time.sleep
) -> None:
    """Until the database answers, say so and try again, backing off to every 30 s: a fleet of
    workers may well start before its database does."""
    attempt = 0
    while True:
        try:
            check_database(settings)
            return
        except Unreachable as exc:
            delay = min(30.0, 2.0**attempt)
            say(f"{exc}; trying again in {delay:g}s")
            sleep(delay)
            attempt += 1


def check_broker(dispatcher: CeleryDispatcher, settings: Settings) -> None:
    """Connect once, before anything is recorded or uploaded for a job that could not be sent."""
    try:
        with dispatcher.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)  # one try: sending retries on its own
    except BROKER_ERRORS as exc:
        raise broker_unreachable(settings, exc) from None
