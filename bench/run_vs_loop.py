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
import tempfile
from pathlib import Path

import numpy as np
import torch
from clips import make_clip  # bench/ is on sys.path when this runs as a script
from loop import Work, side_by_side

from models.cartoon import cartoon
from models.device import pick_device, to_tensor, to_uint8


def cartoon_work() -> Work:
    device = pick_device("auto")

    def work(rgb: list[np.ndarray]) -> list[np.ndarray]:
        return to_uint8(cartoon(to_tensor(rgb, device)))

    return work


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
        side_by_side(clip, args.frames, tmp, args.repeat, cartoon_work, ["-r", "cartoon"])


if __name__ == "__main__":
    main()
