"""A device that is not there is refused before any work, in one line naming the setting
(`--device` or FRAMEQ_DEVICE) and the devices there are: no job recorded, no worker started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.acceptance.oneline import one_line_error
from tests.conftest import ROOT, run_cli
from tests.media import make_video

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def no_jobs(env: dict[str, str]) -> bool:
    listing = run_cli(env, "jobs")
    assert listing.returncode == 0, listing.stderr
    return len(listing.stdout.strip().splitlines()) == 1  # the header only


@no_cuda
def test_run_refuses_a_cuda_device_that_is_not_there(tmp_path: Path, frameq_env: dict[str, str]) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5)
    out = tmp_path / "out.mp4"
    result = run_cli(frameq_env, "run", str(clip.path), "-o", str(out), "-r", "matte", "--device", "cuda")
    assert one_line_error(result) == "error: --device cuda: no such device on this machine (available: cpu)"
    env = {**frameq_env, "FRAMEQ_DEVICE": "cuda:0"}
    result = run_cli(env, "run", str(clip.path), "-o", str(out), "-r", "matte")
    assert (
        one_line_error(result)
        == "error: FRAMEQ_DEVICE cuda:0: no such device on this machine (available: cpu)"
    )
    assert not out.exists() and no_jobs(frameq_env)


def start_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`frameq worker` that must end by itself: a worker that started would run until killed."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "frameq", "worker", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the worker started: {exc.stderr!r}") from None


@no_cuda
def test_worker_refuses_to_start_on_a_cuda_device_that_is_not_there(frameq_env: dict[str, str]) -> None:
    env = {**frameq_env, "FRAMEQ_BROKER_URL": "redis://127.0.0.1:1/0"}  # never reached
    result = start_worker(env, "--device", "cuda:1")
    assert one_line_error(result) == "error: --device cuda:1: no such device on this machine (available: cpu)"
    result = start_worker({**env, "FRAMEQ_DEVICE": "cuda"})
    assert "FRAMEQ_DEVICE cuda: no such device" in one_line_error(result)
