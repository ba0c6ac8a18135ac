"""A frameq cluster for tests: PostgreSQL, Redis, an S3 endpoint and Celery worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from orchestrator.db import make_engine, make_sessions
from orchestrator.repository import Repository
from orchestrator.schema import Artifact
from tests.conftest import ROOT, run_cli
from tests.media import audio_onset_s, brightest_frame_s, decode


class Cluster:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.workers: list[subprocess.Popen[bytes]] = []
        self.repo = Repository(make_sessions(make_engine(env["FRAMEQ_DATABASE_URL"])))

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "frameq", "worker", "--loglevel", "INFO", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool processes: no goodbye, no acknowledgement."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def cli(self, *args: str) -> str:
        result = run_cli(self.env, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def wait_done(self, job_id: str, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while (job := self.repo.get_job(job_id)).finished_at is None:
            assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
            time.sleep(0.3)
        assert job.state == "done", job.error


def assert_complete_output(c: Cluster, job_id: str, src: Path, out: Path) -> None:
    """Every frame at its time, the audio in sync, each segment at its planned key, and once the
    job is done only its output and its source left in the store."""
    c.cli("fetch", job_id, "-o", str(out))
    a, b = decode(src), decode(out)
    assert len(b.frames) == len(a.frames)
    assert np.max(np.abs(np.array(a.times_s) - np.array(b.times_s))) < 1 / 30
    assert abs(a.duration_s - b.duration_s) < 1 / 30 and b.audio_streams == 1
    offset = audio_onset_s(out) - brightest_frame_s(b)  # type: ignore[operator]
    assert abs(offset - (audio_onset_s(src) - brightest_frame_s(a))) < 1 / 30  # type: ignore[operator]
    segments = [t for t in c.repo.tasks(job_id) if t.stage == "style"]
    keys = sorted(str(t.output_key) for t in segments)
    assert keys == [f"jobs/{job_id}/style/{i:05d}.mp4" for i in range(len(segments))]
    with c.repo.sessions() as s:
        stored = s.scalars(select(Artifact.key).where(Artifact.job_id == job_id)).all()
    assert sorted(stored) == [f"jobs/{job_id}/output.mp4", f"jobs/{job_id}/source.mp4"]
