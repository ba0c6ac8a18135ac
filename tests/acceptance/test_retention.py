"""What stays in the store: a finished job keeps its outputs and inputs, not its intermediates;
`frameq gc` expires the rest; nothing a running job needs is ever deleted."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from orchestrator.retention import gc
from orchestrator.schema import JobState, utcnow
from orchestrator.settings import Settings
from orchestrator.submit import submit
from tests.conftest import run_cli
from tests.media import make_video
from workers.runtime import Runtime, execute


def stored(env: dict[str, str]) -> list[str]:
    root = Path(env["FRAMEQ_HOME"]) / "store"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def artifact_keys(env: dict[str, str]) -> list[str]:
    with sqlite3.connect(Path(env["FRAMEQ_HOME"]) / "frameq.db") as conn:
        return sorted(key for (key,) in conn.execute("SELECT key FROM artifacts"))


def test_a_finished_job_keeps_only_its_outputs_and_inputs(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=24, gop=8, width=96, height=64)
    out = tmp_path / "out.mp4"
    args = ("run", str(clip.path), "-o", str(out), "-r", "bg-blur", "--with-matte", "--segment-s", "0.25")
    assert run_cli(frameq_env, *args).returncode == 0
    (job,) = {key.split("/")[1] for key in stored(frameq_env)}
    kept = [f"jobs/{job}/matte.mp4", f"jobs/{job}/output.mp4", f"jobs/{job}/source.mp4"]
    # The slices, the audio and every stage's segments are gone, from the store and the table
    assert stored(frameq_env) == artifact_keys(frameq_env) == kept
    # Kept for debugging when asked
    debug = {**frameq_env, "FRAMEQ_KEEP_INTERMEDIATES": "1"}
    assert run_cli(debug, *args).returncode == 0
    assert any("/matte/" in key for key in stored(debug)) and any("/source/" in key for key in stored(debug))


def test_gc_expires_outputs_and_clears_what_failed_jobs_left(
    tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=12, gop=6, width=96, height=64)
    assert run_cli(frameq_env, "run", str(clip.path), "-o", str(tmp_path / "a.mp4")).returncode == 0
    assert run_cli(frameq_env, "gc").stdout.startswith("deleted 0 objects")  # outputs are kept by default
    result = run_cli(frameq_env, "gc", "--older-than", "0s")
    assert result.returncode == 0 and result.stdout.startswith("deleted 2 objects"), result.stdout
    assert stored(frameq_env) == artifact_keys(frameq_env) == []
    assert "job" in run_cli(frameq_env, "jobs").stdout  # the job's record stays
    bad = run_cli(frameq_env, "gc", "--older-than", "soon")
    assert bad.returncode != 0 and "expected a duration" in bad.stderr


def test_nothing_a_running_job_needs_is_deleted(tmp_path: Path) -> None:
    runtime = Runtime.open(Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home")}, segment_s=0.3))
    clip = make_video(tmp_path / "in.mp4", frames=24, gop=8, width=96, height=64)
    job = submit(runtime.repo, runtime.store, runtime.settings, clip.path, "bg-blur", ".mp4")
    plan = runtime.repo.next_ready([job.id])
    assert plan is not None
    execute(runtime, plan)  # planned: slices and audio in the store, the job running
    before = {a.key for a in runtime.repo.artifacts(job.id)}
    assert runtime.repo.get_job(job.id).state == JobState.RUNNING and len(before) > 3
    assert gc(runtime.repo, runtime.store, older_than_s=0, grace_s=0).objects == 0
    assert {a.key for a in runtime.repo.artifacts(job.id)} == before
    assert all(runtime.store.exists(key) for key in before)
    # Once it has failed (its workers told to stop), a lease later its leftovers go
    runtime.repo.fail_job(job.id, "test: failed on purpose")
    stray = f"jobs/{job.id}/matte/00000.nut"  # written by a task whose completion came too late
    with runtime.store.writing(stray) as tmp:
        tmp.write_bytes(b"late")
    assert gc(runtime.repo, runtime.store, older_than_s=None, grace_s=60).objects == 0  # too soon
    time.sleep(0.05)
    freed = gc(runtime.repo, runtime.store, older_than_s=None, grace_s=0)
    assert freed.objects == len(before)  # all but the uploaded source, and the stray object too
    assert not runtime.store.exists(stray)
    assert [a.key for a in runtime.repo.artifacts(job.id)] == [job.source_key]


def test_a_submission_cut_off_before_its_upload_fails_instead_of_waiting(tmp_path: Path) -> None:
    from sqlalchemy import update

    from orchestrator.schema import Job

    runtime = Runtime.open(Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home")}))
    # Two jobs recorded whose input never arrived (the submitter was killed mid-upload)
    for job_id, age_s in (("old", 7200), ("new", 10)):
        runtime.repo.create_job(
            job_id=job_id, recipe="cartoon", input_name="x.mp4", source_key="k", params={}
        )
        with runtime.repo.sessions.begin() as s:
            s.execute(
                update(Job).where(Job.id == job_id).values(created_at=utcnow() - timedelta(seconds=age_s))
            )
    gc(runtime.repo, runtime.store, older_than_s=None, grace_s=60)
    old, new = runtime.repo.get_job("old"), runtime.repo.get_job("new")
    assert old.state == JobState.FAILED and "never reached the store" in str(old.error)
    assert new.state == JobState.QUEUED  # an upload may still be under way
