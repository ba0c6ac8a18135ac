"""Fault tests: each ends with the job's output checked whole (frames, duration, audio, segments)."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from orchestrator.schema import utcnow
from tests.acceptance.cluster import Cluster, assert_complete_output
from tests.conftest import free_port
from tests.media import make_video


def long_clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "in.mp4", width=640, height=480, frames=120, gop=15).path


def reconcilers(cluster: Cluster) -> int:
    """How many worker processes have said they reconcile the cluster."""
    logs = sorted(cluster.tmp.glob("worker*.log"))
    return sum("reconciles the cluster now" in log.read_text(errors="replace") for log in logs)


def wait_until_styling(cluster: Cluster, job_id: str) -> None:
    deadline = time.monotonic() + 120
    while cluster.repo.view(job_id).frames_done == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.fixture
def private_redis() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A Redis server of this test's own, so it can be restarted without touching others."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]
    time.sleep(0.5)
    yield f"redis://127.0.0.1:{port}/0", procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_redis_restart_during_a_job(
    cluster: Cluster, tmp_path: Path, private_redis: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    url, procs = private_redis
    cluster.env.update(FRAMEQ_BROKER_URL=url, FRAMEQ_RESEND_S="3")
    # Given a job running on a worker with the periodic reconciler
    cluster.start_worker("-c", "1", "--beat")
    clip = long_clip(tmp_path)
    job_id = cluster.cli("submit", str(clip))
    wait_until_styling(cluster, job_id)
    # When Redis dies, losing every queued message, and comes back
    procs[0].kill()
    procs[0].wait()
    time.sleep(2)
    procs.append(subprocess.Popen(procs[0].args, stdout=subprocess.DEVNULL))
    restarted = utcnow()
    # Then the lost messages are sent again and the job completes whole
    cluster.wait_done(job_id)
    resent = [t for t in cluster.repo.tasks(job_id) if t.stage == "style" and t.dispatched_at > restarted]
    assert resent  # style messages are sent once, at planning: these were lost and sent again
    assert_complete_output(cluster, job_id, clip, tmp_path / "out.mp4")


class FlakyProxy(ThreadingHTTPServer):
    """Forwards HTTP to the S3 endpoint, answering 503 to the next `fail_count` requests whose
    method and path match (all the retries boto3 itself makes included)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_method = ""
        self.fail_path = ""
        self.fail_count = 0
        self.failed = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def should_fail(self, method: str, path: str) -> bool:
        with self.lock:
            if self.fail_count and method == self.fail_method and self.fail_path in path:
                self.fail_count -= 1
                self.failed += 1
                return True
            return False


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FlakyProxy

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.should_fail(self.command, self.path):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = self.server.upstream
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_store_failing_requests(cluster: Cluster, tmp_path: Path) -> None:
    proxy = FlakyProxy(cluster.env["AWS_ENDPOINT_URL"])
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    cluster.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        # Given a store that refuses a segment upload more often than boto3 tries (1 + 5 retries)
        proxy.fail_method, proxy.fail_path, proxy.fail_count = "PUT", "/style/", 6
        cluster.start_worker("-c", "1")
        clip = long_clip(tmp_path)
        job_id = cluster.cli("submit", str(clip))
        # Then frameq retries the task with backoff and the job completes whole
        cluster.wait_done(job_id)
        assert proxy.failed == 6
        retried = [t for t in cluster.repo.tasks(job_id) if t.stage == "style" and t.attempts > 1]
        assert [t.attempts for t in retried] == [2]  # released as transient, run again
        assert_complete_output(cluster, job_id, clip, tmp_path / "out.mp4")
    finally:
        proxy.shutdown()


def test_database_connections_dropped_mid_job(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker("-c", "1", "--beat")
    clip = long_clip(tmp_path)
    job_id = cluster.cli("submit", str(clip))
    wait_until_styling(cluster, job_id)
    # When the server drops every connection to the database a few times while work runs
    cluster.repo.sessions.kw["bind"].dispose()  # (the test's own idle ones are not counted)
    admin = create_engine(cluster.env["FRAMEQ_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    dropped = 0
    with admin.connect() as conn:
        for _ in range(6):
            dropped += len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
            )
            time.sleep(0.7)
    admin.dispose()
    assert dropped > 0
    # Then the workers reconnect and the job completes whole
    cluster.repo.sessions.kw["bind"].dispose()  # the test's own pool lost its connections too
    cluster.wait_done(job_id)
    assert_complete_output(cluster, job_id, clip, tmp_path / "out.mp4")


def test_workers_take_over_from_a_killed_worker_by_themselves(cluster: Cluster, tmp_path: Path) -> None:
    # Given two workers, neither with --beat, and no reconcile process
    cluster.env["FRAMEQ_SEGMENT_S"] = "1"  # segments long enough to be killed in the middle of
    workers = [cluster.start_worker("-c", "1") for _ in range(2)]
    clip = long_clip(tmp_path)
    job_id = cluster.cli("submit", str(clip))
    # When the worker styling a segment is killed with SIGKILL
    deadline = time.monotonic() + 120
    while not (
        styling := [
            t
            for t in cluster.repo.tasks(job_id)
            if t.stage == "style" and t.state == "running" and t.frames_done
        ]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert reconcilers(cluster) == 1  # one of them reconciles the cluster, the other skips
    dead = str(styling[0].worker)
    (victim,) = [w for w in workers if os.getpgid(int(dead.rsplit(":", 1)[1])) == w.pid]
    cluster.kill(victim)
    lost = [t.id for t in cluster.repo.tasks(job_id) if t.state == "running" and t.worker == dead]
    assert lost
    # Then the other worker finds the lease run out, takes the task over and finishes the job
    cluster.wait_done(job_id)
    retried = [t for t in cluster.repo.tasks(job_id) if t.id in lost]
    assert all(t.attempts == 2 and t.worker != dead for t in retried)
    assert_complete_output(cluster, job_id, clip, tmp_path / "out.mp4")
