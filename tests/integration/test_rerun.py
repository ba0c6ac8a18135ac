"""A task run again after its worker died overwrites its artifact: same key, one row."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from orchestrator.schema import Artifact, JobState, Task
from orchestrator.settings import Settings
from orchestrator.submit import submit
from tests.media import decode, make_video
from workers.local import run_jobs
from workers.runtime import Runtime, execute


def test_a_task_redone_after_its_worker_died_overwrites_its_segment(tmp_path: Path) -> None:
    env = {"FRAMEQ_HOME": str(tmp_path / "home"), "FRAMEQ_KEEP_INTERMEDIATES": "1"}  # to look at them
    runtime = Runtime.open(Settings.from_env(env, segment_s=0.5))
    clip = make_video(tmp_path / "in.mp4", frames=30, gop=15)
    job = submit(runtime.repo, runtime.store, runtime.settings, clip.path, "cartoon", ".mp4")
    plan = runtime.repo.next_ready([job.id])
    assert plan is not None
    execute(runtime, plan)
    style = [t for t in runtime.repo.tasks(job.id) if t.stage == "style"]
    # A worker claimed the first segment, uploaded a result, and died before reporting it
    assert runtime.repo.claim(style[0].id, "dead-worker", lease_s=-1)
    key = f"jobs/{job.id}/style/00000.mp4"
    with runtime.store.writing(key) as tmp:
        tmp.write_bytes(b"half-written by the dead worker")
    # The reconciler's reaper hands the task out again and the job runs to the end
    assert runtime.repo.reap_expired(max_attempts=3) == ([style[0].id], [])
    run_jobs(runtime, [job.id])
    assert runtime.repo.get_job(job.id).state == JobState.DONE
    redone = next(t for t in runtime.repo.tasks(job.id) if t.id == style[0].id)
    assert (redone.attempts, redone.output_key) == (2, key)
    files = sorted(p.name for p in (runtime.store.root / "jobs" / job.id / "style").iterdir())  # type: ignore[attr-defined]
    assert files == ["00000.mp4", "00001.mp4"]  # the same key, overwritten
    assert decode(runtime.store.path(key)).frames  # type: ignore[attr-defined]
    with runtime.repo.sessions() as s:
        keys = s.scalars(
            select(Artifact.key).where(Artifact.job_id == job.id, Artifact.key.like("%/style/%"))
        )
        assert sorted(keys) == [key, f"jobs/{job.id}/style/00001.mp4"]  # one row per key
        assert s.scalar(select(func.min(Task.deps_left)).where(Task.job_id == job.id)) == 0
