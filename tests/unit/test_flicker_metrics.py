"""The warping error on real frames moved by known amounts, where its right answer is known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.flicker_metrics import PairFlow, detail, input_flows, pair_error, warping_error

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"
STEP = (3, -2)  # the pan: content moves by (+3, -2) pixels a frame
SIZE = (200, 300)


def image() -> np.ndarray:
    bgr = cv2.imread(str(DAVIS / "images" / "swing" / "00020.jpg"))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pan(frames: int = 5) -> list[np.ndarray]:
    """A camera pan over a real frame: window t has its content moved by t * STEP."""
    img = image()
    (dx, dy), (h, w) = STEP, SIZE
    y0, x0 = 100, 200
    return [
        np.ascontiguousarray(img[y0 - t * dy : y0 - t * dy + h, x0 - t * dx : x0 - t * dx + w])
        for t in range(frames)
    ]


def exact_pairs(frames: int, margin: int = 4) -> list[PairFlow]:
    """The pan's true flow from t to t-1 (-STEP everywhere), valid away from the borders."""
    h, w = SIZE
    backward = np.empty((h, w, 2), np.float32)
    backward[...] = (-STEP[0], -STEP[1])
    valid = np.zeros((h, w), bool)
    valid[margin:-margin, margin:-margin] = True
    return [PairFlow(backward, valid) for _ in range(frames - 1)]


def noisy(frames: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        f.astype(np.float32) / 255 + rng.normal(0, sigma / 255, f.shape).astype(np.float32) for f in frames
    ]


def test_a_perfectly_warped_sequence_scores_zero() -> None:
    frames = pan()
    assert warping_error(frames, exact_pairs(len(frames))) == pytest.approx(0.0, abs=1e-4)
    # the frames themselves differ: without the flow the figure would be large
    still = [PairFlow(np.zeros((*SIZE, 2), np.float32), p.valid) for p in exact_pairs(len(frames))]
    assert warping_error(frames, still) > 5.0


def test_with_the_measured_flow_a_pan_scores_near_zero() -> None:
    frames = pan()
    pairs = input_flows(frames)
    assert all(p.valid.mean() > 0.8 for p in pairs)
    # what the pan brings in: the first columns and the last rows, not in the frame before
    assert not pairs[0].valid[:, :2].any() and not pairs[0].valid[-1:].any()
    assert warping_error(frames, pairs) < 1.0


def test_the_error_grows_with_per_frame_noise() -> None:
    frames, pairs = pan(), exact_pairs(5)
    errors = [warping_error(noisy(frames, sigma), pairs) for sigma in (0.0, 2.0, 5.0, 10.0)]
    assert errors == sorted(errors) and errors[0] < 1e-3
    # independent noise of sigma levels in each frame: E|N(0, 2 sigma^2)| = 2 sigma / sqrt(pi),
    # a little less for the warped frame's share, which bilinear sampling averages
    assert errors[-1] == pytest.approx(2 * 10.0 / np.sqrt(np.pi), rel=0.15)


def test_occluded_pixels_are_ignored() -> None:
    frames, pairs = pan(3), exact_pairs(3, margin=40)
    damaged = [f.copy() for f in frames]
    outside = ~pairs[0].valid
    damaged[2][outside] = 255 - damaged[2][outside]  # anything at all where the flow is not valid
    assert warping_error(damaged, pairs) == pytest.approx(warping_error(frames, pairs), abs=1e-6)
    damaged[2][60:80, 60:80] = 0  # the same inside is seen
    assert warping_error(damaged, pairs) > warping_error(frames, pairs) + 1.0


def test_a_cut_is_left_out() -> None:
    frames = pan(3)
    bgr = cv2.imread(str(DAVIS / "images" / "hockey" / "00040.jpg"))
    assert bgr is not None
    other = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:200, :300])
    video = [*frames, other, *frames]  # a shot of one frame between two cuts
    pairs = input_flows(video)
    for cut in (2, 3):
        assert not pairs[cut].valid.any() and pair_error(video[cut], video[cut + 1], pairs[cut]) is None
    assert all(p.valid.mean() > 0.8 for i, p in enumerate(pairs) if i not in (2, 3))
    assert warping_error(video, pairs) < 1.5


def test_detail_falls_with_blur() -> None:
    frames = pan(2)
    blurred = [cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames]
    assert detail(frames) > 2.0 * detail(blurred) > 0.0
