"""Write frameq's person alphas for the DAVIS development videos, for bench/matte_quality.py.

    python bench/matte_frameq.py --davis ../shared/data/davis-dev --out /tmp/masks [--variant NAME]
        [--landmark full] [--no-refine] [--no-temporal]

Writes OUT/<variant>/<seq>.npz holding `alpha`, uint8 [T, H, W], one per video frame, decoded
and matted in order as a video (temporal state carried), in batches as the matte stage runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.device import pick_device, to_tensor
from models.person import MatteState, PersonMatter, alpha_to_uint8, to_alpha

BATCH = 8


def matte_video(matter: PersonMatter, path: Path, device: torch.device, temporal: bool = True) -> np.ndarray:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    state = MatteState() if temporal else None
    alphas = []
    for i in range(0, len(frames), BATCH):
        alphas.append(alpha_to_uint8(matter(to_tensor(frames[i : i + BATCH], device), state)))
    return np.concatenate(alphas)


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
    args = parser.parse_args()
    device = pick_device("auto")
    matter = PersonMatter(device, landmark=args.landmark)
    if args.no_refine:
        matter.refine = (
            lambda frames, work, coarse: to_alpha(  # type: ignore[method-assign]
                F.interpolate(coarse, size=frames.shape[-2:], mode="bilinear", align_corners=False)
            )
        )
    folder = args.out / args.variant
    folder.mkdir(parents=True, exist_ok=True)
    for video in sorted((args.davis / "video").glob("*.mp4")):
        start = time.perf_counter()
        alpha = matte_video(matter, video, device, temporal=not args.no_temporal)
        np.savez_compressed(folder / f"{video.stem}.npz", alpha=alpha)
        fps = len(alpha) / (time.perf_counter() - start)
        print(f"{video.stem:<18} {len(alpha):>4} frames  {fps:5.1f} frames/s")


if __name__ == "__main__":
    main()
