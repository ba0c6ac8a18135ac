"""Speed of the style networks on the CPU: frameq's torch ports next to onnxruntime running the
original ONNX files, on the same frames, in the same process, with the same thread count.

    python bench/style_speed.py [--sizes 512x512,1920x1080] [--repeats 5] [--threads N]

For every network in ENTRIES and every size it prints frames/s of both (the median of
`--repeats` timed calls after a warm-up call, the two runtimes taking turns so that a change
in the machine's load hits both alike), their ratio (torch / onnxruntime) and the largest
difference between their outputs. Frames are carphone frame 30 resized (bicubic). Each
entry is a name and two callables taking the same frame batch, one for each runtime; a
further network is one more entry.

On a machine shared with other work the figures say more about the scheduler than about
the code: at the end of every operator torch's OpenMP threads wait for each other, spinning
by default, and one the kernel has set aside holds the others up; onnxruntime's own pool
suffers much less. `chrt -f 10 python bench/style_speed.py` (root) keeps other processes
mostly off the cores while it runs. `OMP_WAIT_POLICY=PASSIVE python bench/style_speed.py`
makes torch's threads sleep instead of spin, and then onnxruntime's too (its
session.intra_op.allow_spinning off), so that both run alike. The header shows the load
average and whether threads spin.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frameq.samples import sample_clip  # noqa: E402
from models.multistyle import N_STYLES, MultiStyle  # noqa: E402
from models.weights import model_path  # noqa: E402


class Entry(NamedTuple):
    name: str
    torch_run: Callable[[torch.Tensor], np.ndarray]  # RGB [1, 3, H, W] in 0..1 -> output
    ort_run: Callable[[np.ndarray], np.ndarray]  # the same frames as float32 numpy


def spinning() -> bool:
    """Whether torch's OpenMP threads spin while they wait (read by OpenMP at start-up)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"


def session(name: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning():
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path(name)), options, providers=["CPUExecutionProvider"])


def multistyle(threads: int) -> Entry:
    network = MultiStyle.load(model_path("multistyle26.onnx")).eval()
    sess = session("multistyle26.onnx", threads)
    weights = np.zeros(N_STYLES, np.float32)
    weights[[2, 9, 17]] = [0.5, 0.3, 0.2]  # a blend costs what a single style costs

    def torch_run(frames: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return network(frames, torch.from_numpy(weights)).numpy()

    def ort_run(frames: np.ndarray) -> np.ndarray:
        return sess.run(None, {"image": frames, "style_weights": weights})[0]

    return Entry("multistyle26", torch_run, ort_run)


ENTRIES: list[Callable[[int], Entry]] = [multistyle]


def carphone(width: int, height: int) -> np.ndarray:
    """carphone frame 30 at width x height, float32 [1, 3, H, W] in 0..1."""
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                rgb = cv2.resize(
                    frame.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_CUBIC
                )
                return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    raise RuntimeError("carphone is shorter than 31 frames")


def timed(run: Callable[[], np.ndarray]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512x512,1920x1080", help="WxH,WxH,...")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = [make(args.threads) for make in ENTRIES]
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads,", end=" ")
    print(f"median of {args.repeats}, load average {load:.1f} on {os.cpu_count()} cores,", end=" ")
    print("threads spin while waiting" if spinning() else "threads sleep while waiting")
    print(f"{'network':<16} {'size':>10} {'torch f/s':>10} {'ort f/s':>10} {'ratio':>7} {'max diff':>9}")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        frames = carphone(width, height)
        tensor = torch.from_numpy(frames)
        for entry in entries:
            ours, theirs = entry.torch_run(tensor), entry.ort_run(frames)  # warm-up
            diff = float(np.abs(ours - theirs).max())
            torch_s, ort_s = [], []
            for _ in range(args.repeats):
                torch_s.append(timed(functools.partial(entry.torch_run, tensor)))
                ort_s.append(timed(functools.partial(entry.ort_run, frames)))
            torch_fps, ort_fps = 1 / statistics.median(torch_s), 1 / statistics.median(ort_s)
            ratio = torch_fps / ort_fps
            print(
                f"{entry.name:<16} {size:>10} {torch_fps:>10.2f} {ort_fps:>10.2f} {ratio:>6.2f}x {diff:>9.1e}"
            )


if __name__ == "__main__":
    main()
