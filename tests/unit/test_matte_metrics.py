"""The matting quality figures on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.matte_metrics import band, band_mae, boundary_f, flicker, iou, mae


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
