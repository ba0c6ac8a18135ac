"""Webhooks from a real `frameq api` process to a receiver on 127.0.0.1: one signed delivery per
finished job, retries after a failed attempt, the delivery log, and replays."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from orchestrator.webhooks import RETRY_DELAYS_S, TIMEOUT_S, verify
from tests.api.server import ApiServer
from tests.media import make_video


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float  # time.monotonic()
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server in a thread that records every POST. Each endpoint answers the statuses
    it was made with, in turn, then 200; a dripping one never finishes its answer."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.plans: dict[str, list[int]] = {}
        self.dripping: set[str] = set()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    plan = receiver.plans.get(self.path, [])
                    status = plan.pop(0) if plan else 200
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.requests.append(Received(self.path, headers, body, time.monotonic(), status))
                if self.path in receiver.dripping:
                    self.drip()
                    return
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def drip(self) -> None:
                """A byte of a header that never ends every 0.2 s, until the sender hangs up."""
                self.wfile.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
                while self.path in receiver.dripping and not receiver.closed.wait(0.2):
                    try:
                        self.wfile.write(b"a")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def endpoint(self, *statuses: int, drip: bool = False) -> str:
        path = f"/hooks/{secrets.token_hex(4)}"
        with self.lock:
            self.plans[path] = list(statuses)
            if drip:
                self.dripping.add(path)
        return self.url + path

    def received(self, url: str) -> list[Received]:
        path = url.removeprefix(self.url)
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, url: str, count: int, timeout_s: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(got := self.received(url)) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} webhook requests to {url}"
            time.sleep(0.1)
        return got

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def standard_webhooks_valid(secret: str, request: Received) -> bool:
    """The check a receiver makes, written from the Standard Webhooks definition: HMAC-SHA256
    over "id.timestamp.body" keyed with the base64-decoded secret, one of the signatures."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = b".".join(
        [request.headers["webhook-id"].encode(), request.headers["webhook-timestamp"].encode(), request.body]
    )
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for signature in request.headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return True
    return False


def assert_signed(secret: str, request: Received) -> None:
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert verify(secret, request.headers, request.body)
    assert standard_webhooks_valid(secret, request)


def png(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    cv2.imwrite(str(path), rng.integers(0, 255, (96, 112, 3), dtype=np.uint8))
    return path.read_bytes()


def submit(client: httpx.Client, name: str, content: bytes, webhook_url: str) -> str:
    answer = client.post(
        "/v1/jobs", files={"file": (name, content)}, data={"recipe": "cartoon", "webhook_url": webhook_url}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["webhook_url"] == webhook_url
    return str(answer.json()["id"])


def deliveries(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/jobs/{job_id}/webhooks")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def wait_delivered(client: httpx.Client, job_id: str, attempts: int, timeout_s: float = 15) -> dict[str, Any]:
    """The job's one delivery, once it is delivered after `attempts` attempts (recording an
    attempt follows the receiver's answer by a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        (delivery,) = deliveries(client, job_id)
        if delivery["state"] == "delivered" and len(delivery["attempts"]) == attempts:
            return delivery
        assert time.monotonic() < deadline, delivery
        time.sleep(0.1)


def test_a_finished_job_is_told_once_with_a_signed_job_done(
    api: ApiServer, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, key = api.key()
    secret = api.webhook_secrets[tenant]
    another = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    url = receiver.endpoint()
    with api.client(key) as client:
        job_id = submit(client, "in.png", png(tmp_path), url)
        job = api.wait_finished(client, job_id)
        assert job["state"] == "done", job["error"]
        (request,) = receiver.wait_for(url, 1)
        # It is signed with the tenant's secret, and only that one
        assert_signed(secret, request)
        assert not verify(another, request.headers, request.body)
        assert not standard_webhooks_valid(another, request)
        # and says which job ended, how
        event = request.json()
        assert event["type"] == "job.done"
        assert event["data"]["id"] == job_id and event["data"]["state"] == "done"
        assert event["data"]["recipe"] == "cartoon" and event["data"]["input_name"] == "in.png"
        assert event["data"]["error"] is None
        # The log shows it delivered at the first attempt, under the id the receiver saw
        delivery = wait_delivered(client, job_id, attempts=1)
        assert delivery["event"] == "job.done" and delivery["url"] == url
        assert delivery["message_id"] == request.headers["webhook-id"]
        assert [a["status_code"] for a in delivery["attempts"]] == [200]
        assert delivery["delivered_at"] is not None and delivery["next_attempt_at"] is None
        # Rounds of the sender go on (one a second): nothing more is sent
        time.sleep(2.2)
        assert len(receiver.received(url)) == 1
        # A URL that is not http(s), or not a URL, is refused when the job is submitted
        for bad in ("ftp://127.0.0.1/hook", "http://[::1/hook", "http://127.0.0.1:99999/hook"):
            answer = client.post(
                "/v1/jobs",
                files={"file": ("in.png", png(tmp_path))},
                data={"recipe": "cartoon", "webhook_url": bad},
            )
            assert answer.status_code == 422, answer.text
            assert "\n" not in answer.json()["detail"]


def test_a_failed_attempt_is_retried_logged_and_replayed(
    api: ApiServer, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, key = api.key()
    secret = api.webhook_secrets[tenant]
    url = receiver.endpoint(500)  # the first attempt fails, the next succeed
    with api.client(key) as client:
        job_id = submit(client, "in.png", png(tmp_path), url)
        first, second = receiver.wait_for(url, 2, timeout_s=60)
        # The retry came after the first delay, as the same message (a receiver drops duplicates
        # by its id), signed afresh
        assert (first.status, second.status) == (500, 200)
        assert second.at - first.at >= RETRY_DELAYS_S[0] - 1
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body
        for request in (first, second):
            assert_signed(secret, request)
        # The log shows both attempts with their status codes
        delivery = wait_delivered(client, job_id, attempts=2)
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
        assert "500" in str(delivery["attempts"][0]["error"])
        assert delivery["attempts"][1]["error"] is None
        # A replay sends it once more, the same message
        answer = client.post(f"/v1/jobs/{job_id}/webhooks/replay")
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"replayed": 1}
        replayed = receiver.wait_for(url, 3)[2]
        assert replayed.headers["webhook-id"] == first.headers["webhook-id"]
        assert replayed.body == first.body
        assert_signed(secret, replayed)
        delivery = wait_delivered(client, job_id, attempts=3)
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200, 200]
        assert len(receiver.received(url)) == 3


def test_a_failed_job_sends_job_failed(api: ApiServer, receiver: Receiver) -> None:
    tenant, key = api.key()
    url = receiver.endpoint()
    with api.client(key) as client:
        job_id = submit(client, "x.mp4", os.urandom(4096), url)
        (request,) = receiver.wait_for(url, 1)
        assert_signed(api.webhook_secrets[tenant], request)
        event = request.json()
        assert event["type"] == "job.failed"
        assert event["data"]["id"] == job_id and event["data"]["state"] == "failed"
        assert "x.mp4" in event["data"]["error"]
        assert client.get(f"/v1/jobs/{job_id}").json()["error"] == event["data"]["error"]
        assert wait_delivered(client, job_id, attempts=1)["event"] == "job.failed"


def test_a_cancelled_job_sends_job_cancelled(api: ApiServer, receiver: Receiver, tmp_path: Path) -> None:
    tenant, key = api.key()
    url = receiver.endpoint()
    clip = make_video(tmp_path / "clip.mp4", width=160, height=120, frames=30)
    with api.client(key) as client:
        job_id = submit(client, "clip.mp4", clip.path.read_bytes(), url)
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 200
        (request,) = receiver.wait_for(url, 1)
        assert_signed(api.webhook_secrets[tenant], request)
        assert request.json()["type"] == "job.cancelled"
        assert request.json()["data"]["id"] == job_id
        # A job without a webhook has nothing to replay
        answer = client.post(
            "/v1/jobs", files={"file": ("in.png", png(tmp_path))}, data={"recipe": "cartoon"}
        )
        plain = answer.json()["id"]
        assert client.post(f"/v1/jobs/{plain}/webhooks/replay").status_code == 409
        assert deliveries(client, plain) == []


def test_a_receiver_that_never_answers_holds_up_only_its_own_delivery(
    api: ApiServer, receiver: Receiver, tmp_path: Path
) -> None:
    # Given a tenant whose receiver takes the request, then answers a byte at a time, for ever
    _, slow_key = api.key()
    slow = receiver.endpoint(drip=True)
    with api.client(slow_key) as client:
        slow_job = submit(client, "in.png", png(tmp_path), slow)
        receiver.wait_for(slow, 1)
    # When another tenant's job ends while that delivery is being sent
    tenant, key = api.key()
    url = receiver.endpoint()
    with api.client(key) as client:
        job_id = submit(client, "in.png", png(tmp_path), url)
        assert api.wait_finished(client, job_id)["state"] == "done"
        finished = time.monotonic()
        # Then its webhook comes at once, not after the other's timeout
        (request,) = receiver.wait_for(url, 1, timeout_s=TIMEOUT_S)
        assert request.at - finished < TIMEOUT_S / 2
        assert_signed(api.webhook_secrets[tenant], request)
    # and the slow delivery, once its receiver hangs up without a whole answer, is a failed
    # attempt, to be retried (the unit tests show the attempt ending by the timeout)
    receiver.dripping.discard(slow.removeprefix(receiver.url))
    with api.client(slow_key) as client:
        deadline = time.monotonic() + TIMEOUT_S
        while not (delivery := deliveries(client, slow_job)[0])["attempts"]:
            assert time.monotonic() < deadline, delivery
            time.sleep(0.2)
        (attempt,) = delivery["attempts"]
        assert attempt["status_code"] is None and attempt["error"], attempt
        assert delivery["state"] == "pending" and delivery["next_attempt_at"] is not None
