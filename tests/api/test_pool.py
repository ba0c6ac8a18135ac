"""The local worker pool of `frameq api` in embedded mode, and what the API process keeps tidy:
a worker that dies is replaced (its task runs again), /readyz reports the pool, a worker
outlives database errors, the housekeeping holds the reconciler's lock, old upload spool files
go, and stopping closes the database and broker connections."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, make_url, select, update

from frameq.api.services import LocalPool, Services
from orchestrator.db import RECONCILER_LOCK_KEY, make_engine, make_sessions, upgrade
from orchestrator.repository import Repository
from orchestrator.schema import Task, TaskState
from orchestrator.settings import Settings
from orchestrator.store import open_store
from tests.api.server import ApiServer
from tests.integration.rows import add_job
from tests.media import make_video
from workers.local import serve
from workers.runtime import Runtime

DAY_S = 86400


@pytest.fixture(scope="module")
def pool_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """An embedded server with one local worker and a 4 s lease, started on a home whose upload
    folder holds what a crashed API process left: spool files two days and 23 hours old, and
    a file that is not a spool file."""
    root = tmp_path_factory.mktemp("pool")
    home = root / "home"
    uploads = home / "uploads"
    uploads.mkdir(parents=True)
    now = time.time()
    for name, age_s in [
        ("upload-dead1234.mp4", 2 * DAY_S),
        ("upload-dead5678", 2 * DAY_S),
        ("upload-recent99.png", 23 * 3600),
        ("notes.txt", 2 * DAY_S),
    ]:
        (uploads / name).write_bytes(b"x" * 100)
        os.utime(uploads / name, (now - age_s, now - age_s))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {"FRAMEQ_HOME": str(home), "FRAMEQ_LEASE_S": "4"}
    server = ApiServer(env, root / "api.log", local_workers=1)
    yield server
    server.stop()


def local_workers(parent: int) -> list[int]:
    """The pids of the API process's local workers: its children that multiprocessing spawned
    to run a function (not its resource tracker, another child)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_for_worker(api: ApiServer, other_than: int | None = None, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [pid for pid in local_workers(api.proc.pid) if pid != other_than]
        if len(found) == 1:
            return found[0]
        assert time.monotonic() < deadline, f"local workers: {local_workers(api.proc.pid)}"
        time.sleep(0.1)


def wait_ready(api: ApiServer, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(f"{api.url}/readyz", timeout=10)
        if answer.status_code == 200:
            return answer.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def png(tmp_path: Path) -> bytes:
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    return path.read_bytes()


def submit(client: httpx.Client, name: str, content: bytes) -> str:
    answer = client.post("/v1/jobs", files={"file": (name, content)}, data={"recipe": "cartoon"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_a_killed_local_worker_is_replaced_and_its_task_runs_again(
    pool_api: ApiServer, tmp_path: Path
) -> None:
    worker = wait_for_worker(pool_api)
    assert wait_ready(pool_api)["checks"] == {"database": "ok", "store": "ok", "workers": "1/1 alive"}
    _, key = pool_api.key()
    clip = make_video(tmp_path / "clip.mp4", width=160, height=120, frames=30)
    with pool_api.client(key) as client:
        # Given a job the only worker has begun
        job_id = submit(client, "clip.mp4", clip.path.read_bytes())
        deadline = time.monotonic() + 60
        while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) == "queued":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        assert state == "running"
        # When that worker is killed (as the kernel's OOM killer does)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        # Then another takes its place, and /readyz reports the pool whole again
        replacement = wait_for_worker(pool_api, other_than=worker)
        assert replacement != worker
        assert wait_ready(pool_api)["checks"]["workers"] == "1/1 alive"  # type: ignore[index]
        # and the job ends done: what the dead worker held runs again once its lease ran out
        job = pool_api.wait_finished(client, job_id, timeout_s=45)
        assert job["state"] == "done", job["error"]
        assert time.monotonic() - killed < 45
        # and a job submitted now runs as well
        later = submit(client, "in.png", png(tmp_path))
        assert pool_api.wait_finished(client, later, timeout_s=30)["state"] == "done"
    assert worker not in local_workers(pool_api.proc.pid)
    log = Path(pool_api.env["FRAMEQ_HOME"]).parent.joinpath("api.log").read_text()
    assert f"(pid {worker}) was killed by SIGKILL" in log, log[-3000:]


def test_old_upload_spool_files_are_deleted_when_the_api_starts(pool_api: ApiServer) -> None:
    uploads = Path(pool_api.env["FRAMEQ_HOME"]) / "uploads"
    left = {p.name for p in uploads.iterdir()}
    # Two days old: gone. 23 hours old (an upload another process may still be writing), and
    # what is not a spool file: kept.
    assert "upload-dead1234.mp4" not in left and "upload-dead5678" not in left
    assert {"upload-recent99.png", "notes.txt"} <= left


def test_the_housekeeping_holds_the_reconciler_lock(pool_api: ApiServer) -> None:
    # Two `frameq api` processes on one home would otherwise both give back expired tasks and
    # delete leftovers: the one holding the lock does (orchestrator.db.ClusterLock).
    path = Path(pool_api.env["FRAMEQ_HOME"]) / f"frameq.db.{RECONCILER_LOCK_KEY:x}.lock"
    deadline = time.monotonic() + 20  # the first round comes within max(5 s, lease / 4)
    while True:
        with open(path, "ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # held by the API process
            fcntl.flock(handle, fcntl.LOCK_UN)
        assert time.monotonic() < deadline, "the API's housekeeping never took the reconciler lock"
        time.sleep(0.2)


def test_a_worker_outlives_database_errors_between_tasks(tmp_path: Path) -> None:
    settings = Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home")})
    settings.home.mkdir()
    migrated = make_engine(settings.database_url)
    upgrade(migrated)
    sessions = make_sessions(migrated)
    (task_id,) = add_job(sessions, "locked", [TaskState.READY])
    with sessions.begin() as s:  # a task whose handler ends fast: planning a source not stored
        s.execute(update(Task).where(Task.id == task_id).values(name="media.plan", queue="media"))
    # A worker whose database answers "database is locked" after 0.2 s, not 30
    engine = create_engine(settings.database_url, connect_args={"timeout": 0.2})
    store = open_store(settings.store_url, settings.home / "scratch")
    runtime = Runtime(settings, Repository(make_sessions(engine)), store)
    locker = sqlite3.connect(settings.home / "frameq.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing: claiming the task fails
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(runtime, stop), kwargs={"idle_s": 0.1}, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        assert thread.is_alive()
        locker.execute("ROLLBACK")
        deadline = time.monotonic() + 30
        while True:
            with sessions() as s:
                task = s.scalars(select(Task).where(Task.id == task_id)).one()
            if task.state != TaskState.READY:
                break
            assert time.monotonic() < deadline, "the worker never claimed the task once it could"
            time.sleep(0.1)
        assert task.attempts == 1 and task.worker == runtime.name
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
        locker.close()
        engine.dispose()
        migrated.dispose()
    assert not thread.is_alive()


def test_workers_that_die_as_they_start_are_restarted_only_so_often(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file where the worker wants its folder: it exits at once")
    pool = LocalPool(Settings.from_env({"FRAMEQ_HOME": str(home)}), 1, restarts_per_minute=2)
    pool.start()

    def wait_ended() -> None:
        deadline = time.monotonic() + 60
        while pool.alive():
            assert time.monotonic() < deadline, "the worker did not exit"
            time.sleep(0.1)

    try:
        for _ in range(2):
            wait_ended()
            assert pool.supervise() == 1
        # The third death within the minute is not followed by a start
        wait_ended()
        for _ in range(5):
            assert pool.supervise() == 0 and pool.alive() == 0
            time.sleep(0.2)
    finally:
        pool.stop()


def open_files(prefix: str) -> int:
    """Files of this process whose path starts with `prefix`."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd).startswith(prefix)
        except OSError:
            continue
    return count


def tcp_connections(port: int) -> int:
    """Established TCP connections of this process to `port`."""
    sockets = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, state, inode = int(fields[2].rpartition(":")[2], 16), fields[3], fields[9]
            count += remote_port == port and state == "01" and inode in sockets
    return count


def test_stopping_an_embedded_api_closes_its_database(tmp_path: Path) -> None:
    settings = Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home")})
    database = str(settings.home / "frameq.db")
    services = Services.open(settings)
    services.start(0)
    services.webhooks.enqueue_finished()
    assert services.repo.next_ready() is None
    assert open_files(database) > 0
    services.stop()
    assert open_files(database) == 0


@pytest.mark.postgres
def test_stopping_a_distributed_api_closes_its_database_and_broker_connections(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    migrated = make_engine(postgres_url)
    upgrade(migrated)
    migrated.dispose()
    env = {"FRAMEQ_DATABASE_URL": postgres_url, "FRAMEQ_BROKER_URL": redis_url}
    settings = Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home"), **env})
    pg_port = make_url(postgres_url).port or 5432
    redis_port = urlsplit(redis_url).port or 6379
    before = tcp_connections(pg_port), tcp_connections(redis_port)
    services = Services.open(settings)
    services.start(0)
    services.webhooks.enqueue_finished()
    assert services.dispatcher is not None
    services.dispatcher.queue_depths()
    assert tcp_connections(pg_port) > before[0] and tcp_connections(redis_port) > before[1]
    services.stop()
    assert (tcp_connections(pg_port), tcp_connections(redis_port)) == before
