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
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from loop import Work, side_by_side  # bench/ is on sys.path when this runs as a script

from models.composite import styled_people
from models.device import compute_dtype, pick_device, to_tensor, to_uint8
from models.person import MatteState, PersonMatter
from models.temporal import Stabiliser
from orchestrator.styles import parse_style
from workers.tasks.style import styler_for

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


def portrait_work(style: str) -> Callable[[], Work]:
    """One pass of matte -> style -> stabilise -> composite, set up afresh for each run."""

    def make() -> Work:
        device = pick_device("auto")
        matter = PersonMatter(device, compute_dtype(device), "heavy")
        styler = styler_for(parse_style(style), 1.0, False, None, device)
        state, stabiliser = MatteState(), Stabiliser()

        def work(rgb: list[np.ndarray]) -> list[np.ndarray]:
            frames = to_tensor(rgb, device)
            alpha = matter(rgb, state)
            # The matte stage stores its alpha as 8 bits: so does this, to composite alike.
            alpha = alpha.mul(255).round().div(255).to(frames.dtype)
            styled = stabiliser(rgb, styler(frames))
            styled = styled.mul(255).round().div(255)
            return to_uint8(styled_people(frames, styled, alpha))

        return work

    return make


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
        options = ["-r", "portrait-style", "--style", args.style]
        side_by_side(clip, args.frames, tmp, args.repeat, portrait_work(args.style), options, "target >= 0.8")


if __name__ == "__main__":
    main()
