"""Contact sheets of every painting recipe on real frames, made by the real CLI, to look at.

    python bench/recipe_sheet.py -o out/sheets [--style 19] [--frames lucia:30,swing:20,...]

Writes into the output folder:
  recipes.png  one row per frame: the original, then style, portrait-style, style-background,
               stencil, double-exposure (the second picture: a Big Buck Bunny frame), cartoon;
  edges.png    close-ups of portrait-style's cut edge, each pair: the styled people pasted
               with the matte as is (styled * alpha + original * (1 - alpha)) beside frameq's
               composite, whose edge band takes the people's colours from inside them;
  styles.png   `frameq styles preview` of every style on the first frame.
Each recipe runs once over a folder holding all the frames (`frameq run DIR -o DIR`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from frameq.samples import sample_clip

DAVIS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis-dev"
RECIPES = ("style", "portrait-style", "style-background", "stencil", "double-exposure", "cartoon")
TILE_H = 240
LABEL_PX = 22


def frameq(*args: str, home: Path) -> None:
    env = {**os.environ, "FRAMEQ_HOME": str(home)}
    env.pop("FRAMEQ_DATABASE_URL", None)
    env.pop("FRAMEQ_STORE_URL", None)
    env.pop("FRAMEQ_BROKER_URL", None)
    command = [str(Path(sys.executable).parent / "frameq"), *args]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def second_picture(path: Path) -> Path:
    with av.open(str(sample_clip("bigbuckbunny"))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 60:
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(path)
                return path
    raise RuntimeError("clip too short")


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    scale = TILE_H / rgb.shape[0]
    rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), TILE_H), interpolation=cv2.INTER_AREA)
    strip = np.full((LABEL_PX, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, LABEL_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([rgb, strip])


def edge_crops(original: np.ndarray, styled: np.ndarray, alpha: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """The most-edged 96x96 window of the matte, as naive | frameq, each scaled up 3x."""
    band = ((alpha > 0.05) & (alpha < 0.95)).astype(np.float32)
    density = cv2.boxFilter(band, -1, (96, 96), normalize=False)
    y, x = np.unravel_index(np.argmax(density), density.shape)
    y0 = int(np.clip(y - 48, 0, alpha.shape[0] - 96))
    x0 = int(np.clip(x - 48, 0, alpha.shape[1] - 96))
    a = alpha[..., None]
    naive = (styled * a + original * (1 - a)).round().astype(np.uint8)
    pair = [c[y0 : y0 + 96, x0 : x0 + 96] for c in (naive, ours)]
    big = [cv2.resize(p, (288, 288), interpolation=cv2.INTER_NEAREST) for p in pair]
    return np.hstack([label(big[0], "matte as is"), label(big[1], "frameq")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--style", default="19")
    parser.add_argument(
        "--frames", default="lucia:28,swing:20,hockey:40,breakdance-flare:12", help="DAVIS seq:frame,..."
    )
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        inputs = tmp / "in"
        inputs.mkdir()
        names = []
        for item in args.frames.split(","):
            seq, index = item.split(":")
            name = f"{seq}-{int(index):05d}.png"
            Image.open(DAVIS / "images" / seq / f"{int(index):05d}.jpg").save(inputs / name)
            names.append(name)
        extra = {
            "double-exposure": ("--background", str(second_picture(tmp / "second.png"))),
            "stencil": (),
        }
        for recipe in RECIPES:
            style = (
                ("--style", args.style) if recipe in ("style", "portrait-style", "style-background") else ()
            )
            matte = ("--with-matte",) if recipe == "portrait-style" else ()
            out = tmp / recipe
            frameq(
                "run",
                str(inputs),
                "-o",
                str(out),
                "-r",
                recipe,
                *style,
                *matte,
                *extra.get(recipe, ()),
                home=tmp / "home",
            )
        rows, edges = [], []
        for name in names:
            original = read(inputs / name)
            tiles = [label(original, name.removesuffix(".png"))]
            tiles += [label(read(tmp / recipe / name), recipe) for recipe in RECIPES]
            rows.append(np.hstack(tiles))
            alpha = np.asarray(
                Image.open(tmp / "portrait-style" / name.replace(".png", ".matte.png")).convert("L")
            )
            styled = read(tmp / "style" / name).astype(np.float32)
            ours = read(tmp / "portrait-style" / name)
            edges.append(edge_crops(original.astype(np.float32), styled, alpha / 255.0, ours))
        Image.fromarray(np.vstack(rows)).save(args.output / "recipes.png")
        Image.fromarray(np.vstack(edges)).save(args.output / "edges.png")
        frameq(
            "styles",
            "preview",
            str(inputs / names[0]),
            "-o",
            str(args.output / "styles.png"),
            home=tmp / "home",
        )
    print(f"wrote {args.output}/recipes.png, edges.png, styles.png")


if __name__ == "__main__":
    main()
