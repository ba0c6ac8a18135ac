import json
import os
import subprocess
import sys

import pytest

SHOW = (
    "import json, os; from frameq.tuning import tune_process; tune_process(); "
    "print(json.dumps({k: os.environ.get(k) for k in "
    "('OMP_WAIT_POLICY', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_')}))"
)


def tuned(**env: str) -> dict[str, str | None]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "OMP_"))}
    out = subprocess.run(
        [sys.executable, "-c", SHOW], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_a_process_gets_sleeping_threads_and_the_allocator_thresholds_for_its_children() -> None:
    assert tuned() == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    }


def test_a_users_own_settings_win() -> None:
    assert tuned(OMP_WAIT_POLICY="ACTIVE", MALLOC_TRIM_THRESHOLD_="0") == {
        "OMP_WAIT_POLICY": "ACTIVE",
        "MALLOC_MMAP_THRESHOLD_": None,  # the allocator is left as the user set it up
        "MALLOC_TRIM_THRESHOLD_": "0",
    }
