"""An interrupt lost in a finaliser is raised again, and not printed (frameq/interrupts.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# The signal arrives while a finaliser runs, as when the garbage collector runs one of
# SQLAlchemy's weakref callbacks at that moment: Python drops an exception raised there.
SCRIPT = """
import os, signal, time
from frameq import interrupts

interrupts.install()

class Slow:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        t = time.monotonic()
        while time.monotonic() - t < 0.2:  # the handler runs here, inside the finaliser
            pass

start = time.monotonic()
try:
    slow = Slow()
    del slow
    print("lost in the finaliser", flush=True)
    while time.monotonic() - start < 10:
        time.sleep(0.05)
    print("never interrupted")
except interrupts.Interrupted as exc:
    interrupts.caught()
    print(f"interrupted ({exc}) after {time.monotonic() - start:.1f}s")
"""


def test_an_interrupt_lost_in_a_finaliser_is_raised_again() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "lost in the finaliser"  # the first Interrupted was dropped ...
    assert lines[1].startswith("interrupted (SIGINT) after ")  # ... and the second one came
    assert float(lines[1].split()[-1].rstrip("s")) < 3.0
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr
