"""Distributed mode for real: PostgreSQL, Redis, an S3 endpoint and Celery worker processes."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

from sqlalchemy import select

from frameq.samples import sample_clip
from orchestrator.schema import Artifact
from tests.acceptance.cluster import Cluster, assert_complete_output
from tests.conftest import run_cli
from tests.media import decode, make_video


def test_job_runs_on_workers_per_task_type(cluster: Cluster, tmp_path: Path) -> None:
    # Given one worker for media tasks and one for style tasks
    cluster.start_worker("-Q", "media")
    cluster.start_worker("-Q", "style")
    clip = make_video(tmp_path / "in.mp4", frames=60, gop=15)
    # When a job is submitted, it returns its id at once
    job_id = cluster.cli("submit", str(clip.path), "-r", "cartoon")
    # Then the workers finish it and the result can be fetched
    follow = run_cli(cluster.env, "status", job_id, "--follow")
    assert follow.returncode == 0 and "state     done" in follow.stdout
    assert_complete_output(cluster, job_id, clip.path, tmp_path / "out.mp4")
    workers = {t.worker for t in cluster.repo.tasks(job_id)}
    assert len(workers) == 2  # plan/assemble on one process, styling on the other


def test_worker_killed_mid_task_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    # Given a job of several segments on one worker
    clip = make_video(tmp_path / "in.mp4", width=640, height=480, frames=120, gop=15)
    first = cluster.start_worker("-c", "1")
    job_id = cluster.cli("submit", str(clip.path))
    # When the worker is killed with SIGKILL while a segment is being styled
    deadline = time.monotonic() + 120
    while not any(
        t.stage == "style" and t.state == "running" and t.frames_done > 0 for t in cluster.repo.tasks(job_id)
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cluster.kill(first)
    killed = [t.id for t in cluster.repo.tasks(job_id) if t.state == "running"]
    assert killed
    # and a new worker (with the periodic reconciler) starts
    cluster.start_worker("-c", "1", "--beat")
    # Then the task whose lease ran out runs again and the job completes whole
    cluster.wait_done(job_id)
    assert all(t.attempts == 2 for t in cluster.repo.tasks(job_id) if t.id in killed)
    assert_complete_output(cluster, job_id, clip.path, tmp_path / "out.mp4")


def test_high_priority_job_overtakes_a_bulk_backlog(cluster: Cluster, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=30, gop=15)
    # Given a backlog of bulk jobs waiting in the queues
    bulk = [cluster.cli("submit", str(clip.path), "--priority", "bulk") for _ in range(4)]
    # When an interactive job is submitted behind them and a single worker starts
    urgent = cluster.cli("submit", str(clip.path), "--priority", "high")
    cluster.start_worker("-c", "1")
    for job_id in [urgent, *bulk]:
        cluster.wait_done(job_id)
    # Then the interactive job finished first
    finished = {job_id: cluster.repo.get_job(job_id).finished_at for job_id in [urgent, *bulk]}
    assert min(finished, key=lambda j: finished[j]) == urgent  # type: ignore[arg-type, return-value]


def stored_objects(cluster: Cluster, job_id: str) -> dict[str, tuple[str, object]]:
    """The job's objects in the store, each with its ETag and modification time."""
    import boto3

    bucket = cluster.env["FRAMEQ_TEST_BUCKET"]
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"frameq/jobs/{job_id}/")
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])}


def recorded(cluster: Cluster, job_id: str) -> list[tuple[str, object]]:
    """The job's artifact rows: key and when it was (last) written."""
    with cluster.repo.sessions() as s:
        rows = s.execute(select(Artifact.key, Artifact.created_at).where(Artifact.job_id == job_id))
        return sorted((key, created) for key, created in rows)


def test_cancel_stops_a_running_job(cluster: Cluster, tmp_path: Path) -> None:
    # Given one worker styling the first of two long segments (60 frames each)
    cluster.env["FRAMEQ_SEGMENT_S"] = "2"
    clip = make_video(tmp_path / "in.mp4", width=640, height=480, frames=120, gop=15)
    cluster.start_worker("-c", "1")
    job_id = cluster.cli("submit", str(clip.path))
    deadline = time.monotonic() + 120
    while cluster.repo.view(job_id).frames_done == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (styling,) = [t for t in cluster.repo.tasks(job_id) if t.state == "running"]
    # When the job is cancelled
    assert cluster.cli("cancel", job_id) == f"{job_id} cancelled"
    at_cancel = stored_objects(cluster, job_id), recorded(cluster, job_id)
    # Then the worker is free for the next job at once: a short one runs to the end on it
    small = make_video(tmp_path / "small.mp4", frames=10)
    next_job = cluster.cli("submit", str(small.path))
    cluster.wait_done(next_job, timeout_s=120)
    assert {t.worker for t in cluster.repo.tasks(next_job)} == {styling.worker}
    # and it wrote nothing more for the cancelled job: no segment, no overwrite, no record (the
    # reconciler may meanwhile have collected its leftovers, a lease after the cancel)
    objects, rows = stored_objects(cluster, job_id), recorded(cluster, job_id)
    assert objects.items() <= at_cancel[0].items() and set(rows) <= set(at_cancel[1])
    assert styling.output_key and f"frameq/{styling.output_key}" not in at_cancel[0]
    view = cluster.repo.view(job_id)
    assert view.job.state == "cancelled"
    assert set(view.tasks_by_state) <= {"done", "cancelled"}
    assert "is cancelled" in run_cli(cluster.env, "fetch", job_id, "-o", str(tmp_path / "x.mp4")).stderr


def test_models_load_in_pool_processes_only(cluster: Cluster, tmp_path: Path) -> None:
    """torch (and so CUDA, on a GPU machine) is never loaded in the process that forks the pool."""
    main = cluster.start_worker("-c", "1")
    clip = make_video(tmp_path / "in.mp4", frames=10)
    job_id = cluster.cli("submit", str(clip.path))
    cluster.wait_done(job_id)
    children = Path(f"/proc/{main.pid}/task/{main.pid}/children").read_text().split()
    assert children

    def loads_torch(pid: int | str) -> bool:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()

    assert not loads_torch(main.pid)
    assert any(loads_torch(pid) for pid in children)


def test_matting_with_its_matte_runs_on_workers(cluster: Cluster, tmp_path: Path) -> None:
    # Given a worker for every queue and a clip of a person
    cluster.start_worker()
    clip = tmp_path / "person.mp4"
    shutil.copy(sample_clip("carphone_pristine"), clip)
    # When a portrait-mode job is submitted with its matte kept as well
    job_id = cluster.cli("submit", str(clip), "-r", "bg-blur", "--with-matte")
    cluster.wait_done(job_id)
    # Then fetch writes the result and the matte beside it, both complete and stored once
    fetched = cluster.cli("fetch", job_id, "-o", str(tmp_path / "out.mp4"))
    assert str(tmp_path / "out.matte.mp4") in fetched
    assert len(decode(tmp_path / "out.mp4").frames) == len(decode(tmp_path / "out.matte.mp4").frames) == 120
    with cluster.repo.sessions() as s:
        stored = s.scalars(select(Artifact.key).where(Artifact.job_id == job_id)).all()
    assert {f"jobs/{job_id}/output.mp4", f"jobs/{job_id}/matte.mp4"} <= set(stored)
    # and --url gives a working link to each, result first
    urls = cluster.cli("fetch", job_id, "--url").split()
    assert len(urls) == 2 and "output.mp4" in urls[0] and "matte.mp4" in urls[1]
    with urllib.request.urlopen(urls[1]) as response:
        assert response.read() == (tmp_path / "out.matte.mp4").read_bytes()


def test_flower_shows_the_workers(cluster: Cluster, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    from tests.conftest import ROOT, free_port

    cluster.start_worker("-Q", "media")
    port = free_port()
    env = {**cluster.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    flower = subprocess.Popen(
        [sys.executable, "-m", "frameq", "flower", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.workers.append(flower)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10) as r:
                workers = json.load(r)
            if workers:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "Flower did not list the worker"
        time.sleep(1)
    (info,) = workers.values()
    assert {q["name"] for q in info["active_queues"]} == {"media"}
    assert "media.plan" in info["registered"]
