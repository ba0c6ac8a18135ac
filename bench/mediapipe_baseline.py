"""MediaPipe's own person segmentation, the baseline for frameq's matting figures.

Runs only in the separate environment made by bench/mediapipe_env.sh (it imports mediapipe,
nothing of frameq):

    .venv-mediapipe/bin/python bench/mediapipe_baseline.py masks --davis DIR --out DIR [--turns K]
        [--methods mp-pose,mp-pose-heavy]
    .venv-mediapipe/bin/python bench/mediapipe_baseline.py speed --size 1920x1080 --frames 32

Methods, each run through MediaPipe 0.10.14's own runtime and its solution graphs:
  mp-selfie            selfie segmentation, general model (256x256)
  mp-selfie-landscape  selfie segmentation, landscape model (144x256)
  mp-pose              pose (full model) with its segmentation mask, smoothing on, video mode
  mp-pose-heavy        the same with the heavy model (model_complexity=2); MediaPipe fetches
                       that file at run time, so bench/mediapipe_env.sh puts frameq's pinned
                       copy where MediaPipe looks for it

`masks` writes OUT/<method>/<seq>.npz holding `alpha`, uint8 [T, H, W], one per video frame
(frames fed in order, as a video; zeros where pose finds nobody); with `--turns K` the video
is turned K quarters anticlockwise first and the alphas turned back (method names get @90,
@180, @270), the stress case of bench/matte_frameq.py. `speed` prints one JSON
line per method with frames/s on DAVIS `lucia` frames scaled to the size.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import mediapipe as mp
import numpy as np

Method = Callable[[np.ndarray], np.ndarray]
METHODS = ("mp-selfie", "mp-selfie-landscape", "mp-pose", "mp-pose-heavy")


def make(method: str) -> Method:
    """A fresh solution (its own temporal state) as a function RGB uint8 -> float alpha."""
    if method.startswith("mp-selfie"):
        selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(
            model_selection=1 if method.endswith("landscape") else 0
        )
        return lambda rgb: selfie.process(rgb).segmentation_mask
    pose = mp.solutions.pose.Pose(
        static_image_mode=False,
        model_complexity=2 if method.endswith("heavy") else 1,
        enable_segmentation=True,
        smooth_segmentation=True,
    )

    def run(rgb: np.ndarray) -> np.ndarray:
        mask = pose.process(rgb).segmentation_mask
        return np.zeros(rgb.shape[:2], np.float32) if mask is None else mask

    return run


def video_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def masks(davis: Path, out: Path, methods: list[str], turns: int = 0) -> None:
    for method in methods:
        folder = out / (method + (f"@{90 * turns}" if turns else ""))
        folder.mkdir(parents=True, exist_ok=True)
        for video in sorted((davis / "video").glob("*.mp4")):
            fn = make(method)
            turned = [np.ascontiguousarray(np.rot90(rgb, turns)) for rgb in video_frames(video)]
            alpha = [np.rot90(np.clip(fn(rgb) * 255.0 + 0.5, 0, 255), -turns) for rgb in turned]
            np.savez_compressed(folder / f"{video.stem}.npz", alpha=np.stack(alpha).astype(np.uint8))
            print(f"{folder.name:<20} {video.stem:<18} {len(alpha)} frames", flush=True)


def speed(davis: Path, size: tuple[int, int], count: int) -> None:
    frames = video_frames(davis / "video" / "lucia.mp4")
    frames = [
        cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in (frames * (count // len(frames) + 1))
    ]
    for method in METHODS:
        fn = make(method)
        for rgb in frames[:3]:  # warm-up
            fn(rgb)
        start = time.perf_counter()
        for rgb in frames[3 : 3 + count]:
            fn(rgb)
        fps = count / (time.perf_counter() - start)
        print(
            json.dumps({"method": method, "size": f"{size[0]}x{size[1]}", "fps": round(fps, 3)}), flush=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("masks")
    m.add_argument("--davis", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--turns", type=int, default=0, choices=(0, 1, 2, 3))
    m.add_argument("--methods", default=",".join(METHODS))
    s = sub.add_parser("speed")
    s.add_argument(
        "--davis", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/davis-dev"
    )
    s.add_argument("--size", default="1920x1080")
    s.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    if args.command == "masks":
        masks(args.davis, args.out, args.methods.split(","), args.turns)
    else:
        w, h = (int(v) for v in args.size.split("x"))
        speed(args.davis, (w, h), args.frames)


if __name__ == "__main__":
    main()
