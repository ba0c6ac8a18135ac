"""Smart crop on real video with hand-made person masks: how much of the person each crop keeps,
and how steady the video crop path is.

    .venv/bin/python bench/crop_quality.py [--davis DAVIS] [--every 1] [--cache out/crop-saliency]
                                           [--sheet out/crop-sheet.png] [--json FILE]

DAVIS is ../shared/data/davis-dev: five sequences of one person each (854x480, 24 fps), masks on
every 4th frame. Every frame of each video (--every N: every Nth, the path then at fps / N) gets a
saliency map (models/saliency.py); then, for each ratio:

- kept: the share of the mask's pixels inside the window, over the annotated frames, for the
  smart crop of each frame alone (best_window), the smoothed video path (crop_path) and the
  centre crop;
- jitter: mean movement of the window from one processed frame to the next, in pixels, of the
  raw per-frame best windows and of the smoothed path (the centre crop's is 0).

--sheet draws, on the middle annotated frame of each sequence, the centre window (red), the
frame's own best window (yellow) and the path's window (green) for 9:16, beside the saliency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.device import pick_device, to_tensor
from models.saliency import Saliency
from models.smartcrop import Window, best_window, centre_window, crop_path, jitter
from orchestrator.params import parse_ratio

DAVIS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "davis-dev"
RATIOS = ("9:16", "1:1", "4:5")
BATCH = 8
FPS = 24.0  # the DAVIS videos'
TILE_H = 240
RED, YELLOW, GREEN = (0, 0, 255), (0, 255, 255), (0, 200, 0)  # BGR


def decode(path: Path, every: int) -> list[np.ndarray]:
    """Every `every`th frame of the video, RGB uint8."""
    with av.open(str(path)) as container:
        return [
            f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % every == 0
        ]


def masks(davis: Path, seq: str) -> dict[int, np.ndarray]:
    """Video frame index -> the hand-made mask, bool [480, 854]."""
    out = {}
    for path in sorted((davis / "masks" / seq).glob("*.png")):
        with Image.open(path) as image:
            out[int(path.stem)] = np.asarray(image) > 127
    return out


def saliency_maps(
    frames: list[np.ndarray], saliency: Saliency, cache: Path | None, key: str
) -> tuple[np.ndarray, float]:
    """[T, h, w] float32 maps, and the seconds a frame took (0 when read from the cache)."""
    path = cache / f"{key}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path), 0.0
    start = time.perf_counter()
    out = []
    for i in range(0, len(frames), BATCH):
        batch = to_tensor([np.ascontiguousarray(f) for f in frames[i : i + BATCH]], saliency.device)
        out.append(saliency(batch)[:, 0].float().cpu().numpy())
    maps = np.concatenate(out)
    seconds = (time.perf_counter() - start) / len(frames)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, maps)
    return maps, seconds


def kept(window: Window, mask: np.ndarray) -> float:
    inside = mask[window.y : window.y + window.h, window.x : window.x + window.w].sum()
    return float(inside / max(1, mask.sum()))


def draw(frame: np.ndarray, windows: list[tuple[Window, tuple[int, int, int]]]) -> np.ndarray:
    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    for k, (w, colour) in enumerate(windows):
        inset = 2 + 3 * k  # nested, so windows in the same place stay visible
        cv2.rectangle(
            image, (w.x + inset, w.y + inset), (w.x + w.w - 1 - inset, w.y + w.h - 1 - inset), colour, 3
        )
    return image


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, default=DAVIS)
    parser.add_argument("--every", type=int, default=1, help="saliency on every Nth frame (default: all)")
    parser.add_argument("--cache", type=Path, help="keep the saliency maps here between runs")
    parser.add_argument("--sheet", type=Path, default=Path("out/crop-sheet.png"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    saliency = Saliency(pick_device(args.device))
    seqs = sorted(p.stem for p in (args.davis / "video").glob("*.mp4"))
    results: dict[str, dict[str, dict[str, float]]] = {r: {} for r in RATIOS}
    tiles = []
    per_frame_s = []
    for seq in seqs:
        frames = decode(args.davis / "video" / f"{seq}.mp4", args.every)
        maps, seconds = saliency_maps(frames, saliency, args.cache, f"{seq}-every{args.every}")
        if seconds:
            per_frame_s.append(seconds)
        truth = {i // args.every: m for i, m in masks(args.davis, seq).items() if i % args.every == 0}
        height, width = frames[0].shape[:2]
        for name in RATIOS:
            ratio = Fraction(*parse_ratio(name))
            raw = [best_window(m, width, height, ratio, even=True) for m in maps]
            path = crop_path(raw, [], width, height, fps=FPS / args.every)
            centre = centre_window(width, height, ratio, even=True)
            results[name][seq] = {
                "smart": float(np.mean([kept(raw[i], m) for i, m in truth.items()])),
                "path": float(np.mean([kept(path[i], m) for i, m in truth.items()])),
                "centre": float(np.mean([kept(centre, m) for m in truth.values()])),
                "jitter_raw": jitter(raw),
                "jitter_path": jitter(path),
            }
            if name == "9:16":
                i = sorted(truth)[len(truth) // 2]
                boxed = draw(frames[i], [(centre, RED), (raw[i], YELLOW), (path[i], GREEN)])
                heat = cv2.applyColorMap(
                    cv2.resize((maps[i] * 255).astype(np.uint8), (width, height)), cv2.COLORMAP_INFERNO
                )
                pair = np.concatenate([boxed, heat], axis=1)
                scale = TILE_H / height
                tiles.append(
                    cv2.resize(pair, (round(pair.shape[1] * scale), TILE_H), interpolation=cv2.INTER_AREA)
                )
    print(
        f"saliency: {np.mean(per_frame_s):.2f} s a frame on {saliency.device}"
        if per_frame_s
        else "saliency: from the cache"
    )
    print(
        "frames: all"
        if args.every == 1
        else f"frames: every {args.every}th (the path at {FPS / args.every} fps)"
    )
    print("smart, path, centre: share of the mask's pixels each window keeps (annotated frames)")
    print("jitter: mean movement of the window a frame, px (the centre crop's: 0); mean: over sequences")
    print(f"{'ratio':<6} {'sequence':<17}  smart   path centre  jitter raw  jitter path")
    for name in RATIOS:
        rows = results[name]
        rows["mean"] = {k: float(np.mean([rows[s][k] for s in seqs])) for k in rows[seqs[0]]}
        for seq, r in rows.items():
            print(
                f"{name:<6} {seq:<17} {r['smart']:6.3f} {r['path']:6.3f} {r['centre']:6.3f} "
                f"{r['jitter_raw']:11.2f} {r['jitter_path']:12.2f}"
            )
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), np.concatenate(tiles, axis=0))
        print(f"sheet: {args.sheet} (red: centre, yellow: the frame's best window, green: the path's; 9:16)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
