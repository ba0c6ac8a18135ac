"""An object store that refuses for good (here: a bucket that does not exist) fails the
submission at once, in one line naming the object and the problem: no retries, no "submit again"."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.schema import JobState
from tests.acceptance.cluster import Cluster
from tests.acceptance.oneline import one_line_error
from tests.conftest import run_cli
from tests.media import make_video


def jobs_of(cluster: Cluster, clip: Path) -> list[str]:
    return [v.job.id for v in cluster.repo.list_jobs(1000) if v.job.input_name == str(clip)]


def test_a_bucket_that_does_not_exist_fails_the_submission_at_once(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5).path
    env = {**cluster.env, "FRAMEQ_STORE_URL": "s3://frameq-no-such-bucket/frameq"}
    started = time.monotonic()
    line = one_line_error(run_cli(env, "submit", str(clip)))
    (job_id,) = jobs_of(cluster, clip)
    error = f"s3://frameq-no-such-bucket/frameq/jobs/{job_id}/source.{clip.suffix[1:]}: no such bucket"
    assert line == f"error: {error}"
    assert "submit again" not in line and time.monotonic() - started < 30  # no retries
    job = cluster.repo.get_job(job_id)
    assert job.state == JobState.FAILED and job.error == error


def test_run_stops_at_the_first_refusal(
    s3_env: dict[str, str], frameq_env: dict[str, str], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(inputs / name, frames=5)
    env = {**frameq_env, **s3_env, "FRAMEQ_STORE_URL": "s3://frameq-no-such-bucket/x"}
    line = one_line_error(run_cli(env, "run", str(inputs), "-o", str(tmp_path / "out")))
    assert line.startswith("error: s3://frameq-no-such-bucket/x/jobs/") and line.endswith(": no such bucket")
    listing = run_cli(env, "jobs").stdout.splitlines()[1:]
    assert [row.split()[1] for row in listing] == ["failed"]  # the first; the second never recorded
