"""The cluster lock (one reconciler at a time): held by one process, freed when it dies."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from sqlalchemy import create_engine, text

from orchestrator.db import ClusterLock
from tests.conftest import ROOT

HOLD = """
import sys, time
from orchestrator.db import ClusterLock
lock = ClusterLock(sys.argv[1], int(sys.argv[2]))
assert lock.held()
print("held", flush=True)
time.sleep(600)
"""


def a_key() -> int:
    return secrets.randbelow(2**31)  # this test's own, so no other lock on the server is touched


def eventually(condition: object, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_one_holder_at_a_time_until_it_lets_go(database_url: str) -> None:
    key = a_key()
    first, second = ClusterLock(database_url, key), ClusterLock(database_url, key)
    try:
        assert first.held()
        assert not second.held()
        assert first.held()  # asked again each round: still the holder
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()


def test_a_killed_holder_frees_the_lock(database_url: str) -> None:
    key = a_key()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, database_url, str(key)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    other = ClusterLock(database_url, key)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not other.held()
        os.kill(holder.pid, signal.SIGKILL)  # no goodbye to the server
        holder.wait()
        assert eventually(other.held)
    finally:
        holder.kill()
        holder.wait()
        other.release()


def test_a_holder_whose_connection_was_dropped_is_told(postgres_url: str) -> None:
    key = a_key()
    first, second = ClusterLock(postgres_url, key), ClusterLock(postgres_url, key)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        assert first.held()
        with admin.connect() as conn:
            dropped = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = :key AND granted"
                ),
                {"key": key},
            ).all()
        assert len(dropped) == 1
        assert eventually(second.held)
        assert not first.held()  # it notices, and does not think it still leads
    finally:
        first.release()
        second.release()
        admin.dispose()
