"""Write frameq's person alphas for the DAVIS development videos, for bench/matte_quality.py.

    python bench/matte_frameq.py --davis ../shared/data/davis-dev --out /tmp/masks [--variant NAME]
        [--landmark full] [--no-refine] [--no-temporal] [--turns K] [--miss-every N]

Writes OUT/<variant>/<seq>.npz holding `alpha`, uint8 [T, H, W], one per video frame, decoded
and matted in order as a video (temporal state carried), in batches as the matte stage runs,
and prints how many frames each path of the matte took (models/person.py PATHS).

Stress cases: `--turns K` mattes the video turned K quarters anticlockwise (the alpha is turned
back to be scored against the upright masks; the variant is named NAME@90, @180, @270);
`--miss-every N` blinds the pose detector on every Nth frame (frames N-1, 2N-1, ...), at every
turn, as if it had missed the person there (variant NAME-miss<N>).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.device import pick_device
from models.person import PATHS, MatteState, PersonMatter, alpha_to_uint8, to_alpha

BATCH = 8


class BlindedMatter(PersonMatter):
    """The matter with its pose detector made to find nobody on every `every`th frame."""

    def __init__(self, every: int, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.every, self.start, self.work = every, 0, torch.empty(0)

    def blind(self, index: int) -> bool:
        return (self.start + index) % self.every == self.every - 1

    def segment(self, frames, people, state=None):  # type: ignore[no-untyped-def]
        self.work = frames.work
        people = [[] if self.blind(i) else found for i, found in enumerate(people)]
        out = super().segment(frames, people, state)
        self.start += len(people)
        return out

    def detect_turned(self, frames, full_hw):  # type: ignore[no-untyped-def]
        # The frame is a one-frame view of the batch's working frames: its offset says which.
        index = (frames.data_ptr() - self.work.data_ptr()) // (frames.stride(0) * frames.element_size())
        return [] if self.blind(index) else super().detect_turned(frames, full_hw)


def matte_video(
    matter: PersonMatter, path: Path, temporal: bool = True, turns: int = 0
) -> tuple[np.ndarray, Counter[str]]:
    with av.open(str(path)) as container:
        frames = [np.rot90(f.to_ndarray(format="rgb24"), turns) for f in container.decode(video=0)]
    frames = [np.ascontiguousarray(f) for f in frames]
    state = MatteState() if temporal else None
    alphas = []
    for i in range(0, len(frames), BATCH):
        alphas.append(alpha_to_uint8(matter(frames[i : i + BATCH], state)))
    alpha = np.ascontiguousarray(np.rot90(np.concatenate(alphas), -turns, axes=(1, 2)))
    return alpha, state.paths if state is not None else Counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", default="frameq")
    parser.add_argument("--no-temporal", action="store_true", help="no smoothing across frames")
    parser.add_argument(
        "--no-refine", action="store_true", help="plain bilinear upsampling, no guided filter"
    )
    parser.add_argument("--landmark", default="heavy", help="pose-landmark network: heavy or full")
    parser.add_argument("--turns", type=int, default=0, choices=(0, 1, 2, 3))
    parser.add_argument("--miss-every", type=int, default=0, help="blind the detector on every Nth frame")
    args = parser.parse_args()
    device = pick_device("auto")
    matter = (
        BlindedMatter(args.miss_every, device, landmark=args.landmark)
        if args.miss_every
        else PersonMatter(device, landmark=args.landmark)
    )
    variant = args.variant + (f"-miss{args.miss_every}" if args.miss_every else "")
    variant += f"@{90 * args.turns}" if args.turns else ""
    if args.no_refine:
        matter.refine = lambda frames, coarse: to_alpha(  # type: ignore[method-assign]
            F.interpolate(coarse, size=frames.full_hw, mode="bilinear", align_corners=False)
        )
    folder = args.out / variant
    folder.mkdir(parents=True, exist_ok=True)
    for video in sorted((args.davis / "video").glob("*.mp4")):
        start = time.perf_counter()
        if isinstance(matter, BlindedMatter):
            matter.start = 0
        alpha, paths = matte_video(matter, video, not args.no_temporal, args.turns)
        np.savez_compressed(folder / f"{video.stem}.npz", alpha=alpha)
        fps = len(alpha) / (time.perf_counter() - start)
        taken = ", ".join(f"{path} {paths[path]}" for path in PATHS if paths[path])
        print(f"{variant} {video.stem:<18} {len(alpha):>4} frames  {fps:5.1f} frames/s  paths: {taken}")


if __name__ == "__main__":
    main()
