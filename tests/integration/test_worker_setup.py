"""A worker that is not set up for a task (its model files are missing) gives the task back for
another worker instead of failing the job; on one machine (embedded) the job fails and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.schema import JobState, TaskState
from orchestrator.settings import Settings
from orchestrator.submit import submit
from tests.media import make_video
from workers.runtime import Runtime, execute


def planned_matte_task(runtime: Runtime, tmp_path: Path) -> tuple[str, int]:
    clip = make_video(tmp_path / "in.mp4", frames=6, width=64, height=48, audio=False, flash_frame=None)
    job = submit(runtime.repo, runtime.store, runtime.settings, clip.path, "matte", ".mp4")
    plan = runtime.repo.next_ready([job.id])
    assert plan is not None
    execute(runtime, plan)
    (matte,) = [t for t in runtime.repo.tasks(job.id) if t.stage == "matte"]
    return job.id, matte.id


def test_a_worker_without_model_files_gives_the_task_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEQ_MODELS", str(tmp_path / "no-models"))
    env = {"FRAMEQ_HOME": str(tmp_path / "home"), "FRAMEQ_BROKER_URL": "redis://127.0.0.1:6379/15"}
    runtime = Runtime.open(Settings.from_env(env))
    job_id, task_id = planned_matte_task(runtime, tmp_path)
    outcome = execute(runtime, task_id)
    task = next(t for t in runtime.repo.tasks(job_id) if t.id == task_id)
    # Given back, ready for another worker, with what is missing on the row and the job still on
    assert outcome.retry_in_s is not None
    assert task.state == TaskState.READY and task.worker is None
    assert "frameq models pull" in str(task.error) and runtime.name in str(task.error)
    assert runtime.repo.get_job(job_id).state == JobState.RUNNING
    # No worker can run it: once its attempts are used up the job fails, naming the problem
    while execute(runtime, task_id).retry_in_s is not None:
        pass
    job = runtime.repo.get_job(job_id)
    assert job.state == JobState.FAILED and "frameq models pull" in str(job.error)


def test_embedded_without_model_files_fails_the_job_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEQ_MODELS", str(tmp_path / "no-models"))
    runtime = Runtime.open(Settings.from_env({"FRAMEQ_HOME": str(tmp_path / "home")}))
    job_id, task_id = planned_matte_task(runtime, tmp_path)
    assert execute(runtime, task_id).retry_in_s is None
    assert runtime.repo.get_job(job_id).state == JobState.FAILED


def test_a_worker_for_the_matte_queue_refuses_to_start_without_its_model_files(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    env = {
        "FRAMEQ_HOME": str(tmp_path / "home"),
        "FRAMEQ_MODELS": str(tmp_path / "no-models"),
        "FRAMEQ_BROKER_URL": "redis://127.0.0.1:6379/15",
        "FRAMEQ_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",  # never reached
        "PATH": "/usr/bin:/bin",
    }
    result = run_cli(env, "worker", "-Q", "media,matte")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "queue matte needs model files missing from" in line and "frameq models pull" in line


def test_a_worker_runs_the_matte_network_of_the_job_not_of_its_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.tasks.matte as matte_tasks

    networks: list[str] = []
    real = matte_tasks._matter

    def recording(device: str, landmark: str):  # type: ignore[no-untyped-def]
        networks.append(landmark)
        return real(device, landmark)

    monkeypatch.setattr(matte_tasks, "_matter", recording)
    home = str(tmp_path / "home")
    submitter = Runtime.open(Settings.from_env({"FRAMEQ_HOME": home, "FRAMEQ_MATTE_MODEL": "full"}))
    worker = Runtime.open(Settings.from_env({"FRAMEQ_HOME": home}))  # its own default: heavy
    clip = make_video(tmp_path / "in.mp4", frames=4, width=64, height=48, audio=False, flash_frame=None)
    job = submit(submitter.repo, submitter.store, submitter.settings, clip.path, "matte", ".mp4")
    while (task_id := worker.repo.next_ready([job.id])) is not None:
        execute(worker, task_id)
    assert worker.repo.get_job(job.id).state == JobState.DONE
    assert networks == ["full"]
