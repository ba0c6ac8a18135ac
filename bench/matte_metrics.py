"""Quality figures for person mattes against hand-made ground-truth masks.

alpha: float in 0..1 (or uint8 0..255), truth: bool, both [H, W]. Definitions:
  IoU         of alpha >= 0.5 with the truth
  MAE         mean |alpha - truth|
  boundary F  the contour accuracy of DAVIS 2016 (Perazzi et al., CVPR 2016): boundary
              pixels of both masks matched within 0.008 x the image diagonal; F = 2PR/(P+R)
  band MAE    MAE within that same distance of the true boundary: where refinement matters
  edge IoU    IoU with every error in a 4-pixel band along the true boundary forgiven (the
              pixels on either side of it and their neighbours): the IoU a matte would reach
              if its edges were exact to 2 px; parts up to 4 px thin (a stick, a chain, a gap
              between legs) fall wholly inside the band. IoU against it says how much of the
              loss is edge-level
  flicker     mean |alpha(t+1) - alpha(t)| over consecutive frames, counted only where the
              truth does not change: the pixel has the same label in the annotated frames
              on either side and lies beyond the boundary tolerance of both
  lost        frames with nobody matted (under PERSON_AREA of the frame at alpha >= 0.5)
              whose neighbours on both sides have somebody: the person dropped for a frame
  missed      annotated frames whose truth has a person and whose IoU is under MISSED_IOU
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008  # of the image diagonal, as DAVIS
PERSON_AREA = 0.001
MISSED_IOU = 0.1
EDGE_PX = 1.5  # from the pixels either side of the true boundary: they and their 8 neighbours


def as_float(alpha: np.ndarray) -> np.ndarray:
    return alpha.astype(np.float32) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float32)


def tolerance_px(shape: tuple[int, ...]) -> int:
    return max(1, int(np.ceil(BOUNDARY_TOLERANCE * np.hypot(shape[0], shape[1]))))


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    pred = as_float(alpha) >= 0.5
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def edge_iou(alpha: np.ndarray, truth: np.ndarray, edge_px: float = EDGE_PX) -> float:
    pred = as_float(alpha) >= 0.5
    edge = boundary(truth) | boundary(~truth)  # the pixels on either side of the true boundary
    # distance of every pixel to the nearest of those
    distance = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    near = distance <= edge_px
    union = np.logical_or(pred, truth).sum() - (pred & ~truth & near).sum()
    inter = np.logical_and(pred, truth).sum() + (truth & ~pred & near).sum()
    return 1.0 if union == 0 else float(inter / union)


def mae(alpha: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(as_float(alpha) - truth).mean())


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask that touch a pixel outside it (8-neighbourhood)."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)).astype(bool)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def boundary_f(alpha: np.ndarray, truth: np.ndarray) -> float:
    pred_b, true_b = boundary(as_float(alpha) >= 0.5), boundary(truth)
    if not pred_b.any() and not true_b.any():
        return 1.0
    if not pred_b.any() or not true_b.any():
        return 0.0
    disk = _disk(tolerance_px(truth.shape))
    near_true = cv2.dilate(true_b.astype(np.uint8), disk).astype(bool)
    near_pred = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
    precision = (pred_b & near_true).sum() / pred_b.sum()
    recall = (true_b & near_pred).sum() / true_b.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def band(truth: np.ndarray) -> np.ndarray:
    """Pixels within the boundary tolerance of the true boundary."""
    return cv2.dilate(boundary(truth).astype(np.uint8), _disk(tolerance_px(truth.shape))).astype(bool)


def band_mae(alpha: np.ndarray, truth: np.ndarray) -> float:
    near = band(truth)
    return float(np.abs(as_float(alpha) - truth)[near].mean()) if near.any() else 0.0


def flicker(alphas: np.ndarray, truths: dict[int, np.ndarray]) -> float:
    """alphas [T, H, W] of every frame; truths: frame index -> truth of the annotated ones."""
    annotated = sorted(truths)
    changes, count = 0.0, 0
    for k0, k1 in itertools.pairwise(annotated):
        a, b = truths[k0], truths[k1]
        stable = (a == b) & ~band(a) & ~band(b)
        if not stable.any():
            continue
        for t in range(k0, k1):
            diff = np.abs(as_float(alphas[t + 1]) - as_float(alphas[t]))[stable]
            changes += float(diff.sum())
            count += diff.size
    return changes / count if count else 0.0


def lost_frames(alphas: np.ndarray) -> int:
    """Frames of alphas [T, H, W] with nobody matted between two frames with somebody."""
    somebody = (as_float(alphas) >= 0.5).mean(axis=(1, 2)) >= PERSON_AREA
    return int((~somebody[1:-1] & somebody[:-2] & somebody[2:]).sum())
