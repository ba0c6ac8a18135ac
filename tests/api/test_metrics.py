"""/metrics as Prometheus reads it: parsed from the real server's answer, the numbers following
what jobs submitted over HTTP did (done, failed, waiting), and the broker's queues in
distributed mode."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.dispatch import PRIORITIES
from orchestrator.tasktypes import TASK_TYPES
from tests.api.server import ApiServer
from tests.conftest import run_cli

CARTOON_TASKS = ("image.run",)  # an image: every stage of its recipe in one task


@dataclass
class Scrape:
    types: dict[str, str]  # family -> type, as the parser names them (counters without _total)
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def total(self, name: str, **labels: str) -> float:
        """Summed over every series of `name` that carries these labels."""
        wanted = set(labels.items())
        return sum(v for (n, have), v in self.samples.items() if n == name and wanted <= have)


def scrape(url: str) -> Scrape:
    answer = httpx.get(f"{url}/metrics", timeout=30)  # no key: a scraper holds none
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(types, samples)


def image(tmp_path: Path, seed: int = 0) -> bytes:
    path = tmp_path / f"in{seed}.png"
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (96, 112, 3), dtype=np.uint8))
    return path.read_bytes()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver on loopback that takes every delivery (204): (its URL, bodies received)."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_metrics_answer_without_a_key_in_prometheus_format(api: ApiServer) -> None:
    got = scrape(api.url)
    assert got.types == {
        "frameq_queue_depth": "gauge",
        "frameq_tasks_running": "gauge",
        "frameq_task_failures": "counter",
        "frameq_frames_processed": "counter",
        "frameq_task_duration_seconds": "histogram",
        "frameq_jobs": "gauge",
        "frameq_webhook_deliveries": "gauge",
    }  # embedded: no broker figures
    for name in TASK_TYPES:  # every series is there from the start, at 0 when idle
        for priority in PRIORITIES:
            assert got.value("frameq_queue_depth", task_type=name, priority=priority) >= 0
        assert got.value("frameq_task_duration_seconds_bucket", task_type=name, le="+Inf") >= 0
    for state in ("queued", "running", "done", "failed", "cancelled"):
        assert got.value("frameq_jobs", state=state) >= 0


def test_a_done_job_counts_its_tasks_frames_and_webhook(
    api: ApiServer, tmp_path: Path, receiver: tuple[str, list[bytes]]
) -> None:
    hook, received = receiver
    before = scrape(api.url)
    _, key = api.key()
    with api.client(key) as client:
        files = {"file": ("in.png", image(tmp_path))}
        answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon", "webhook_url": hook})
        assert answer.status_code == 201, answer.text
        job = api.wait_finished(client, answer.json()["id"])
    assert job["state"] == "done", job["error"]
    delivered = before.value("frameq_webhook_deliveries", state="delivered")
    deadline = time.monotonic() + 20
    while (after := scrape(api.url)).value("frameq_webhook_deliveries", state="delivered") == delivered:
        assert time.monotonic() < deadline, f"no delivery recorded ({len(received)} received)"
        time.sleep(0.3)
    assert len(received) == 1

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert grew("frameq_webhook_deliveries", state="delivered") == 1
    assert grew("frameq_jobs", state="done") == 1
    for name in TASK_TYPES:  # one task of each type the recipe has, none of the others
        assert grew("frameq_task_duration_seconds_count", task_type=name) == (name in CARTOON_TASKS), name
    assert grew("frameq_frames_processed_total", task_type="image.run") == 1  # one image, one frame
    assert grew("frameq_frames_processed_total", task_type="media.plan") == 0
    assert grew("frameq_task_duration_seconds_sum", task_type="image.run") > 0
    # The buckets are cumulative and end in the count.
    bounds = sorted(
        (float(dict(labels)["le"]), value)
        for (n, labels), value in after.samples.items()
        if n == "frameq_task_duration_seconds_bucket" and ("task_type", "image.run") in labels
    )
    counts = [value for _, value in bounds]
    assert counts == sorted(counts) and bounds[-1] == (
        float("inf"),
        after.value("frameq_task_duration_seconds_count", task_type="image.run"),
    )
    assert after.total("frameq_queue_depth") == 0 and after.total("frameq_tasks_running") == 0


def test_a_corrupt_upload_counts_as_a_failure(api: ApiServer) -> None:
    before = scrape(api.url)
    _, key = api.key()
    with api.client(key) as client:
        files = {"file": ("broken.png", b"\x89PNG but not really an image" * 8)}
        answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon"})
        assert answer.status_code == 201, answer.text
        job = api.wait_finished(client, answer.json()["id"])
    assert job["state"] == "failed" and "broken.png" in str(job["error"])
    after = scrape(api.url)
    assert after.value("frameq_task_failures_total", task_type="image.run") == (
        before.value("frameq_task_failures_total", task_type="image.run") + 1
    )
    assert after.value("frameq_jobs", state="failed") == before.value("frameq_jobs", state="failed") + 1
    assert after.total("frameq_task_failures_total") == before.total("frameq_task_failures_total") + 1


def test_jobs_waiting_for_a_worker_show_as_queue_depth(idle_api: ApiServer, tmp_path: Path) -> None:
    """No worker: every job submitted waits, its one task ready, until it is cancelled."""
    before = scrape(idle_api.url)
    _, key = idle_api.key()
    with idle_api.client(key) as client:

        def send(seed: int, priority: str) -> str:
            files = {"file": ("in.png", image(tmp_path, seed))}
            answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon", "priority": priority})
            assert answer.status_code == 201, answer.text
            return str(answer.json()["id"])

        ids = [send(seed, priority) for seed, priority in enumerate(["bulk", "bulk", "bulk", "high"])]
        waiting = scrape(idle_api.url)
        for job_id in ids:
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    after = scrape(idle_api.url)

    def grew(now: Scrape, name: str, **labels: str) -> float:
        return now.total(name, **labels) - before.total(name, **labels)

    for name in TASK_TYPES:  # only the images' tasks wait, each at its job's priority
        for priority in PRIORITIES:
            expected = {("image.run", "bulk"): 3, ("image.run", "high"): 1}.get((name, priority), 0)
            assert grew(waiting, "frameq_queue_depth", task_type=name, priority=priority) == expected
    assert waiting.total("frameq_tasks_running") == 0
    assert grew(waiting, "frameq_jobs", state="queued") == 4
    # Cancelled, they wait no more.
    assert after.total("frameq_queue_depth") == before.total("frameq_queue_depth")
    assert grew(after, "frameq_jobs", state="queued") == 0
    assert grew(after, "frameq_jobs", state="cancelled") == 4


def test_distributed_mode_reports_the_broker_queues(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """No worker runs: the jobs' first tasks stay ready in PostgreSQL and their messages in Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {
        "FRAMEQ_HOME": str(tmp_path / "home"),
        "FRAMEQ_DATABASE_URL": postgres_url,
        "FRAMEQ_BROKER_URL": redis_url,
        "FRAMEQ_STORE_URL": f"file://{tmp_path / 'store'}",
    }
    upgraded = run_cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    server = ApiServer(env, tmp_path / "api.log")
    try:
        before = scrape(server.url)
        assert before.types["frameq_broker_messages"] == "gauge"
        assert before.value("frameq_broker_up") == 1
        _, key = server.key()
        with server.client(key) as client:
            made = []
            for priority, seed in (("normal", 0), ("high", 1)):
                files = {"file": ("in.png", image(tmp_path, seed))}
                answer = client.post(
                    "/v1/jobs", files=files, data={"recipe": "cartoon", "priority": priority}
                )
                assert answer.status_code == 201, answer.text
                made.append(answer.json()["id"])
            after = scrape(server.url)
            for job_id in made:  # the database is the session's: leave no ready task to later tests
                assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
    finally:
        server.stop()

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert grew("frameq_broker_messages", queue="image") == 2  # both priority levels counted
    assert grew("frameq_broker_messages", queue="media") == 0
    assert grew("frameq_queue_depth", task_type="image.run", priority="normal") == 1
    assert grew("frameq_queue_depth", task_type="image.run", priority="high") == 1
    assert grew("frameq_jobs", state="queued") == 2
