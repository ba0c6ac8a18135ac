"""Object removal: fill what a mask covers from the pixels around it, with OpenCV inpainting.

Images are RGB uint8 [H, W, 3]; masks are [H, W], bool or uint8, nonzero = remove. Every
function returns a new image in which only the masked pixels differ from the input: whatever
a method computes, only masked pixels are pasted into a copy of the original, so everything
outside the mask is unchanged bit for bit.

Methods:
- `inpaint`: OpenCV's Navier-Stokes (Bertalmio et al., CVPR 2001; the default) or Telea
  (A. Telea, "An Image Inpainting Technique Based on the Fast Marching Method", JGT 2004) at
  the image's own size. Both fill the mask from its border inwards in one fast-marching pass;
  their cost grows with the masked pixel count.
- `inpaint_two_step`: a large image is inpainted at a reduced working size, the fill upscaled,
  then only a band along the mask's border (and so every mask part thinner than the band) is
  inpainted again at full resolution, from the original outside and the upscaled fill inside.
  Far fewer pixels are filled at full size, and the border, where a fill's seams show, keeps
  the full resolution.
- `inpaint_shrinking`: the mask is eroded step by step; each ring peeled off is filled with a
  Gaussian-weighted mean of the pixels known so far (the original and the rings filled
  before), from the border inwards.
- `remove`: what the recipe calls: `prepare_mask`, then a method picked by size.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

Method = Literal["telea", "ns"]
RemoveMethod = Literal["auto", "telea", "ns", "two-step", "shrinking"]

# Navier-Stokes fills closer to the truth than Telea at the same speed (bench/inpaint_quality.py,
# mean error inside synthetic masks over 6 photos: 19.9 against 20.6 at their own size, 19.9
# against 21.9 at 2-3 MP), most of all in person-sized holes (33.8 against 39.8 at 2-3 MP).
METHOD: Method = "ns"
RADIUS = 3  # px: the neighbourhood each filled pixel is computed from (OpenCV's inpaintRadius)
DILATE_PX = 3  # px: how far the mask grows so the object's edge and halo go with it
# A soft person matte (uint8 alpha) is removed from this alpha up: the faint halo of hair
# and motion blur too (dilation takes the rest), not the matte's noise in the background.
MATTE_THRESHOLD = 32
# inpaint_two_step fills the whole mask with the image's long side at WORK_LONG_SIDE, then the
# BAND_PX band inside the mask's border again at full size. bench/inpaint_quality.py --study
# at 2-3 MP: 640 and 8 px match plain NS's error (1.00x) at 1.9x its speed; a 4 px band is
# faster (2.5x) and a little further off (1.01x), 16 px a little closer (0.98x) and slower
# (1.4x); working long sides of 480 and 960 did no better.
WORK_LONG_SIDE = 640
BAND_PX = 8
# remove(method="auto") takes inpaint_two_step above this long side, plain NS up to it
# (bench/inpaint_quality.py, one core, a busy machine). At 854x480 two-step gains nothing: the
# same error (19.8 against 19.9) and time (removing the DAVIS people: 0.02-0.09 s either way).
# At 2-3 MP it is as close to the truth (19.9 against 19.9 over 18 photo-masks) and 1.6 times
# as fast on average (0.32 against 0.50 s): 3-6 times with person-sized masks (0.09-0.19
# against 0.40-0.84 s), whose inside it fills at the working size, about the same with thin
# ones, which it fills at full size like plain; the DAVIS people at 1080p: 0.09-0.18 against
# 0.18-0.33 s.
AUTO_TWO_STEP_LONG_SIDE = 960
STEP_PX = 4  # px: the width of each ring inpaint_shrinking fills
# What a pixel becomes when nothing in the image is known (the mask covers everything).
FULL_MASK_FILL = 128

# A point given to remove what is under it may land this far off the thing (in pixels).
REACH_PX = 8
GAP_PX = 24  # parts of a mask this close belong to one thing (one person)

_FLAGS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def prepare_mask(mask: np.ndarray, dilate_px: int = DILATE_PX, threshold: int = 1) -> np.ndarray:
    """The pixels to remove, bool [H, W]: a uint8 mask (a soft matte too) taken from
    `threshold` up (a bool mask as it is), grown by a disc of radius `dilate_px`."""
    _check_mask(mask)
    if not 1 <= threshold <= 255:
        raise ValueError(f"threshold must be 1..255, got {threshold}")
    if dilate_px < 0:
        raise ValueError(f"dilate_px must be >= 0, got {dilate_px}")
    binary = mask if mask.dtype == np.bool_ else mask >= threshold
    if dilate_px == 0 or not binary.any():
        return binary.copy()
    return cv2.dilate(_u8(binary), _disc(dilate_px)).view(np.bool_)


def region_at(mask: np.ndarray, x: int, y: int, reach_px: int = REACH_PX) -> np.ndarray | None:
    """The part of `mask` (bool [H, W]) at pixel (x, y), or at the nearest of its pixels within
    `reach_px` (a click lands a little off a thin limb); None when there is none. Parts closer
    than GAP_PX are one: a matte often parts a person at the neck or a thin arm."""
    height, width = mask.shape
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"point {x},{y} is outside the {width}x{height} picture")
    joined = cv2.dilate(_u8(mask), _disc(GAP_PX // 2)) if mask.any() else _u8(mask)
    count, labels = cv2.connectedComponents(joined, connectivity=8)
    if count <= 1:
        return None
    y0, x0 = max(0, y - reach_px), max(0, x - reach_px)
    near = np.where(
        mask[y0 : y + reach_px + 1, x0 : x + reach_px + 1],
        labels[y0 : y + reach_px + 1, x0 : x + reach_px + 1],
        0,
    )
    ys, xs = np.nonzero(near)
    if len(ys) == 0:
        return None
    k = int(np.argmin((ys + y0 - y) ** 2 + (xs + x0 - x) ** 2))
    return (labels == near[ys[k], xs[k]]) & mask  # type: ignore[no-any-return]


def inpaint(rgb: np.ndarray, mask: np.ndarray, method: Method = METHOD, radius: int = RADIUS) -> np.ndarray:
    """OpenCV inpainting of the masked pixels at the image's own size."""
    removed = _checked(rgb, mask)
    if method not in _FLAGS:
        raise ValueError(f"unknown inpainting method {method!r}: telea or ns")
    special = _trivial(rgb, removed)
    if special is not None:
        return special
    # Only pixels within `radius` of the mask take part, so a crop around it gives the same
    # fill and spares OpenCV's passes over the whole frame (26 ms at 1080p).
    ys, xs = _bounds(removed, margin=2 * radius + 2)
    crop = np.ascontiguousarray(rgb[ys, xs])
    filled = cv2.inpaint(crop, _u8(removed[ys, xs]), radius, _FLAGS[method])
    return _paste(rgb, removed, filled, ys, xs)


def inpaint_two_step(
    rgb: np.ndarray,
    mask: np.ndarray,
    work_long_side: int = WORK_LONG_SIDE,
    *,
    method: Method = METHOD,
    radius: int = RADIUS,
    band_px: int = BAND_PX,
) -> np.ndarray:
    """Inpaint at a working size whose long side is `work_long_side`, upscale the fill, then
    inpaint again at full resolution the `band_px` wide band inside the mask's border (every
    part of the mask thinner than twice the band lies wholly in it, so small parts are filled
    at full resolution only). An image no larger than the working size is inpainted as is."""
    removed = _checked(rgb, mask)
    special = _trivial(rgb, removed)
    if special is not None:
        return special
    h, w = removed.shape
    scale = work_long_side / max(h, w)
    core = _erode(removed, band_px)  # what the upscaled fill keeps
    if scale >= 1.0 or not core.any():
        return inpaint(rgb, removed, method, radius)
    # The work is done on a crop around the mask holding every pixel either pass reads: the
    # working pass reads `radius` working pixels around its mask, 1 / scale times as many here.
    ys, xs = _bounds(removed, margin=int(np.ceil((2 * radius + 2) / scale)) + 2)
    crop, crop_removed = rgb[ys, xs], removed[ys, xs]
    ch, cw = crop_removed.shape
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    # Every working pixel that any removed pixel falls in is removed too, so no colour of the
    # object is averaged into the known pixels the fill is made from.
    small_removed = cv2.resize(crop_removed.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
    small_filled = inpaint(small, small_removed, method, radius)
    coarse = cv2.resize(small_filled, (cw, ch), interpolation=cv2.INTER_LINEAR)
    region = crop.copy()
    np.copyto(region, coarse, where=crop_removed[..., None])
    band = crop_removed & ~core[ys, xs]
    return _paste(rgb, removed, inpaint(region, band, method, radius), ys, xs)


def inpaint_shrinking(rgb: np.ndarray, mask: np.ndarray, step_px: int = STEP_PX) -> np.ndarray:
    """Fill the mask ring by ring from its border inwards: each ring, `step_px` wide, takes the
    Gaussian-weighted mean (sigma `step_px`) of the pixels known so far around it."""
    removed = _checked(rgb, mask)
    if step_px < 1:
        raise ValueError(f"step_px must be >= 1, got {step_px}")
    special = _trivial(rgb, removed)
    if special is not None:
        return special
    reach = 3 * step_px  # the Gaussian's kernel radius: 3 sigma
    ksize = (2 * reach + 1, 2 * reach + 1)
    ys, xs = _bounds(removed, margin=reach + 1)
    out = rgb[ys, xs].astype(np.float32)
    remaining = np.ascontiguousarray(removed[ys, xs])
    while remaining.any():
        inner = _erode(remaining, step_px)
        if np.array_equal(inner, remaining):
            # Erosion cannot shrink a mask that fills its crop (the image's edges count as
            # masked); what is left is taken from the nearest known pixels in one go.
            inner = np.zeros_like(inner)
        # Blurring only within reach of what remains keeps each step's cost to the rest.
        ry, rx = _bounds(remaining, margin=reach + 1)
        known = (~remaining[ry, rx]).astype(np.float32)
        weight = cv2.GaussianBlur(known, ksize, step_px)
        total = cv2.GaussianBlur(out[ry, rx] * known[..., None], ksize, step_px)
        ring = remaining[ry, rx] & ~inner[ry, rx]
        out[ry, rx][ring] = (total / np.maximum(weight, 1e-6)[..., None])[ring]
        remaining = inner
    filled = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return _paste(rgb, removed, filled, ys, xs)


def remove(
    rgb: np.ndarray,
    mask: np.ndarray,
    method: RemoveMethod = "auto",
    *,
    dilate_px: int = DILATE_PX,
    threshold: int = 1,
) -> np.ndarray:
    """Remove what `mask` covers and fill it: only the pixels of
    prepare_mask(mask, dilate_px, threshold) change (for a person matte pass
    threshold=MATTE_THRESHOLD). method "auto" picks by size, see AUTO_TWO_STEP_LONG_SIDE."""
    _check_image(rgb)
    removed = prepare_mask(mask, dilate_px, threshold)
    _check_sizes(rgb, removed)
    if method == "auto":
        method = "two-step" if max(removed.shape) > AUTO_TWO_STEP_LONG_SIDE else METHOD
    if method == "telea" or method == "ns":
        return inpaint(rgb, removed, method)
    if method == "two-step":
        return inpaint_two_step(rgb, removed)
    if method == "shrinking":
        return inpaint_shrinking(rgb, removed)
    raise ValueError(f"unknown removal method {method!r}: auto, telea, ns, two-step or shrinking")


def _check_image(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape, dtype = getattr(rgb, "shape", None), getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"the image must be RGB uint8 [H, W, 3], got {dtype} {shape}")


def _check_mask(mask: np.ndarray) -> None:
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.bool_, np.uint8) or mask.ndim != 2:
        shape, dtype = getattr(mask, "shape", None), getattr(mask, "dtype", type(mask).__name__)
        raise ValueError(f"the mask must be bool or uint8 [H, W], got {dtype} {shape}")


def _check_sizes(rgb: np.ndarray, mask: np.ndarray) -> None:
    if mask.shape != rgb.shape[:2]:
        (mh, mw), (h, w) = mask.shape, rgb.shape[:2]
        raise ValueError(f"the mask is {mw}x{mh} but the image is {w}x{h}")


def _checked(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask as bool after checking both arrays and that their sizes agree."""
    _check_image(rgb)
    _check_mask(mask)
    _check_sizes(rgb, mask)
    return mask if mask.dtype == np.bool_ else mask != 0


def _trivial(rgb: np.ndarray, removed: np.ndarray) -> np.ndarray | None:
    """The result where there is nothing to compute: an empty mask leaves the image as it is;
    a full one leaves nothing to fill from (OpenCV would return the image unchanged)."""
    if not removed.any():
        return rgb.copy()
    if removed.all():
        return np.full_like(rgb, FULL_MASK_FILL)
    return None


def _paste(rgb: np.ndarray, removed: np.ndarray, filled: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
    """A copy of `rgb` with its removed pixels taken from `filled` (the [ys, xs] crop)."""
    out = rgb.copy()
    np.copyto(out[ys, xs], filled, where=removed[ys, xs, None])
    return out


def _bounds(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The rows and columns of the mask's bounding box grown by `margin`, within the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)),
    )


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """The mask shrunk by a disc of `radius`; outside the image counts as masked, so a mask
    that touches the edge is not eaten from there (nothing is known beyond it)."""
    eroded = cv2.erode(_u8(mask), _disc(radius), borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return eroded.view(np.bool_)


def _u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as the contiguous 0/1 uint8 image OpenCV takes (a view where it can be)."""
    return np.ascontiguousarray(mask).view(np.uint8)
