"""A store outage is transient: the task is retried with backoff, then fails the job once the
attempts are used up; the reason names the cause."""

from __future__ import annotations

from pathlib import Path

import boto3
from botocore.config import Config

from orchestrator.retry import RetryPolicy
from orchestrator.schema import JobState
from orchestrator.settings import Settings
from orchestrator.submit import submit
from tests.media import make_video
from workers.local import run_jobs
from workers.runtime import Runtime, execute


def test_store_outage_retries_then_fails_with_the_cause(s3_env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"FRAMEQ_HOME": str(tmp_path), "FRAMEQ_STORE_URL": f"s3://{s3_env['FRAMEQ_TEST_BUCKET']}/x"}
    )
    runtime = Runtime.open(settings)
    runtime.retry = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.05)
    clip = make_video(tmp_path / "in.mp4", frames=10)
    job = submit(runtime.repo, runtime.store, settings, clip.path, "cartoon", ".mp4")
    # The store goes away after the upload (nothing listens on port 9)
    dead = boto3.client("s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1}))
    runtime.store.client = dead  # type: ignore[attr-defined]
    run_jobs(runtime, [job.id])
    view = runtime.repo.view(job.id)
    plan = runtime.repo.tasks(job.id)[0]
    assert view.job.state == JobState.FAILED
    assert plan.attempts == 3
    assert "media.plan failed 3 times, last: object store unreachable" in (view.job.error or "")


def test_a_store_that_refuses_for_good_fails_the_task_at_once(s3_env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "FRAMEQ_HOME": str(tmp_path),
            "FRAMEQ_STORE_URL": f"s3://{s3_env['FRAMEQ_TEST_BUCKET']}/x",
            "FRAMEQ_BROKER_URL": "redis://127.0.0.1:6379/15",  # a worker of a cluster: others exist
        }
    )
    runtime = Runtime.open(settings)
    clip = make_video(tmp_path / "in.mp4", frames=10)
    job = submit(runtime.repo, runtime.store, settings, clip.path, "cartoon", ".mp4")
    # The bucket the task writes to is gone (deleted, or the worker's region is wrong)
    client = runtime.store.client  # type: ignore[attr-defined]
    upload = client.upload_file
    client.upload_file = lambda src, _bucket, key, **kw: upload(src, "frameq-no-such-bucket", key, **kw)
    plan = runtime.repo.next_ready([job.id])
    assert plan is not None
    assert execute(runtime, plan).retry_in_s is None  # not retried: no worker would do better
    failed = runtime.repo.get_job(job.id)
    assert failed.state == JobState.FAILED and "no such bucket" in str(failed.error)
    assert runtime.repo.tasks(job.id)[0].attempts == 1
