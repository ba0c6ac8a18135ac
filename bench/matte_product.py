"""Write the alphas `frameq run -r matte` itself delivers for the DAVIS development videos, for
bench/matte_quality.py: the product's output file decoded, not the model in memory.

    python bench/matte_product.py --davis ../shared/data/davis-dev --out /tmp/masks [--variant NAME]
        [--format mp4] [-- EXTRA frameq run OPTIONS]

Each video goes through the real CLI in embedded mode (its own FRAMEQ_HOME, the default
segment length, so segments meet as they do for users) to OUT/<variant>/<seq>.<format>; its
grey frames are decoded and written as OUT/<variant>/<seq>.npz (`alpha`, uint8 [T, H, W]).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def decode_grey(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", default="frameq-product")
    parser.add_argument("--format", default="mp4", help="the matte's container: mp4 (H.264) or mkv")
    parser.add_argument("extra", nargs="*", help="more `frameq run` options, after --")
    args = parser.parse_args()
    folder = args.out / args.variant
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "FRAMEQ_HOME": home}
        for video in sorted((args.davis / "video").glob("*.mp4")):
            out = folder / f"{video.stem}.{args.format}"
            command = [sys.executable, "-m", "frameq", "run", str(video), "-r", "matte", "-o", str(out)]
            start = time.perf_counter()
            subprocess.run([*command, *args.extra], env=env, cwd=ROOT, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            alpha = decode_grey(out)
            np.savez_compressed(folder / f"{video.stem}.npz", alpha=alpha)
            print(f"{args.variant} {video.stem:<18} {len(alpha):>4} frames, {seconds:5.1f} s end to end")


if __name__ == "__main__":
    main()
