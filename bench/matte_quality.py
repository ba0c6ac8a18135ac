"""Person matting quality on real people with hand-made masks: frameq beside MediaPipe.

    bench/mediapipe_env.sh
    .venv-mediapipe/bin/python bench/mediapipe_baseline.py masks --davis DAVIS --out MASKS
    .venv/bin/python bench/matte_frameq.py --davis DAVIS --out MASKS            # frameq
    .venv/bin/python bench/matte_frameq.py --davis DAVIS --out MASKS --no-refine --variant frameq-no-refine
    .venv/bin/python bench/matte_quality.py --davis DAVIS --masks MASKS [--json FILE]

Stress cases (bench/matte_frameq.py --turns, --miss-every; bench/mediapipe_baseline.py
--turns) are method folders named METHOD@90 and so on: each is compared with the MediaPipe
methods of the same turn, and its IoU with its own upright figure.

(`make bench-matte` runs all of it.) DAVIS is ../shared/data/davis-dev: five DAVIS 2016
sequences with masks on every 4th frame. Every method folder under MASKS is scored with
bench/matte_metrics.py; the table gives per-sequence and overall figures, then every
non-MediaPipe method's IoU margin over the best MediaPipe method and the share of its IoU
loss that lies in the 4-px band along the true boundary (edge IoU against IoU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matte_metrics import MISSED_IOU, band_mae, boundary_f, edge_iou, flicker, iou, lost_frames, mae

FIGURES = ("iou", "mae", "boundary_f", "band_mae", "edge_iou", "flicker", "lost", "missed")
PER_FRAME = ("iou", "mae", "boundary_f", "band_mae", "edge_iou")


def truths(davis: Path, seq: str) -> dict[int, np.ndarray]:
    return {
        int(p.stem): cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127
        for p in sorted((davis / "masks" / seq).glob("*.png"))
    }


def score(alphas: np.ndarray, truth: dict[int, np.ndarray]) -> dict[str, list[float]]:
    per_frame: dict[str, list[float]] = {name: [] for name in PER_FRAME}
    for index, mask in truth.items():
        alpha = alphas[index]
        if alpha.shape != mask.shape:
            raise SystemExit(f"alpha {alpha.shape} and mask {mask.shape} differ in size")
        per_frame["iou"].append(iou(alpha, mask))
        per_frame["mae"].append(mae(alpha, mask))
        per_frame["boundary_f"].append(boundary_f(alpha, mask))
        per_frame["band_mae"].append(band_mae(alpha, mask))
        per_frame["edge_iou"].append(edge_iou(alpha, mask))
    per_frame["flicker"] = [flicker(alphas, truth)]
    per_frame["lost"] = [lost_frames(alphas)]
    per_frame["missed"] = [sum(1 for k, m in truth.items() if m.any() and iou(alphas[k], m) < MISSED_IOU)]
    return per_frame


def _turn(method: str) -> str:
    return method.partition("@")[2]


def _upright(method: str) -> str:
    return method.partition("@")[0]


def compare(
    results: dict[str, dict[str, dict[str, float]]],
    seqs: list[str],
    group: list[str],
    baselines: list[str],
    turn: str,
) -> None:
    """Each non-MediaPipe method of a group (one turn) against the MediaPipe ones."""
    best = max(baselines, key=lambda m: results[m]["all"]["iou"])
    top = results[best]["all"]["iou"]
    print(f"\nturn {turn or 0}: best MediaPipe method by mean IoU: {best} ({top:.3f})")
    for method in (m for m in group if not m.startswith("mp-")):
        margin = results[method]["all"]["iou"] - results[best]["all"]["iou"]
        below = [s for s in seqs if results[method][s]["iou"] < max(results[b][s]["iou"] for b in baselines)]
        least = min(results[b]["all"]["flicker"] for b in baselines)
        flick = results[method]["all"]["flicker"] / max(1e-9, least)
        worse = [
            s
            for s in seqs
            if results[method][s]["flicker"] > min(results[b][s]["flicker"] for b in baselines)
        ]
        overall = results[method]["all"]
        edge_share = (overall["edge_iou"] - overall["iou"]) / max(1e-9, 1.0 - overall["iou"])
        print(
            f"{method:<22} IoU margin {margin:+.3f}; sequences below the best MediaPipe method there: "
            f"{', '.join(below) or 'none'}; flicker {flick:.2f}x the least-flickering MediaPipe method "
            f"(clips flickering more than every MediaPipe method: {', '.join(worse) or 'none'}); "
            f"{edge_share:.0%} of its IoU loss lies at the true edge; lost frames "
            f"{overall['lost']:.0f} (MediaPipe {min(results[b]['all']['lost'] for b in baselines):.0f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seqs = sorted(p.stem for p in (args.davis / "video").glob("*.mp4"))
    methods = sorted(
        p.name for p in args.masks.iterdir() if p.is_dir() and all((p / f"{s}.npz").exists() for s in seqs)
    )
    results: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        results[method] = {}
        frames: dict[str, list[float]] = {name: [] for name in FIGURES}
        for seq in seqs:
            alphas = np.load(args.masks / method / f"{seq}.npz")["alpha"]
            per_frame = score(alphas, truths(args.davis, seq))
            results[method][seq] = {name: float(np.mean(v)) for name, v in per_frame.items()}
            results[method][seq]["min_iou"] = float(np.min(per_frame["iou"]))
            for name in FIGURES:
                frames[name] += per_frame[name]
        # overall: means over every annotated frame (flicker: over sequences; counts: sums)
        results[method]["all"] = {name: float(np.mean(v)) for name, v in frames.items()}
        for name in ("lost", "missed"):
            results[method]["all"][name] = float(np.sum(frames[name]))
    columns = (
        ("IoU", 6), ("minIoU", 6), ("MAE", 7), ("F", 6), ("bandMAE", 8), ("edgeIoU", 7), ("flicker", 8),
        ("lost", 5), ("missed", 6),
    )  # fmt: skip
    print(f"{'method':<22} {'sequence':<17} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for method, rows in results.items():
        for seq, r in rows.items():
            low = f"{r['min_iou']:6.3f}" if "min_iou" in r else " " * 6
            print(
                f"{method:<22} {seq:<17} {r['iou']:6.3f} {low} {r['mae']:7.4f} {r['boundary_f']:6.3f} "
                f"{r['band_mae']:8.4f} {r['edge_iou']:7.3f} {r['flicker']:8.5f} {r['lost']:5.0f} "
                f"{r['missed']:6.0f}"
            )
    for turn in sorted({_turn(m) for m in methods}):
        group = [m for m in methods if _turn(m) == turn]
        baselines = [m for m in group if m.startswith("mp-")]
        if baselines:
            compare(results, seqs, group, baselines, turn)
        for method in (m for m in group if turn and _upright(m) in results):
            drop = results[_upright(method)]["all"]["iou"] - results[method]["all"]["iou"]
            print(f"{method:<22} IoU {drop:+.3f} below its upright figure")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
