"""How a frameq process sets up its runtime before the models load: OpenMP's waiting threads
and the C allocator. A user's own setting of either always wins.

- OpenMP threads that sleep while they wait, not spin. Measured on 2 shared cores, MultiStyle
  at 512x512, s a frame, sleeping against spinning threads: 0.20 against 0.44 (2.2x faster)
  beside one busy process, 0.16 against 0.32 on average beside others' test runs (spinning
  ones stalled up to 1.1 s), 0.13 against 0.11 on a quiet machine. The person matter at 720p
  beside one busy process: 9.7 frames/s sleeping, 8.1 spinning briefly (GOMP_SPINCOUNT=3000),
  6.1 spinning (ACTIVE); on a quiet machine at 1080p 12.0 sleeping against 14.9 spinning.
- Freed memory kept for reuse. By default glibc maps every block over a threshold that starts
  at 128 KiB afresh and hands it back on free, and trims the heap soon after: every 1080p
  plane (8 MB as float) a stage allocates then faults its pages in anew, a cost of the order
  of the work done on it. With blocks up to 32 MiB (glibc's ceiling) taken from the heap, and
  up to 1 GiB of freed heap kept, the person matter runs at 1080p 12.2 against 9.8 frames/s
  with sleeping threads. The variables are set too, for the processes this one spawns.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h) and the environment variables it reads at start.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
ALLOCATOR = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 32 << 20),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 1 << 30),
}


def tune_process() -> None:
    """Call before torch is first imported (OpenMP reads its variable when it loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ALLOCATOR):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): leave its defaults
        return
    for name, (parameter, value) in ALLOCATOR.items():
        if mallopt(parameter, value) == 1:  # 1: accepted
            os.environ[name] = str(value)
