"""`frameq api` in front of a real cluster: PostgreSQL, Redis, the S3 endpoint and a Celery worker.
The API process runs no tasks; it records and queues them, and sends the webhook."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.acceptance.cluster import Cluster
from tests.api.server import ApiServer
from tests.api.test_webhooks import Receiver, assert_signed

pytestmark = pytest.mark.postgres


def test_a_job_over_http_runs_on_a_celery_worker(
    postgres_url: str, redis_url: str, s3_env: dict[str, str], frameq_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **frameq_env,
        **s3_env,
        "FRAMEQ_DATABASE_URL": postgres_url,
        "FRAMEQ_BROKER_URL": redis_url,
        "FRAMEQ_STORE_URL": f"s3://{s3_env['FRAMEQ_TEST_BUCKET']}/frameq",
        "FRAMEQ_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
    }
    cluster = Cluster(env, tmp_path)
    cluster.cli("db", "upgrade")
    worker = cluster.start_worker("-c", "1")
    api = ApiServer(env, tmp_path / "api.log")
    receiver = Receiver()
    try:
        src = tmp_path / "in.png"
        cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (96, 112, 3), dtype=np.uint8))
        tenant, key = api.key()
        with api.client(key) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["broker"] == "ok", ready.text
            # When a job is submitted over HTTP
            url = receiver.endpoint()
            answer = client.post(
                "/v1/jobs",
                files={"file": ("in.png", src.read_bytes())},
                data={"recipe": "cartoon", "webhook_url": url},
            )
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            # Then the Celery worker runs it (the API process has no workers of its own)
            job = api.wait_finished(client, job_id, timeout_s=120)
            assert job["state"] == "done", job["error"]
            pool = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
            ran_in = {str(t.worker).rpartition(":")[2] for t in cluster.repo.tasks(job_id)}
            assert ran_in and ran_in <= set(pool), (ran_in, pool)
            # and the webhook says so, signed with the tenant's secret
            (request,) = receiver.wait_for(url, 1)
            assert_signed(api.webhook_secrets[tenant], request)
            assert request.json()["type"] == "job.done" and request.json()["data"]["id"] == job_id
            # and the result is a redirect to a presigned URL of the S3 store
            result = client.get(f"/v1/jobs/{job_id}/result")
            assert result.status_code == 307, result.text
            location = result.headers["location"]
            assert location.startswith(env["AWS_ENDPOINT_URL"]) and "Signature" in location
        download = httpx.get(location, timeout=30)  # no key: the URL itself grants it
        assert download.status_code == 200
        out = cv2.imdecode(np.frombuffer(download.content, np.uint8), cv2.IMREAD_COLOR)
        assert out is not None and out.shape == (96, 112, 3)
        assert np.abs(out.astype(int) - cv2.imread(str(src)).astype(int)).mean() > 1
    finally:
        receiver.close()
        api.stop()
        cluster.kill(worker)
