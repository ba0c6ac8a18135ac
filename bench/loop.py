"""What bench/run_vs_loop.py and bench/portrait_vs_loop.py share: the plain single-process loop
(decode, the work on batches of frames, encode as the output stage does; no database, no
segments, no store, no audio mux), the `frameq run` command in a fresh state directory, and
the two timed side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from orchestrator.formats import Format
from workers.frames import batched
from workers.media.video import SegmentWriter

CRF, PRESET, BATCH = 20, "fast", 8

# The work on one batch: RGB uint8 frames [H, W, 3] in, the output frames (the same) out.
Work = Callable[[list[np.ndarray]], Iterable[np.ndarray]]


def plain_loop(src: Path, dst: Path, make_work: Callable[[], Work]) -> int:
    """`src` through the work `make_work` sets up (timed with the rest: frameq loads its models
    too) in batches of BATCH, into `dst` as the output stage writes an .mp4; returns the frame
    count."""
    work = make_work()
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        writer = SegmentWriter(
            dst,
            Format("h264", "rgb"),  # what the output stage writes for an .mp4
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            time_base=Fraction(stream.time_base),
            rate=Fraction(stream.average_rate),
            crf=CRF,
            preset=PRESET,
        )
        count = 0
        with writer, torch.inference_mode():
            for batch in batched(inp.decode(stream), BATCH):
                outputs = work([f.to_ndarray(format="rgb24") for f in batch])
                for out, frame in zip(outputs, batch, strict=True):
                    writer.write(out, frame.pts)
                count += len(batch)
    return count


def frameq_run(src: Path, dst: Path, home: Path, *options: str) -> None:
    """`frameq run SRC -o DST OPTIONS...` embedded, with its state in `home` and the same
    encoder settings as the plain loop."""
    env = {**os.environ, "FRAMEQ_HOME": str(home), "FRAMEQ_CRF": str(CRF), "FRAMEQ_PRESET": PRESET}
    env.pop("FRAMEQ_DATABASE_URL", None)
    env.pop("FRAMEQ_STORE_URL", None)
    frameq = Path(sys.executable).parent / "frameq"
    command = [str(frameq), "run", str(src), "-o", str(dst), *options]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def side_by_side(
    clip: Path,
    frames: int,
    tmp: Path,
    repeat: int,
    make_work: Callable[[], Work],
    options: Sequence[str],
    note: str = "",
) -> None:
    """`repeat` alternating runs of the plain loop and of `frameq run` with `options` on `clip`
    (`frames` frames); prints frames/s of the best run of each and frameq/plain."""
    plain_s, frameq_s = [], []
    for i in range(repeat):
        start = time.perf_counter()
        assert plain_loop(clip, tmp / "plain.mp4", make_work) == frames
        plain_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        frameq_run(clip, tmp / "frameq.mp4", tmp / f"home{i}", *options)
        frameq_s.append(time.perf_counter() - start)
    plain, ours = min(plain_s), min(frameq_s)
    print(f"plain loop   {frames / plain:6.2f} frames/s  ({plain:.1f} s)")
    print(f"frameq run   {frames / ours:6.2f} frames/s  ({ours:.1f} s, process start included)")
    print(f"ratio frameq/plain {plain / ours:.3f}" + (f"  ({note})" if note else ""))
