"""`frameq batch`: a library of real images (and a video) through a recipe, resumable and
incremental, checked by its output files, its manifest and `frameq batch status`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from orchestrator.schema import Job
from tests.acceptance.cluster import Cluster
from tests.conftest import ROOT, run_cli
from tests.media import decode, make_video
from workers.runtime import IMAGE_GROUP

DAVIS = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis-dev" / "images"


def real_images(folder: Path, count: int, size: tuple[int, int] = (96, 64), start: int = 0) -> list[Path]:
    """Small crops of real DAVIS frames (distinct content each), spread over subfolders."""
    frames = sorted(DAVIS.glob("*/*.jpg"))
    if not frames:
        pytest.fail(f"the DAVIS development set is required: {DAVIS} is missing")
    made = []
    for i in range(start, start + count):
        with Image.open(frames[(i * 7) % len(frames)]) as image:
            x = (i * 37) % (image.width - size[0])
            crop = image.convert("RGB").crop((x, 40, x + size[0], 40 + size[1]))
        path = folder / f"set{i % 3}" / f"img{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, quality=92)
        made.append(path)
    return made


def manifest(dest: Path) -> dict[str, dict]:
    lines = (dest / "manifest.jsonl").read_text().splitlines()
    return {record["path"]: record for record in map(json.loads, lines)}


def jobs_table(env: dict[str, str]) -> list[tuple[str, str, str]]:
    with sqlite3.connect(Path(env["FRAMEQ_HOME"]) / "frameq.db") as db:
        return db.execute("SELECT id, state, item_key FROM jobs ORDER BY id").fetchall()


def batch_id(stdout: str) -> str:
    return next(line.split()[1].rstrip(":") for line in stdout.splitlines() if line.startswith("batch "))


def test_a_library_mirrors_into_dest_with_a_manifest_and_a_bad_item_fails_alone(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    # Given a library of real images in subfolders, a video, a copy of one image and a corrupt file
    lib, dest = tmp_path / "library", tmp_path / "out"
    images = real_images(lib, 12)
    (lib / "copies").mkdir()
    (lib / "copies" / "same.jpg").write_bytes(images[0].read_bytes())
    (lib / "clips").mkdir()
    make_video(lib / "clips" / "clip.mp4", frames=12)
    (lib / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (lib / "notes.txt").write_text("not media")
    # When the library goes through the cartoon recipe
    result = run_cli(frameq_env, "batch", str(lib), "-r", "cartoon", "-o", str(dest))
    # Then the bad file fails alone, named with its reason; every other item is written
    assert result.returncode == 1, result.stderr
    assert "failed broken.png:" in result.stderr and "not a readable image" in result.stderr
    for src in [*images, lib / "copies" / "same.jpg"]:
        out = dest / src.relative_to(lib)
        with Image.open(src) as a, Image.open(out) as b:
            assert b.size == a.size and b.format == "JPEG"
            diff = np.abs(np.asarray(a.convert("RGB"), float) - np.asarray(b.convert("RGB"), float)).mean()
            assert diff > 3  # restyled, not copied
    assert len(decode(dest / "clips" / "clip.mp4").frames) == 12
    assert not (dest / "notes.txt").exists()
    # And the identical files were processed once, by one job
    records = manifest(dest)
    assert len(records) == 15
    assert records["copies/same.jpg"]["job"] == records[images[0].relative_to(lib).as_posix()]["job"]
    assert records["broken.png"]["state"] == "failed" and records["broken.png"]["output"] is None
    assert sum(r["state"] == "done" for r in records.values()) == 14
    assert len(jobs_table(frameq_env)) == 14  # 12 images + video + broken; the copy shares a job
    # And `frameq batch status` says the same
    listing = tmp_path / "m.jsonl"
    status = run_cli(
        frameq_env, "batch", "status", batch_id(result.stdout), "--manifest", str(tmp_path / "m.jsonl")
    )
    assert status.returncode == 0, status.stderr
    assert "15 items: 14 done, 1 failed" in status.stdout
    assert "failed broken.png" in status.stderr
    assert len(listing.read_text().splitlines()) == 15


def test_a_rerun_does_nothing_again_and_a_grown_library_only_what_is_new(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    lib, dest = tmp_path / "library", tmp_path / "out"
    images = real_images(lib, 10)
    first = run_cli(frameq_env, "batch", str(lib), "-r", "cartoon", "-o", str(dest))
    assert first.returncode == 0, first.stderr
    jobs = jobs_table(frameq_env)
    written = {p: p.stat().st_mtime_ns for p in dest.rglob("*.jpg")}
    # When the same command runs again over the unchanged library
    again = run_cli(frameq_env, "batch", str(lib), "-r", "cartoon", "-o", str(dest))
    # Then nothing is processed or copied again
    assert again.returncode == 0, again.stderr
    assert "this run: 0 job(s)" in again.stdout
    assert jobs_table(frameq_env) == jobs
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.jpg")} == written
    assert "this run: 0 job(s) done, 0 output(s) copied" in again.stdout
    # And an output deleted from DEST is copied again from the store, not made again
    (dest / images[0].relative_to(lib)).unlink()
    restored = run_cli(frameq_env, "batch", str(lib), "-r", "cartoon", "-o", str(dest))
    assert "this run: 0 job(s) done, 1 output(s) copied" in restored.stdout, restored.stdout
    assert (dest / images[0].relative_to(lib)).exists() and jobs_table(frameq_env) == jobs
    # When the library grows by two images and one image changes
    added = real_images(lib, 2, start=50)
    real_images(lib, 1, size=(80, 64), start=90)[0].replace(images[3])
    grown = run_cli(frameq_env, "batch", str(lib), "-r", "cartoon", "-o", str(dest))
    # Then exactly those three are processed
    assert grown.returncode == 0, grown.stderr
    assert "this run: 3 job(s)" in grown.stdout
    assert len(jobs_table(frameq_env)) == len(jobs) + 3
    with Image.open(dest / images[3].relative_to(lib)) as changed:
        assert changed.size == (80, 64)
    assert all((dest / p.relative_to(lib)).exists() for p in added)
    # And another recipe over the same library is a batch of its own, all new
    other = run_cli(frameq_env, "batch", str(lib), "-r", "matte", "-o", str(tmp_path / "mattes"))
    assert other.returncode == 0, other.stderr
    assert "this run: 12 job(s)" in other.stdout


def test_dry_run_and_filters(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    lib, dest = tmp_path / "library", tmp_path / "out"
    real_images(lib, 6)
    result = run_cli(
        frameq_env, "batch", str(lib), "-o", str(dest), "--dry-run", "--include", "set1/*", "--ext", "jpg"
    )
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.startswith("would process")]
    assert listed == [
        "would process set1/img0001.jpg -> set1/img0001.jpg",
        "would process set1/img0004.jpg -> set1/img0004.jpg",
    ]
    assert not dest.exists() or not any(dest.iterdir())
    assert jobs_table(frameq_env) == []
    refused = run_cli(frameq_env, "batch", str(lib), "-o", str(dest), "--ext", "txt")
    assert refused.returncode == 1 and "--ext: .txt not media" in refused.stderr


def done_jobs(env: dict[str, str]) -> int:
    try:
        return sum(state == "done" for _, state, _ in jobs_table(env))
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_batch_goes_on_where_it_stopped(
    tmp_path: Path, frameq_env: dict[str, str], how: signal.Signals
) -> None:
    # Given a batch stopped (kill -9, or Ctrl-C) once a few of its items are done
    lib, dest = tmp_path / "library", tmp_path / "out"
    images = real_images(lib, 40, size=(160, 120))
    command = [sys.executable, "-m", "frameq", "batch", str(lib), "-r", "bg-blur", "-o", str(dest)]
    proc = subprocess.Popen(
        command, env=frameq_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while done_jobs(frameq_env) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, how)
    _, stderr = proc.communicate(timeout=120)
    if how == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "run the same command again" in stderr
    stopped_at = done_jobs(frameq_env)
    assert stopped_at < 40
    # When the same command runs again
    result = run_cli(frameq_env, "batch", str(lib), "-r", "bg-blur", "-o", str(dest))
    # Then every item ends done, each by exactly one job, and none was done twice
    assert result.returncode == 0, result.stderr
    jobs = jobs_table(frameq_env)
    assert len(jobs) == 40 and all(state == "done" for _, state, _ in jobs)
    assert len({key for _, _, key in jobs}) == 40
    assert f"this run: {40 - stopped_at} job(s)" in result.stdout
    assert all((dest / p.relative_to(lib)).exists() for p in images)
    assert sum(r["state"] == "done" for r in manifest(dest).values()) == 40


def test_a_batch_runs_on_the_workers_and_an_interactive_job_is_not_held_behind_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given two image workers and a library batch under way on them
    lib, dest = tmp_path / "library", tmp_path / "out"
    images = real_images(lib, 96, size=(200, 150))
    for _ in range(2):
        cluster.start_worker("-Q", "image", "-c", "1")
    wait_ready(cluster, 2)
    command = [sys.executable, "-m", "frameq", "batch", str(lib), "-r", "bg-blur", "-o", str(dest)]
    proc = subprocess.Popen(
        command, env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not any(j.state == "done" for j in batch_jobs(cluster)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.3)
    # When an interactive job is submitted meanwhile
    urgent = cluster.cli("submit", str(images[5]), "-r", "cartoon", "--priority", "high")
    cluster.wait_done(urgent)
    stdout, stderr = proc.communicate(timeout=600)
    # Then the batch finished on both workers, and the interactive job well before its end
    assert proc.returncode == 0, stderr
    assert b"this run: 96 job(s)" in stdout
    jobs = batch_jobs(cluster)
    assert len(jobs) == 96 and all(j.state == "done" for j in jobs)
    workers = {t.worker for j in jobs for t in cluster.repo.tasks(j.id)}
    assert len(workers) == 2
    urgent_at = cluster.repo.get_job(urgent).finished_at
    assert urgent_at is not None
    # Batch images that started after its message was sent and were done before it: at most
    # the group a worker had just begun (a job of another priority never joins a group)
    (task,) = cluster.repo.tasks(urgent)
    submitted = task.dispatched_at
    assert submitted is not None
    ahead = sum(
        1
        for j in jobs
        if j.started_at and j.started_at > submitted and j.finished_at and j.finished_at <= urgent_at
    )
    assert ahead <= IMAGE_GROUP, ahead
    assert any(j.finished_at and j.finished_at > urgent_at for j in jobs)  # and the backlog was not done
    assert all((dest / p.relative_to(lib)).exists() for p in images)


def wait_ready(cluster: Cluster, workers: int) -> None:
    """Until every worker's log says it is ready (its pool is up and consuming)."""
    deadline = time.monotonic() + 120
    logs = [cluster.tmp / f"worker{i}.log" for i in range(workers)]
    while not all(b" ready." in log.read_bytes() for log in logs if log.exists()) or not all(
        log.exists() for log in logs
    ):
        assert time.monotonic() < deadline, "workers not ready"
        time.sleep(0.3)


def batch_jobs(cluster: Cluster) -> list[Job]:
    with cluster.repo.sessions() as s:
        return list(s.scalars(select(Job).where(Job.batch_id.is_not(None))).all())


def test_a_library_in_s3_is_read_once_and_mirrored(
    tmp_path: Path, frameq_env: dict[str, str], s3_env: dict[str, str]
) -> None:
    import boto3

    # Given images under a prefix of a bucket (an S3-compatible server)
    bucket, lib = s3_env["FRAMEQ_TEST_BUCKET"], tmp_path / "library"
    images = real_images(lib, 5)
    client = boto3.client("s3")
    for path in images:
        client.upload_file(str(path), bucket, f"photos/{path.relative_to(lib).as_posix()}")
    client.put_object(Bucket=bucket, Key="photos/readme.txt", Body=b"not media")
    env = {**frameq_env, **{k: v for k, v in s3_env.items() if k.startswith("AWS_")}}
    dest = tmp_path / "out"
    # When the prefix goes through a recipe
    result = run_cli(env, "batch", f"s3://{bucket}/photos", "-r", "cartoon", "-o", str(dest))
    # Then the tree is mirrored locally, with the objects' URLs in the manifest's jobs
    assert result.returncode == 0, result.stderr
    for path in images:
        with Image.open(dest / path.relative_to(lib)) as out:
            assert out.size == (96, 64)
    assert len(manifest(dest)) == 5
    # And the same command again reads nothing and does nothing
    again = run_cli(env, "batch", f"s3://{bucket}/photos", "-r", "cartoon", "-o", str(dest))
    assert again.returncode == 0, again.stderr
    assert "this run: 0 job(s)" in again.stdout
    assert not list((Path(frameq_env["FRAMEQ_HOME"])).glob("batch-*"))  # its downloads are gone


def test_one_batch_at_a_time_writes_into_a_destination(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    import fcntl

    lib, dest = tmp_path / "library", tmp_path / "out"
    real_images(lib, 2)
    dest.mkdir()
    with (dest / ".frameq-batch.lock").open("a") as held:  # as a running frameq batch holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_cli(frameq_env, "batch", str(lib), "-o", str(dest))
        assert refused.returncode == 1
        assert (
            refused.stderr.strip()
            == f"error: {dest}: another frameq batch is writing there; wait for it to end"
        )
        assert run_cli(frameq_env, "batch", str(lib), "-o", str(dest), "--dry-run").returncode == 0
    assert run_cli(frameq_env, "batch", str(lib), "-o", str(dest)).returncode == 0  # let go: it runs
