"""Engine and session factory for SQLite (embedded) and PostgreSQL (distributed)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

import migrations


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # The CLI's progress thread reads while the executor writes: WAL lets both proceed.
        engine = create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations on this engine's database up to `revision`."""
    from alembic import command

    # Several processes may start at once (a CLI run and `frameq jobs`, a fleet of workers):
    # only one may migrate, the others then find the database current.
    with _migration_lock(engine), engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it, dropping it and renaming the copy: with foreign
            # keys on, dropping `jobs` would cascade to every task and artifact. The pragma is
            # ignored inside a transaction, so it is turned off before the migration's begins.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                command.upgrade(migrations.alembic_config(connection), revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"migration left rows without their parents: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


# Arbitrary constants naming frameq's locks among PostgreSQL advisory locks.
MIGRATION_LOCK_KEY = 0x6672616D65
RECONCILER_LOCK_KEY = 0x6672616D66


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive file lock beside a SQLite database file (PostgreSQL locks in the database)."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ClusterLock:
    """A lock at most one process of the cluster holds, kept until it lets go or dies.

    On PostgreSQL, a session-level advisory lock on a connection of its own: the server frees
    it when that connection ends, the holder killed with SIGKILL or its host gone included (TCP
    keepalives on both ends find that out), so another process takes it at its next try. On
    SQLite (one machine) an exclusive file lock beside the database, freed by the kernel when the
    holder dies. `held()` is cheap enough to ask every round.
    """

    def __init__(self, database_url: str, key: int) -> None:
        self.key = key
        # A closed connection is gone (NullPool). TCP keepalives make the server notice a holder
        # whose host lost power or its network within about 30 s, not the system's 2 hours,
        # and so free the lock for another process.
        keepalives = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
        connect_args = keepalives if database_url.startswith("postgresql") else {}
        self._engine = create_engine(database_url, poolclass=NullPool, connect_args=connect_args)
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None

    def held(self) -> bool:
        """Take the lock if it is free; True while this process holds it."""
        if self._engine.dialect.name == "sqlite":
            return self._held_file()
        try:
            if self._conn is not None:
                self._conn.execute(text("SELECT 1"))  # the connection, and so the lock, still there
                self._conn.commit()
                return True
            conn = self._engine.connect()
            # The server side too probes the holder's connection, so a vanished host frees it.
            conn.execute(text("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5"))
            conn.execute(text("SET tcp_keepalives_count = 3"))
            taken = conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key})
            conn.commit()  # the lock outlives the transaction; an idle connection holds it
            if taken:
                self._conn = conn
                return True
            conn.close()
            return False
        except DBAPIError:  # the server dropped the connection: the lock went with it
            self.release()
            return False

    def _held_file(self) -> bool:
        path = self._engine.url.database
        if not path or path == ":memory:":
            return True  # a private database: nobody else to share it with
        if self._file is None:
            handle = open(f"{path}.{self.key:x}.lock", "ab")  # noqa: SIM115 (kept open while held)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            with suppress(DBAPIError):  # already gone with its server session
                self._conn.close()  # ends the session, and with it the advisory lock
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None
