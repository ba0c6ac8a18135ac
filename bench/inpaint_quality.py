"""Object removal (models/inpaint.py) on real photos: how close each method's fill comes to
what the mask hid, and how long it takes.

    .venv/bin/python bench/inpaint_quality.py [--sheet out/inpaint-sheet.png] [--photos DIR]
    .venv/bin/python bench/inpaint_quality.py --study     # two-step: working size and band
    /tmp/cvc/bin/python bench/inpaint_quality.py          # adds FSR (cv2.xphoto, opencv-contrib)

Photos: the first frame of three DAVIS 2016 sequences (854x480, ../shared/data/davis-dev),
the scikit-image samples astronaut, coffee and chelsea when skimage can be imported, and any
image in --photos; each at its own size and upscaled (bicubic) to about --high-mp megapixels.
Upscaled photos hold less fine detail than real ones of that size, so their errors are lower.

Synthetic masks over each photo, sized to it: "blobs" (8 ellipses of 2-5 % of the short side),
"strokes" (5 scribbled lines 1.5 % of the short side thick) and "person" (an upright ellipse
60 % of the height, about 9 % of the pixels). The figure is the mean absolute error inside the
mask against the original (0..255, all channels), with, as yardsticks, the mask filled with
the mean colour of what it hid (which needs the truth) and with black. Seconds are wall time
per image on one OpenCV thread.

The contact sheet: per photo the original, the mask over it in red, and every method's
result, cropped around the mask; two DAVIS frames have their person removed (the hand-made
mask, dilated), one of them also upscaled to 1080p, where the truth is unknown, so only the
sheet shows them. Then the seconds each method takes to remove the person from the first
frame of every DAVIS sequence, at 480p and upscaled to 1080p, remove(method="auto") too.

FSR (cv2.xphoto.inpaint, FSR_FAST) runs only where cv2.xphoto exists (a throwaway venv with
opencv-contrib-python-headless; it must not go into .venv, where it clashes with
opencv-python-headless), and only on photos of at most --fsr-max-mp megapixels: it is about a
hundred times slower than Telea.
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

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.inpaint import (
    DILATE_PX,
    inpaint,
    inpaint_shrinking,
    inpaint_two_step,
    prepare_mask,
    remove,
)

DAVIS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "davis-dev"
DAVIS_SEQUENCES = ("lucia", "hockey", "swing")
SHEET_PEOPLE = ("lucia", "breakdance-flare")  # DAVIS frames whose person the sheet removes
SKIMAGE_SAMPLES = ("astronaut", "coffee", "chelsea")
MASKS = ("blobs", "strokes", "person")
TILE_W_PX, TILE_H_PX = 360, 270
RED = np.array([255, 0, 0], np.float32)

Fill = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fsr(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """cv2.xphoto's FSR_FAST; its mask marks the known pixels. Only the masked pixels are
    kept, as models/inpaint.py does (FSR moves some others by one level)."""
    dst = np.zeros_like(rgb)
    cv2.xphoto.inpaint(rgb, (~mask).astype(np.uint8), dst, cv2.xphoto.INPAINT_FSR_FAST)  # type: ignore[attr-defined]
    return np.where(mask[..., None], dst, rgb)


def methods(with_fsr: bool) -> dict[str, Fill]:
    table: dict[str, Fill] = {
        "telea": lambda rgb, mask: inpaint(rgb, mask, "telea"),
        "ns": lambda rgb, mask: inpaint(rgb, mask, "ns"),
        "two-step": inpaint_two_step,
        "shrinking": inpaint_shrinking,
    }
    if with_fsr:
        table["fsr"] = fsr
    return table


def yardsticks(rgb: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    mean = rgb[mask].mean(axis=0).round().astype(np.uint8)
    return {"mean": np.where(mask[..., None], mean, rgb), "black": np.where(mask[..., None], 0, rgb)}


def synthetic_mask(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A mask of `kind` sized to the image, the same shapes (relatively) at every size."""
    h, w = shape
    short = min(h, w)
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    if kind == "blobs":
        for _ in range(8):
            centre = (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h))
            axes = (int(rng.uniform(0.02, 0.05) * short), int(rng.uniform(0.02, 0.05) * short))
            cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif kind == "strokes":
        for _ in range(5):
            points = np.stack([rng.uniform(0.05, 0.95, 4) * w, rng.uniform(0.05, 0.95, 4) * h], axis=1)
            cv2.polylines(mask, [points.astype(np.int32)], False, 1, max(1, round(0.015 * short)))
    elif kind == "person":
        centre = (int(rng.uniform(0.3, 0.7) * w), h // 2)
        cv2.ellipse(mask, centre, (max(1, round(0.15 * w)), round(0.3 * h)), 0, 0, 360, 1, -1)
    else:
        raise ValueError(kind)
    return mask > 0


def read_person(seq: str) -> np.ndarray:
    """The hand-made mask of the sequence's first frame, uint8 0 or 255."""
    path = DAVIS / "masks" / seq / "00000.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise SystemExit(f"{path}: not an image")
    return mask


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: not an image")
    return np.ascontiguousarray(bgr[..., ::-1])


def photos(extra: Path | None) -> dict[str, np.ndarray]:
    found = {seq: read_rgb(DAVIS / "images" / seq / "00000.jpg") for seq in DAVIS_SEQUENCES}
    try:
        import skimage.data
    except ImportError:
        print("(skimage cannot be imported: its sample photos are left out)")
    else:
        found |= {name: getattr(skimage.data, name)() for name in SKIMAGE_SAMPLES}
    if extra is not None:
        for path in sorted(extra.iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                found[path.stem] = read_rgb(path)
    return found


def upscaled(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def mae_inside(result: np.ndarray, rgb: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(result[mask].astype(np.int16) - rgb[mask]).mean())


def timed(fill: Fill, rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = fill(rgb, mask)
    return result, time.perf_counter() - start


def quality_table(images: dict[str, np.ndarray], fills: dict[str, Fill], fsr_max_mp: float) -> None:
    names = [*fills, "mean", "black"]
    print(f"{'photo':<12} {'size':>10} {'mask':<8} {'mask %':>6}  " + " ".join(f"{n:>9}" for n in names))
    print(f"{'':<41}" + " ".join(f"{n:>9}" for n in fills) + "  (seconds)")
    errors: dict[tuple[str, str], list[float]] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for label, rgb in images.items():
        h, w = rgb.shape[:2]
        group = "native" if h * w < 1.5e6 else "high"
        for index, kind in enumerate(MASKS):
            mask = synthetic_mask(kind, (h, w), seed=index)
            row_err, row_s = [], []
            for name, fill in fills.items():
                if name == "fsr" and h * w > fsr_max_mp * 1e6:
                    row_err.append("-")
                    row_s.append("-")
                    continue
                result, took = timed(fill, rgb, mask)
                assert np.array_equal(result[~mask], rgb[~mask]), f"{name} changed pixels outside the mask"
                err = mae_inside(result, rgb, mask)
                errors.setdefault((name, group), []).append(err)
                seconds.setdefault((name, group), []).append(took)
                row_err.append(f"{err:.2f}")
                row_s.append(f"{took:.3f}")
            for name, result in yardsticks(rgb, mask).items():
                err = mae_inside(result, rgb, mask)
                errors.setdefault((name, group), []).append(err)
                row_err.append(f"{err:.2f}")
            share = 100 * mask.mean()
            print(
                f"{label:<12} {f'{w}x{h}':>10} {kind:<8} {share:>6.1f}  "
                + " ".join(f"{c:>9}" for c in row_err)
            )
            print(f"{'':<41}" + " ".join(f"{c:>9}" for c in row_s))
    for group in ("native", "high"):
        err_cells = [
            f"{statistics.mean(errors[n, group]):.2f}" if (n, group) in errors else "-" for n in names
        ]
        s_cells = [
            f"{statistics.mean(seconds[n, group]):.3f}" if (n, group) in seconds else "-" for n in fills
        ]
        print(f"{'mean ' + group:<41}" + " ".join(f"{c:>9}" for c in err_cells))
        print(f"{'':<41}" + " ".join(f"{c:>9}" for c in s_cells))


def study(images: dict[str, np.ndarray]) -> None:
    """Two-step against plain inpainting (both NS) on the upscaled photos, over working sizes
    and bands."""
    high = {k: v for k, v in images.items() if v.shape[0] * v.shape[1] >= 1.5e6}
    cases = [
        (rgb, synthetic_mask(kind, rgb.shape[:2], seed=i))
        for rgb in high.values()
        for i, kind in enumerate(MASKS)
    ]
    plain = [timed(inpaint, rgb, mask) for rgb, mask in cases]
    plain_err = statistics.mean(
        mae_inside(res, rgb, mask) for (res, _), (rgb, mask) in zip(plain, cases, strict=True)
    )
    plain_s = statistics.mean(s for _, s in plain)
    print(f"plain: error {plain_err:.2f}, {plain_s:.3f} s ({len(cases)} photo-masks of {len(high)} photos)")
    print(f"{'work side':>9} {'band':>5} {'error':>7} {'x plain':>8} {'seconds':>8} {'speed-up':>9}")
    for side in (480, 640, 960):
        for band in (4, 8, 16):
            fill = functools.partial(inpaint_two_step, work_long_side=side, band_px=band)
            runs = [timed(fill, rgb, mask) for rgb, mask in cases]
            err = statistics.mean(
                mae_inside(res, rgb, mask) for (res, _), (rgb, mask) in zip(runs, cases, strict=True)
            )
            took = statistics.mean(s for _, s in runs)
            print(
                f"{side:>9} {band:>5} {err:>7.2f} {err / plain_err:>7.2f}x"
                f" {took:>8.3f} {plain_s / took:>8.1f}x"
            )


def view(mask: np.ndarray) -> tuple[slice, slice]:
    """The part of the photo a sheet row shows: the mask's bounding box and a third of its
    size around it, at least TILE_W_PX x TILE_H_PX where the photo is that large."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    pad_y, pad_x = (ys.max() - ys.min()) // 3, (xs.max() - xs.min()) // 3
    y0, y1 = max(0, ys.min() - pad_y), min(h, ys.max() + pad_y + 1)
    x0, x1 = max(0, xs.min() - pad_x), min(w, xs.max() + pad_x + 1)
    # grow to the tile's aspect ratio, so the crop fills its tile
    if (x1 - x0) * TILE_H_PX < (y1 - y0) * TILE_W_PX:
        grow = (y1 - y0) * TILE_W_PX // TILE_H_PX - (x1 - x0)
        x0, x1 = max(0, x0 - grow // 2), min(w, x1 + grow - grow // 2)
    else:
        grow = (x1 - x0) * TILE_H_PX // TILE_W_PX - (y1 - y0)
        y0, y1 = max(0, y0 - grow // 2), min(h, y1 + grow - grow // 2)
    return slice(y0, y1), slice(x0, x1)


def tile(rgb: np.ndarray | None, label: str = "") -> np.ndarray:
    """`rgb` shrunk (or enlarged) to fit TILE_W_PX x TILE_H_PX, on white; blank for None."""
    out = np.full((TILE_H_PX, TILE_W_PX, 3), 255, np.uint8)
    if rgb is not None:
        h, w = rgb.shape[:2]
        scale = min(TILE_W_PX / w, TILE_H_PX / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST  # enlarged: pixels show
        out[: size[1], : size[0]] = cv2.resize(rgb, size, interpolation=interpolation)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
    return out


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32)
    out[mask] = 0.4 * out[mask] + 0.6 * RED
    return out.astype(np.uint8)


def sheet(
    rows: list[tuple[str, np.ndarray, np.ndarray]], fills: dict[str, Fill], fsr_max_mp: float
) -> np.ndarray:
    """One row per (label, photo, mask): the original, the mask over it, each method's
    result, all cropped to the mask's surroundings (fine detail shows)."""
    header = ["original", "mask", *fills]
    tiled = []
    for label, rgb, mask in rows:
        ys, xs = view(mask)
        h, w = mask.shape
        cells = [tile(rgb[ys, xs], f"{label} {w}x{h}"), tile(overlay(rgb, mask)[ys, xs])]
        for name, fill in fills.items():
            skip = name == "fsr" and h * w > fsr_max_mp * 1e6
            cells.append(tile(None if skip else fill(rgb, mask)[ys, xs], "too slow" if skip else ""))
        tiled.append(
            cv2.copyMakeBorder(
                np.concatenate(cells, axis=1), 0, 4, 0, 0, cv2.BORDER_CONSTANT, value=(255,) * 3
            )
        )
    labels = np.full((28, tiled[0].shape[1], 3), 255, np.uint8)
    for i, name in enumerate(header):
        cv2.putText(
            labels, name, (i * TILE_W_PX + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
        )
    return np.concatenate([labels, *tiled], axis=0)


def sheet_rows(
    images: dict[str, np.ndarray], person_dilate_px: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The DAVIS people removed (at 480p and one at 1080p), then synthetic masks."""
    rows = []
    for seq in SHEET_PEOPLE:
        rgb, truth = read_rgb(DAVIS / "images" / seq / "00000.jpg"), read_person(seq)
        rows.append((f"{seq}, person", rgb, prepare_mask(truth, person_dilate_px)))
    seq = SHEET_PEOPLE[0]
    rgb = cv2.resize(
        read_rgb(DAVIS / "images" / seq / "00000.jpg"), (1920, 1080), interpolation=cv2.INTER_CUBIC
    )
    truth = cv2.resize(read_person(seq), (1920, 1080), interpolation=cv2.INTER_LINEAR)
    rows.append((f"{seq} upscaled, person", rgb, prepare_mask(truth, round(person_dilate_px * 2.25), 128)))
    for label, kind in (("astronaut", "strokes"), ("coffee", "person"), (DAVIS_SEQUENCES[1], "blobs")):
        if label in images:
            rgb = images[label]
            rows.append(
                (f"{label}, {kind}", rgb, synthetic_mask(kind, rgb.shape[:2], seed=MASKS.index(kind)))
            )
    return rows


def person_timing(person_dilate_px: int) -> None:
    """Seconds to remove the real person (hand-made mask) from DAVIS frames, at 480p and
    upscaled to 1080p, with every method and with remove(method="auto")."""
    print(f"\nremoving the DAVIS person (mask dilated {person_dilate_px} px at 480p), seconds:")
    fills = {**methods(with_fsr=False), "auto": lambda rgb, mask: remove(rgb, mask, dilate_px=0)}
    print(f"{'sequence':<18} {'size':>10} {'mask %':>6} " + " ".join(f"{n:>9}" for n in fills))
    for seq in sorted(p.name for p in (DAVIS / "images").iterdir()):
        rgb = read_rgb(DAVIS / "images" / seq / "00000.jpg")
        truth = read_person(seq)
        for size in (None, (1920, 1080)):
            image, matte = rgb, truth
            if size is not None:
                image = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
                matte = cv2.resize(truth, size, interpolation=cv2.INTER_LINEAR)
            scale = image.shape[0] / rgb.shape[0]
            mask = prepare_mask(matte, round(person_dilate_px * scale), threshold=128)
            cells = [f"{timed(fill, image, mask)[1]:.3f}" for fill in fills.values()]
            h, w = image.shape[:2]
            print(
                f"{seq:<18} {f'{w}x{h}':>10} {100 * mask.mean():>6.1f} " + " ".join(f"{c:>9}" for c in cells)
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sheet", type=Path, default=Path("out/inpaint-sheet.png"))
    parser.add_argument("--photos", type=Path, help="a folder of more photos to measure on")
    parser.add_argument("--high-mp", type=float, default=3.0, help="megapixels of the upscaled copies")
    parser.add_argument("--fsr-max-mp", type=float, default=0.5)
    parser.add_argument("--person-dilate-px", type=int, default=2 * DILATE_PX)
    parser.add_argument("--study", action="store_true", help="only the two-step parameter study")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as a worker process gets
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    native = photos(args.photos)
    images = native | {f"{k}-hi": upscaled(v, args.high_mp) for k, v in native.items()}
    if args.study:
        study(images)
        return
    with_fsr = hasattr(cv2, "xphoto")
    print(f"OpenCV {cv2.__version__}, one thread; FSR {'included' if with_fsr else 'not available'}")
    fills = methods(with_fsr)
    quality_table(images, fills, args.fsr_max_mp)
    person_timing(args.person_dilate_px)
    args.sheet.parent.mkdir(parents=True, exist_ok=True)
    picture = sheet(sheet_rows(native, args.person_dilate_px), fills, args.fsr_max_mp)
    cv2.imwrite(str(args.sheet), picture[..., ::-1])
    print(f"\n{args.sheet}")


if __name__ == "__main__":
    main()
