"""A media library through frameq against a plain loop doing the same work, side by side.

Makes a library of real-content images (crops and rescales of the DAVIS development frames,
600x400 by default, as small library items are) and, with --videos, a few short clips; then
times as whole processes, alternating, in one run:
  loop    one process: read each image, the recipe's work (cartoon), write it; no database,
          no store, no jobs (`python bench/library.py loop SRC DST`);
  batch   `frameq batch SRC -r cartoon -o DST` embedded, in a fresh state directory;
  run     `frameq run SRC -o DST -r cartoon` (a directory run, no batch record);
  rerun   the same `frameq batch` again over the unchanged library (nothing to do).
Prints seconds, items/s and peak memory (RSS) of each, and the ratios loop/batch (the share
of the loop's speed a batch keeps), loop/run and rerun/batch.

Usage: python bench/library.py [--count 2000] [--size 600x400] [--repeat 1] [--videos 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "data" / "davis-dev" / "images"


def make_library(folder: Path, count: int, size: tuple[int, int], videos: int) -> None:
    """`count` distinct images from the DAVIS frames: each a crop of a frame (a different
    place in each) rescaled to `size`, spread over 20 folders."""
    frames = sorted(DAVIS.glob("*/*.jpg"))
    if not frames:
        sys.exit(f"the DAVIS development set is needed at {DAVIS}")
    width, height = size
    for i in range(count):
        with Image.open(frames[(i * 13) % len(frames)]) as image:
            scale = 0.6 + 0.4 * ((i * 7) % 11) / 10  # crops of 60..100 % of the frame
            w, h = int(image.width * scale), int(image.height * scale)
            x, y = (i * 31) % (image.width - w + 1), (i * 17) % (image.height - h + 1)
            item = image.convert("RGB").crop((x, y, x + w, y + h)).resize((width, height))
        path = folder / f"album{i % 20:02d}" / f"photo{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        item.save(path, quality=90)
    for i in range(videos):
        _clip(frames[i * 40 : i * 40 + 25], folder / "clips" / f"clip{i}.mp4")


def _clip(frames: list[Path], path: Path) -> None:
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for f in frames:
            with Image.open(f) as image:
                rgb = np.asarray(image.convert("RGB").resize((854, 480)))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def loop(src: Path, dst: Path) -> None:
    """The plain loop: what `frameq batch -r cartoon` does to each image, nothing else."""
    import torch

    from models.cartoon import cartoon
    from models.device import pick_device, to_tensor, to_uint8
    from workers.media.images import read_rgb, save_output

    device = pick_device("auto")
    with torch.inference_mode():
        for path in sorted(src.rglob("*.jpg")):
            rgb = read_rgb(path, str(path))
            (out,) = to_uint8(cartoon(to_tensor([rgb], device)))
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_output(out, target, ".jpg")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}): {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what")
    plain = sub.add_parser("loop", help="the plain loop alone")
    plain.add_argument("src", type=Path)
    plain.add_argument("dst", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", default="600x400")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each")
    parser.add_argument("--videos", type=int, default=0, help="short 480p clips added to the library")
    args = parser.parse_args()
    if args.what == "loop":
        loop(args.src, args.dst)
        return
    width, height = map(int, args.size.split("x"))
    python, frameq = sys.executable, [sys.executable, "-m", "frameq"]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        lib = tmp / "library"
        make_library(lib, args.count, (width, height), args.videos)
        items = args.count + args.videos
        print(f"library: {args.count} images {width}x{height} (real content), {args.videos} clips")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `frameq` sets it for itself
        results: dict[str, list[tuple[float, float]]] = {"loop": [], "batch": [], "run": [], "rerun": []}
        for r in range(args.repeat):
            out = tmp / f"out{r}"
            results["loop"].append(timed([python, __file__, "loop", str(lib), str(out / "loop")], env))
            home = {**env, "FRAMEQ_HOME": str(tmp / f"home-batch{r}")}
            batch = [*frameq, "batch", str(lib), "-r", "cartoon", "-o", str(out / "batch")]
            results["batch"].append(timed(batch, home))
            results["rerun"].append(timed(batch, home))
            run_home = {**env, "FRAMEQ_HOME": str(tmp / f"home-run{r}")}
            run = [*frameq, "run", str(lib), "-o", str(out / "run"), "-r", "cartoon"]
            results["run"].append(timed(run, run_home))
        median = {name: statistics.median(s for s, _ in runs) for name, runs in results.items()}
        print(f"{'':<6} {'seconds':>8} {'items/s':>8} {'peak MiB':>9}")
        for name, runs in results.items():
            peak = max(m for _, m in runs)
            print(f"{name:<6} {median[name]:>8.1f} {items / median[name]:>8.1f} {peak:>9.0f}")
        print(f"batch keeps {median['loop'] / median['batch']:.2f}x the loop's speed (target >= 0.8)")
        print(f"run keeps {median['loop'] / median['run']:.2f}x the loop's speed")
        print(f"rerun takes {100 * median['rerun'] / median['batch']:.1f} % of the first run (target < 5 %)")


if __name__ == "__main__":
    main()
