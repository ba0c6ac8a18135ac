"""Speed of person matting at 720p and 1080p, next to MediaPipe's own runtime, same frames.

    python bench/matte_speed.py [--davis ../shared/data/davis-dev] [--frames 32] [--repeat 3]

For each size it prints frames/s of
  - frameq's PersonMatter (detect, segment, refine, temporal smoothing; batches of 8), with
    its default heavy pose-landmark network and with the lighter full one,
  - `frameq run -r matte` end to end (decode, matte, H.264 encode, assemble) on a clip of
    the same frames,
  - MediaPipe 0.10.14's selfie and pose segmentation through its own runtime, when the
    separate environment made by bench/mediapipe_env.sh exists (MediaPipe is not a frameq
    dependency),
and the ratios of frameq's figures to the MediaPipe ones (medians of alternating runs). Frames
are DAVIS `lucia` (a person walking) scaled up. frameq's matter runs with the settings `frameq`
gives its own processes (frameq/tuning.py: sleeping OpenMP threads, the allocator's thresholds);
set OMP_WAIT_POLICY=ACTIVE to see it with spinning threads, as on a machine with idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frameq.tuning import tune_process  # noqa: E402

tune_process()  # the runtime settings `frameq` runs its stages with, before torch loads

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.device import pick_device  # noqa: E402
from models.person import MatteState, PersonMatter  # noqa: E402

MEDIAPIPE_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"
BATCH = 8


def load_frames(davis: Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    with av.open(str(davis / "video" / "lucia.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frames = (frames * (count // len(frames) + 1))[:count]
    return [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames]


def matter_fps(matter: PersonMatter, frames: list[np.ndarray]) -> float:
    state = MatteState()
    matter(frames[:BATCH], state)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(frames), BATCH):
        matter(frames[i : i + BATCH], state)
    return len(frames) / (time.perf_counter() - start)


def run_fps(frames: list[np.ndarray], workdir: Path) -> float:
    clip = workdir / "clip.mp4"
    h, w = frames[0].shape[:2]
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    env = {**os.environ, "FRAMEQ_HOME": str(workdir / "home")}
    command = [
        sys.executable,
        "-m",
        "frameq",
        "run",
        str(clip),
        "-o",
        str(workdir / "out.mp4"),
        "-r",
        "matte",
    ]
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
    return len(frames) / (time.perf_counter() - start)


def mediapipe_fps(davis: Path, size: tuple[int, int], count: int) -> dict[str, float]:
    if not MEDIAPIPE_PYTHON.exists():
        return {}
    result = subprocess.run(
        [
            str(MEDIAPIPE_PYTHON),
            str(ROOT / "bench" / "mediapipe_baseline.py"),
            "speed",
            "--size",
            f"{size[0]}x{size[1]}",
            "--frames",
            str(count),
            "--davis",
            str(davis),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {row["method"]: float(row["fps"]) for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, default=ROOT.parent / "shared" / "data" / "davis-dev")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating runs of each figure; medians are printed"
    )
    args = parser.parse_args()
    device = pick_device("auto")
    matter = PersonMatter(device)
    light = PersonMatter(device, landmark="full")
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {args.frames} frames per figure, "
        f"median of {args.repeat}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_')}"
    )
    for size in ((1280, 720), (1920, 1080)):
        frames = load_frames(args.davis, size, args.frames)
        with tempfile.TemporaryDirectory() as tmp:
            end_to_end = run_fps(frames, Path(tmp))
        runs: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # alternating, so that a noisy minute hits both sides
            runs.setdefault("frameq matter", []).append(matter_fps(matter, frames))
            runs.setdefault("frameq matter (full)", []).append(matter_fps(light, frames))
            for name, fps in mediapipe_fps(args.davis, size, args.frames).items():
                runs.setdefault(name, []).append(fps)
        median = {name: float(np.median(values)) for name, values in runs.items()}
        figures = {name: median[name] for name in ("frameq matter", "frameq matter (full)")}
        figures["frameq run -r matte"] = end_to_end
        baseline = {name: fps for name, fps in median.items() if name not in figures}
        label = f"{size[0]}x{size[1]}"
        for name, fps in {**figures, **baseline}.items():
            print(f"{label:>9}  {name:<22} {fps:6.2f} frames/s")
        for name, fps in baseline.items():
            for ours in ("frameq matter", "frameq matter (full)"):
                print(f"{label:>9}  {ours} / {name:<14} {figures[ours] / fps:5.2f}x")


if __name__ == "__main__":
    main()
