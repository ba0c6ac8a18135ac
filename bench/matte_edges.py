"""The people's edges: today's guided filter beside `--fine-edges` (models/edges.py), same frames.

    python bench/matte_edges.py --davis ../shared/data/davis-dev [--sheet edges.png]

Every annotated DAVIS development frame is matted as a picture (no temporal state) both ways
and scored against the hand-made mask: IoU, MAE in the boundary band (bench/matte_metrics.py),
the share of pixels with partial opacity, and seconds a frame. The DAVIS masks are binary, so
the band error counts any partial opacity as error, true or not: the contact sheet (--sheet)
shows close-ups where soft edges are right, the carphone clip's man at 4x and, when
scikit-image can be imported, its astronaut: each person over green and the alpha itself,
guided filter on the left, fine edges on the right.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.matte_metrics import band_mae, iou  # noqa: E402
from frameq.samples import sample_clip  # noqa: E402
from models.device import pick_device  # noqa: E402
from models.edges import EdgeMatter  # noqa: E402
from models.person import PersonMatter, alpha_to_uint8  # noqa: E402

GREEN = np.array([0, 200, 0], np.float32)
ROW_HEIGHT_PX = 300


def soft(alpha: np.ndarray) -> float:
    return float(((alpha > 12) & (alpha < 243)).mean())


def score(davis: Path, matter: PersonMatter, edges: EdgeMatter) -> None:
    figures: dict[str, list[tuple[float, float, float, float]]] = {"guided": [], "fine edges": []}
    for video in sorted((davis / "video").glob("*.mp4")):
        with av.open(str(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for mask in sorted((davis / "masks" / video.stem).glob("*.png")):
            truth = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 127
            rgb = frames[int(mask.stem)]
            start = time.perf_counter()
            alpha = alpha_to_uint8(matter([rgb]))[0]
            middle = time.perf_counter()
            fine = edges(rgb, alpha)
            end = time.perf_counter()
            for name, a, seconds in (("guided", alpha, middle - start), ("fine edges", fine, end - middle)):
                figures[name].append((iou(a, truth), band_mae(a, truth), soft(a), seconds))
    count = len(figures["guided"])
    print(f"{'edges':<12} {'IoU':>6} {'bandMAE':>8} {'soft':>7} {'s/frame':>8}   ({count} frames)")
    for name, rows in figures.items():
        m = np.mean(rows, axis=0)
        extra = " (on top of the guided matte)" if name == "fine edges" else ""
        print(f"{name:<12} {m[0]:6.3f} {m[1]:8.4f} {m[2]:7.4f} {m[3]:8.3f}{extra}")


def sheet(path: Path, matter: PersonMatter, edges: EdgeMatter) -> None:
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        car = next(container.decode(video=0)).to_ndarray(format="rgb24")
    pictures = [cv2.resize(car, (704, 576), interpolation=cv2.INTER_CUBIC)]
    try:
        from skimage import data

        pictures.append(data.astronaut()[:300, 40:400])
    except ImportError:
        print("scikit-image not importable: the sheet has the carphone row only")
    rows = []
    for rgb in pictures:
        alpha = alpha_to_uint8(matter([rgb]))[0]
        tiles = []
        for a in (alpha, edges(rgb, alpha)):
            w = a[..., None] / 255.0
            tiles += [(rgb * w + GREEN * (1 - w)).astype(np.uint8), np.repeat(a[..., None], 3, axis=2)]
        row = np.concatenate(tiles, axis=1)
        rows.append(cv2.resize(row, (round(row.shape[1] * ROW_HEIGHT_PX / row.shape[0]), ROW_HEIGHT_PX)))
    width = max(r.shape[1] for r in rows)
    image = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(f"contact sheet: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--sheet", type=Path)
    args = parser.parse_args()
    device = pick_device("auto")
    matter, edges = PersonMatter(device), EdgeMatter(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    score(args.davis, matter, edges)
    if args.sheet:
        sheet(args.sheet, matter, edges)


if __name__ == "__main__":
    main()
