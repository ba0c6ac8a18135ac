"""The matting quality figures on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.matte_metrics import band, band_mae, boundary_f, edge_iou, flicker, iou, lost_frames, mae


def square(offset: int = 0, size: int = 100) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[20 + offset : 60 + offset, 20:60] = True
    return mask


def test_a_perfect_matte_scores_perfectly() -> None:
    truth = square()
    alpha = truth.astype(np.uint8) * 255
    assert (iou(alpha, truth), mae(alpha, truth), boundary_f(alpha, truth), band_mae(alpha, truth)) == (
        1.0,
        0.0,
        1.0,
        0.0,
    )


def test_a_shifted_square() -> None:
    truth, pred = square(), square(offset=10)
    # 40x40 squares overlapping in 30x40: IoU = 1200 / 2000
    assert iou(pred.astype(np.float32), truth) == pytest.approx(0.6)
    assert mae(pred.astype(np.float32), truth) == pytest.approx(800 / 10000)
    # 10 px off, beyond the tolerance (ceil(0.008 * 141) = 2 px): most of the edge misses
    assert boundary_f(pred.astype(np.float32), truth) < 0.6
    assert boundary_f(square(offset=1).astype(np.float32), truth) == 1.0  # within tolerance


def test_flicker_counts_only_where_the_truth_is_stable() -> None:
    truth = {0: square(), 4: square()}
    steady = np.repeat(square()[None].astype(np.float32), 5, axis=0)
    assert flicker(steady, truth) == 0.0
    blinking = steady.copy()
    blinking[1::2, 0:10, 0:10] = 1.0  # a background corner switching on and off
    changed = flicker(blinking, truth)
    assert changed == pytest.approx(100 / (100 * 100 - int(band(truth[0]).sum())), rel=0.05)


def test_edge_iou_forgives_edge_errors_and_nothing_else() -> None:
    truth = square()
    one_px_fat = np.zeros_like(truth)
    one_px_fat[19:61, 19:61] = True  # every edge one pixel out: an edge-level error only
    assert iou(one_px_fat.astype(np.float32), truth) < 0.91
    assert edge_iou(one_px_fat.astype(np.float32), truth) == 1.0
    # a missed thin stick (1 px wide) is within EDGE_PX of its own boundary: forgiven too
    with_stick = truth.copy()
    with_stick[60:95, 40] = True
    assert edge_iou(truth.astype(np.float32), with_stick) == 1.0
    # a blob far from the true edge is not
    blob = truth.copy()
    blob[70:90, 70:90] = True
    assert edge_iou(blob.astype(np.float32), truth) == pytest.approx(1600 / 2000)


def test_a_lost_frame_is_nobody_between_two_frames_with_somebody() -> None:
    alphas = np.zeros((6, 40, 40), np.uint8)
    alphas[[0, 2, 3, 5], 10:30, 10:30] = 255  # frames 1 and 4 lose the person
    alphas[1, 0:1, 0:1] = 255  # one pixel is not somebody (under PERSON_AREA of the frame)
    assert lost_frames(alphas) == 2
    assert lost_frames(alphas[:2]) == 0 and lost_frames(alphas[2:4]) == 0  # no frame between
