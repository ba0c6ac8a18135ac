"""Contact sheets of a method's mattes against the hand-made masks, to look at its errors.

    python bench/matte_sheet.py --davis ../shared/data/davis-dev --masks out/masks --method frameq

Writes MASKS/<method>-<seq>.png: every annotated frame of the sequence cropped around the
person, the frame on the left, on the right its errors: red where the matte covers what the
mask does not (false positive), blue where it misses what the mask covers (false negative).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

PAD_PX = 12
TILE_HEIGHT_PX = 360
RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR


def tile(image: np.ndarray, alpha: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The frame beside its error overlay, cropped to the person, TILE_HEIGHT_PX high."""
    pred = alpha >= 128
    overlay = image.copy()
    for wrong, colour in ((pred & ~truth, RED), (truth & ~pred, BLUE)):
        overlay[wrong] = (0.4 * overlay[wrong] + 0.6 * np.array(colour)).astype(np.uint8)
    ys, xs = np.nonzero(pred | truth)
    if len(ys) == 0:
        ys, xs = np.array([0, image.shape[0] - 1]), np.array([0, image.shape[1] - 1])
    y0, y1 = max(0, ys.min() - PAD_PX), min(image.shape[0], ys.max() + PAD_PX + 1)
    x0, x1 = max(0, xs.min() - PAD_PX), min(image.shape[1], xs.max() + PAD_PX + 1)
    pair = np.concatenate([image[y0:y1, x0:x1], overlay[y0:y1, x0:x1]], axis=1)
    scale = TILE_HEIGHT_PX / pair.shape[0]
    return cv2.resize(
        pair, (max(1, round(pair.shape[1] * scale)), TILE_HEIGHT_PX), interpolation=cv2.INTER_AREA
    )


def sheet(davis: Path, masks: Path, method: str, seq: str) -> np.ndarray:
    alphas = np.load(masks / method / f"{seq}.npz")["alpha"]
    tiles = []
    for mask_path in sorted((davis / "masks" / seq).glob("*.png")):
        truth = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
        image = cv2.imread(str(davis / "images" / seq / f"{mask_path.stem}.jpg"))
        tiles.append(tile(image, alphas[int(mask_path.stem)], truth))
    rows, per_row = [], 4
    width = max(t.shape[1] for t in tiles) * per_row
    for i in range(0, len(tiles), per_row):
        row = np.concatenate(tiles[i : i + per_row], axis=1)
        rows.append(
            cv2.copyMakeBorder(row, 0, 4, 0, width - row.shape[1], cv2.BORDER_CONSTANT, value=(255,) * 3)
        )
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--method", default="frameq")
    args = parser.parse_args()
    for seq in sorted(p.name for p in (args.davis / "masks").iterdir() if p.is_dir()):
        out = args.masks / f"{args.method}-{seq}.png"
        cv2.imwrite(str(out), sheet(args.davis, args.masks, args.method, seq))
        print(out)


if __name__ == "__main__":
    main()
