"""True alpha along people's edges: a portrait-matting network on the crop around them.

The pose path's matte (models/person.py) is a refined probability on a 256-pixel grid: right
inside and outside a person, but its edge is a ramp a few pixels wide whatever is there, so
hair and motion blur come out as a hard outline. MODNet (Ke et al., "MODNet: Real-Time
Trimap-Free Portrait Matting via Objective Decomposition", AAAI 2022; weights Apache-2.0) is
trained to predict opacity, hair strands included. It runs here on the box around the people,
scaled so its short side is at most MATTE_SHORT_SIDE (sides multiples of 32, as the network
needs), and its alpha is taken only in a band around the pose path's edge: inside and outside
the band the pose path is surer (the portrait network was not trained on full bodies and
can drop a limb or keep a chair), and the band is feathered so the two meet without a seam.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.onnx import OnnxModule
from models.weights import model_path

MATTE_SHORT_SIDE = 512  # MODNet's reference size
MULTIPLE = 32
BOX_MARGIN = 0.1  # of the people's box, on every side: hair and hands reach past the matte
# The band's half-width, as a fraction of the box's long side (at least BAND_MIN_PX): wide
# enough for loose hair, narrow enough that the portrait network decides only the edge.
BAND_FRACTION = 0.02
BAND_MIN_PX = 3
# Its matte is used only where it agrees with the pose path's on the whole box (IoU at least
# this): on small, fast or far-off people it can miss the person altogether.
AGREEMENT = 0.85


class EdgeMatter:
    """frames: RGB uint8 [H, W, 3]; alphas: uint8 [H, W] from the pose path -> uint8 alphas."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.device, self.dtype = device, dtype
        self.net = OnnxModule.load(model_path("modnet.onnx")).eval().to(device, dtype)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        box = _box(alpha >= 128, BOX_MARGIN)
        if box is None:
            return alpha
        y0, y1, x0, x1 = box
        crop = rgb[y0:y1, x0:x1]
        fine = self.matte(crop)
        ours = alpha[y0:y1, x0:x1] >= 128
        theirs = fine >= 127.5
        if (ours & theirs).sum() < AGREEMENT * (ours | theirs).sum():
            return alpha  # the portrait network has missed or mistaken the person: no edges from it
        band = _band(alpha[y0:y1, x0:x1], max(BAND_MIN_PX, round(BAND_FRACTION * max(y1 - y0, x1 - x0))))
        out = alpha.copy()
        mixed = band * fine + (1.0 - band) * alpha[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        return out

    def matte(self, crop: np.ndarray) -> np.ndarray:
        """MODNet's alpha of an RGB uint8 crop, float 0..255 at the crop's size."""
        h, w = crop.shape[:2]
        scale = min(1.0, MATTE_SHORT_SIDE / min(h, w))
        nh = max(MULTIPLE, round(h * scale / MULTIPLE) * MULTIPLE)
        nw = max(MULTIPLE, round(w * scale / MULTIPLE) * MULTIPLE)
        small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(small).to(self.device).permute(2, 0, 1)[None].to(self.dtype)
        (matte,) = self.net((x - 127.5) / 127.5)
        full = F.interpolate(matte.float(), size=(h, w), mode="bilinear", align_corners=False)
        return full[0, 0].clamp(0, 1).mul(255.0).cpu().numpy()  # type: ignore[no-any-return]


def _box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) around the mask's pixels, grown by `margin` of its size; None if empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    h, w = mask.shape
    dy, dx = margin * (ys.max() - ys.min() + 1), margin * (xs.max() - xs.min() + 1)
    return (
        max(0, int(ys.min() - dy)),
        min(h, int(ys.max() + dy) + 1),
        max(0, int(xs.min() - dx)),
        min(w, int(xs.max() + dx) + 1),
    )


def _band(alpha: np.ndarray, half_px: int) -> np.ndarray:
    """Weight 0..1 of the edge band: 1 within `half_px` of the 0.5 contour, fading to 0 over
    as much again (float32, alpha's size)."""
    inside = (alpha >= 128).astype(np.uint8)
    edge = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    far = cv2.distanceTransform(1 - edge, cv2.DIST_L2, 3)
    return np.clip((2.0 * half_px - far) / half_px, 0.0, 1.0).astype(np.float32)
