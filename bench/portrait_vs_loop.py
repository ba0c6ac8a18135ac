"""portrait-style end to end: `frameq run -r portrait-style` against a plain loop doing the same.

Makes a 720p clip from a real DAVIS video (a person walking, upscaled from 854x480, looped
forward and back to the asked length), then times, side by side in one run:
  plain   one process, one pass: decode -> matte -> style -> stabilise -> composite -> encode
          (the same models, batches, options, encoder and settings as the stages), no
          database, no segments, no store, no intermediates, no audio mux;
  frameq  the `frameq run` command in a fresh state directory (process start, SQLite, plan,
          segments, the matte and style stages' lossless intermediates, composite, assemble).
Prints frames/s of both and frameq/plain (the issue's target: at least 0.8).

    python bench/portrait_vs_loop.py [--frames 96] [--style 19] [--repeat 1]
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

from models.composite import styled_people
from models.device import compute_dtype, pick_device, to_tensor, to_uint8
from models.person import MatteState, PersonMatter
from models.temporal import Stabiliser
from orchestrator.formats import Format
from orchestrator.styles import parse_style
from workers.frames import batched
from workers.media.video import SegmentWriter
from workers.tasks.style import styler_for

CRF, PRESET, BATCH = 20, "fast", 8
DAVIS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis-dev"


def make_clip(path: Path, frames: int, source: Path) -> None:
    """The DAVIS video at 1280x720, played forward then backward until `frames` frames."""
    with av.open(str(source)) as inp:
        pictures = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    order = pictures + pictures[-2:0:-1]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=Fraction(24))
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast", "g": "48"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(order[i % len(order)], format="rgb24").reformat(1280, 720)
            frame.pts, frame.time_base = i, Fraction(1, 24)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


def plain_loop(src: Path, dst: Path, style: str) -> int:
    device = pick_device("auto")
    matter = PersonMatter(device, compute_dtype(device), "heavy")
    styler = styler_for(parse_style(style), 1.0, False, None, device)
    state, stabiliser = MatteState(), Stabiliser()
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
                rgb = [f.to_ndarray(format="rgb24") for f in batch]
                frames = to_tensor(rgb, device)
                alpha = matter(frames, state)
                # The matte stage stores its alpha as 8 bits: so does this, to composite alike.
                alpha = alpha.mul(255).round().div(255).to(frames.dtype)
                styled = stabiliser(rgb, styler(frames))
                styled = styled.mul(255).round().div(255)
                for out, frame in zip(to_uint8(styled_people(frames, styled, alpha)), batch, strict=True):
                    writer.write(out, frame.pts)
                count += len(batch)
    return count


def frameq_run(src: Path, dst: Path, home: Path, style: str) -> None:
    env = {**os.environ, "FRAMEQ_HOME": str(home), "FRAMEQ_CRF": str(CRF), "FRAMEQ_PRESET": PRESET}
    env.pop("FRAMEQ_DATABASE_URL", None)
    env.pop("FRAMEQ_STORE_URL", None)
    frameq = Path(sys.executable).parent / "frameq"
    command = [str(frameq), "run", str(src), "-o", str(dst), "-r", "portrait-style", "--style", style]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=96, help="clip length in frames (24 fps)")
    parser.add_argument("--style", default="19")
    parser.add_argument("--video", default="lucia", help="DAVIS development video")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        clip = tmp / "clip-720p.mp4"
        make_clip(clip, args.frames, DAVIS / "video" / f"{args.video}.mp4")
        print(
            f"clip: DAVIS {args.video} at 1280x720, {args.frames} frames; style {args.style}; "
            f"torch threads {torch.get_num_threads()}"
        )
        plain_s, frameq_s = [], []
        for i in range(args.repeat):
            start = time.perf_counter()
            assert plain_loop(clip, tmp / "plain.mp4", args.style) == args.frames
            plain_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            frameq_run(clip, tmp / "frameq.mp4", tmp / f"home{i}", args.style)
            frameq_s.append(time.perf_counter() - start)
        plain, ours = min(plain_s), min(frameq_s)
        print(f"plain loop   {args.frames / plain:6.2f} frames/s  ({plain:.1f} s)")
        print(f"frameq run   {args.frames / ours:6.2f} frames/s  ({ours:.1f} s, process start included)")
        print(f"ratio frameq/plain {plain / ours:.3f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
