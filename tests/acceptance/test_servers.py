"""Servers that refuse or do not answer: one line naming the setting and the address (never the
password), and what became of the job is the state the line states."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from sqlalchemy.engine import make_url

from orchestrator.schema import JobState, TaskState
from tests.acceptance import oneline
from tests.acceptance.cluster import Cluster
from tests.conftest import free_port, run_cli
from tests.media import make_video

DEAD_DATABASE = "postgresql+psycopg://postgres:secret@127.0.0.1:1/x"  # nothing listens on port 1
DEAD_BROKER = "redis://:secret@127.0.0.1:1/0"


class Forwarder:
    """A TCP port that, once opened, pipes its connections to a real server; after `accept`
    connections it closes again, as a server that goes away."""

    def __init__(self, target: str, accept: int | None = None) -> None:
        url = make_url(target)
        self.target = (url.host or "127.0.0.1", int(url.port or 0))
        self.port = free_port()
        self.accept = accept

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            accepted = 0
            while self.accept is None or accepted < self.accept:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
                accepted += 1

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    line = oneline.one_line_error(result)
    assert "secret" not in result.stderr  # the address is named without its password
    return line


def jobs_of(cluster: Cluster, clip: Path) -> list[str]:
    return [v.job.id for v in cluster.repo.list_jobs(1000) if v.job.input_name == str(clip)]


def stored_objects(cluster: Cluster) -> int:
    return int(boto3.client("s3").list_objects_v2(Bucket=cluster.env["FRAMEQ_TEST_BUCKET"])["KeyCount"])


def test_database_down(redis_url: str, frameq_env: dict[str, str], tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5).path
    env = {**frameq_env, "FRAMEQ_DATABASE_URL": DEAD_DATABASE, "FRAMEQ_BROKER_URL": redis_url}
    address = "postgresql+psycopg://postgres@127.0.0.1:1/x"
    expected = f"error: cannot reach the database at {address} (FRAMEQ_DATABASE_URL): "
    for args in (("submit", str(clip)), ("jobs",), ("status", "abc"), ("cancel", "abc")):
        line = one_line_error(run_cli(env, *args))
        assert line.startswith(expected) and "refused" in line, line


def test_broker_down_refuses_the_submission_before_any_work(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5).path
    result = run_cli({**cluster.env, "FRAMEQ_BROKER_URL": DEAD_BROKER}, "submit", str(clip))
    line = one_line_error(result)
    assert line.startswith("error: cannot reach the broker at redis://127.0.0.1:1/0 (FRAMEQ_BROKER_URL): ")
    assert jobs_of(cluster, clip) == [] and stored_objects(cluster) == 0


def test_broker_lost_while_submitting_leaves_the_job_for_the_reconciler(
    cluster: Cluster, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5).path
    # Given a broker that answers the check, then goes away before the job is sent
    broker = Forwarder(cluster.env["FRAMEQ_BROKER_URL"], accept=1)
    broker.open()
    env = {**cluster.env, "FRAMEQ_BROKER_URL": f"redis://:secret@127.0.0.1:{broker.port}/15"}
    line = one_line_error(run_cli(env, "submit", str(clip)))
    # Then the line says the job is queued, and it is: recorded, uploaded, its plan ready and unsent
    (job_id,) = jobs_of(cluster, clip)
    assert line.startswith(
        f"error: cannot reach the broker at redis://127.0.0.1:{broker.port}/15 (FRAMEQ_BROKER_URL): "
    )
    assert line.endswith(f"; job {job_id} is queued; will be sent when the broker is back")
    assert cluster.repo.get_job(job_id).state == JobState.QUEUED
    (plan,) = cluster.repo.tasks(job_id)
    assert plan.state == TaskState.READY and plan.dispatched_at is None
    assert stored_objects(cluster) == 1
    # And once the broker is back, the reconciler sends it and a worker runs the job
    assert cluster.cli("reconcile").startswith("requeued 0, failed 0, sent ")
    assert cluster.repo.tasks(job_id)[0].dispatched_at is not None
    cluster.start_worker("-c", "1")
    cluster.wait_done(job_id)


def test_worker_waits_for_the_database(cluster: Cluster) -> None:
    # Given a worker started before its database (nothing listens on the port yet)
    database = Forwarder(cluster.env["FRAMEQ_DATABASE_URL"])
    url = make_url(cluster.env["FRAMEQ_DATABASE_URL"]).set(port=database.port, password="secret")
    cluster.env["FRAMEQ_DATABASE_URL"] = url.render_as_string(hide_password=False)
    proc = cluster.start_worker("-c", "1")
    log = cluster.tmp / "worker0.log"
    address = url.render_as_string().replace(":***@", "@")  # as printed: without the password
    waiting = f"frameq worker: cannot reach the database at {address} (FRAMEQ_DATABASE_URL): "
    wait_for_line(log, waiting, proc)
    first = log.read_text().splitlines()[0]
    assert first.startswith(waiting) and first.endswith("; trying again in 1s"), first
    assert "secret" not in log.read_text() and proc.poll() is None
    # When the database comes up, the worker starts
    database.open()
    wait_for_line(log, " ready.", proc)
    assert "Traceback" not in log.read_text()


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not (log.exists() and text in log.read_text()):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_a_worker_does_not_wait_for_a_database_that_answers_no(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    # The server is there, the database is not: waiting would not help, so one line and out
    env = {
        **frameq_env,
        "FRAMEQ_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/frameq_no_such_database",
        "FRAMEQ_BROKER_URL": "redis://127.0.0.1:6379/15",
    }
    result = subprocess.run(
        [sys.executable, "-m", "frameq", "worker", "-Q", "media"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "FRAMEQ_DATABASE_URL" in result.stderr and "frameq_no_such_database" in result.stderr
    assert "trying again" not in result.stderr
