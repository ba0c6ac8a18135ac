"""Ctrl-C or SIGTERM while `frameq run` is still copying the inputs of a directory into the store
cancels every job already recorded, the one being submitted included: none is left queued."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

INPUTS = 24
INPUT_BYTES = 24 * 2**20  # big enough that copying them all takes a while


def jobs_recorded(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=0.1) as conn:
            return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet, or locked for a moment
        return 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_while_submitting_cancels_every_recorded_job(
    signum: signal.Signals, tmp_path: Path, frameq_env: dict[str, str]
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    data = os.urandom(INPUT_BYTES)  # never processed: only copying them into the store matters
    for i in range(INPUTS):
        (inputs / f"clip{i:02d}.mp4").write_bytes(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "frameq", "run", str(inputs), "-o", str(tmp_path / "out")],
        env=frameq_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    database = Path(frameq_env["FRAMEQ_HOME"]) / "frameq.db"
    deadline = time.monotonic() + 60
    while jobs_recorded(database) == 0:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    recorded = jobs_recorded(database)
    assert 0 < recorded < INPUTS, "the signal came after the submission"
    assert proc.returncode == 130, stderr
    assert stderr.strip() == f"interrupted: {recorded} job(s) cancelled"
    states = [
        line.split()[1] for line in run_cli(frameq_env, "jobs", "--limit", "100").stdout.splitlines()[1:]
    ]
    assert states == ["cancelled"] * recorded
