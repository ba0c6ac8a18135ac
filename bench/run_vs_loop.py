"""Orchestration overhead: `frameq run -r cartoon` against a plain loop doing the same work.

Makes a 1080p clip from the real Big Buck Bunny sample (upscaled, looped, with its audio),
then times, side by side in one run:
  plain   one process: decode -> cartoon (same batches, same device) -> encode (same encoder
          and settings), no database, no segments, no store, no audio mux;
  frameq  the `frameq run` command in a fresh state directory (process start, SQLite, plan,
          segments, store, assemble with audio included).
Prints frames/s for both and frameq/plain. Usage: python bench/run_vs_loop.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import torch
from clips import make_clip  # bench/ is on sys.path when this runs as a script

from models.cartoon import cartoon
from models.device import pick_device, to_tensor, to_uint8
from orchestrator.formats import Format
from workers.frames import batched
from workers.media.video import SegmentWriter

CRF, PRESET, BATCH = 20, "fast", 8


def plain_loop(src: Path, dst: Path) -> int:
    device = pick_device("auto")
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
                outputs = to_uint8(cartoon(to_tensor([f.to_ndarray(format="rgb24") for f in batch], device)))
                for out, frame in zip(outputs, batch, strict=True):
                    writer.write(out, frame.pts)
                count += len(batch)
    return count


def frameq_run(src: Path, dst: Path, home: Path) -> None:
    env = {**os.environ, "FRAMEQ_HOME": str(home), "FRAMEQ_CRF": str(CRF), "FRAMEQ_PRESET": PRESET}
    env.pop("FRAMEQ_DATABASE_URL", None)
    env.pop("FRAMEQ_STORE_URL", None)
    frameq = Path(sys.executable).parent / "frameq"
    subprocess.run(
        [str(frameq), "run", str(src), "-o", str(dst), "-r", "cartoon"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="clip length in frames (25 fps)")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        clip = tmp / "clip-1080p.mp4"
        make_clip(clip, args.frames)
        print(
            f"clip: 1920x1080, {args.frames} frames at 25 fps, AAC audio; "
            f"torch threads {torch.get_num_threads()}"
        )
        plain_s, frameq_s = [], []
        for i in range(args.repeat):
            start = time.perf_counter()
            frames = plain_loop(clip, tmp / "plain.mp4")
            plain_s.append(time.perf_counter() - start)
            assert frames == args.frames
            start = time.perf_counter()
            frameq_run(clip, tmp / "frameq.mp4", tmp / f"home{i}")
            frameq_s.append(time.perf_counter() - start)
        plain, ours = min(plain_s), min(frameq_s)
        print(f"plain loop   {args.frames / plain:6.2f} frames/s  ({plain:.1f} s)")
        print(f"frameq run   {args.frames / ours:6.2f} frames/s  ({ours:.1f} s, process start included)")
        print(f"ratio frameq/plain {plain / ours:.3f}")


if __name__ == "__main__":
    main()
