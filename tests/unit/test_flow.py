"""Flow, warping and the reliability mask on real DAVIS frames moved by known amounts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.flow import DISFlow, dis_flow, flow_tensor, grey, reliable, resize_flow, warp, working_size

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def image(sequence: str = "hockey", frame: int = 40) -> np.ndarray:
    """A real DAVIS frame, RGB uint8 [480, 854, 3]."""
    bgr = cv2.imread(str(DAVIS / "images" / sequence / f"{frame:05d}.jpg"))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def crops(dx: int, dy: int, size: tuple[int, int] = (240, 360)) -> tuple[np.ndarray, np.ndarray]:
    """Two windows of one real frame, the second's content moved by (+dx, +dy): B(p) = A(p - d)."""
    img = image()
    h, w = size
    y0, x0 = 120, 250
    first = img[y0 : y0 + h, x0 : x0 + w]
    second = img[y0 - dy : y0 - dy + h, x0 - dx : x0 - dx + w]
    return np.ascontiguousarray(first), np.ascontiguousarray(second)


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def constant_flow(dx: float, dy: float, h: int, w: int) -> torch.Tensor:
    return torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w).contiguous()


def test_warp_by_a_known_integer_shift_recovers_the_image() -> None:
    first, second = crops(5, -3)
    h, w = first.shape[:2]
    # second(p) = first(p - d): sampling first at p + flow, flow = -d
    back = warp(as_tensor(first), constant_flow(-5, 3, h, w))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert torch.allclose(back[inner], as_tensor(second)[inner], atol=1e-5)
    # not trivially so: the unwarped frames differ
    assert (as_tensor(first) - as_tensor(second))[inner].abs().mean() > 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_warp_by_a_fractional_shift_matches_opencv(dtype: torch.dtype) -> None:
    first, _ = crops(0, 0)
    h, w = first.shape[:2]
    shift = np.array([[1, 0, 2.5], [0, 1, -1.25]], np.float32)  # moves the content by (+2.5, -1.25)
    moved = cv2.warpAffine(first.astype(np.float32) / 255, shift, (w, h), flags=cv2.INTER_LINEAR)
    back = warp(as_tensor(first).to(dtype), constant_flow(-2.5, 1.25, h, w))
    assert back.dtype == dtype
    expected = torch.from_numpy(moved).permute(2, 0, 1)[None]
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert (back.float() - expected)[inner].abs().max() < (2e-3 if dtype == torch.float16 else 1e-4)


def test_dis_flow_of_a_shifted_real_frame_is_the_shift() -> None:
    first, second = crops(4, -3)
    flow = dis_flow(first, second, short_side=None)
    inner = flow[16:-16, 16:-16]
    assert np.abs(np.median(inner.reshape(-1, 2), axis=0) - [4, -3]).max() < 0.1
    assert np.linalg.norm(inner - [4, -3], axis=2).mean() < 0.3


def test_flow_at_a_reduced_working_size_is_scaled_back_up() -> None:
    first, second = crops(6, 4, size=(300, 480))
    assert working_size(300, 480, 150) == (150, 240)
    assert working_size(300, 480, 360) == (300, 480)  # never enlarged
    assert grey(first, 150).shape == (150, 240)
    flow = dis_flow(first, second, short_side=150)
    assert flow.shape == (300, 480, 2)
    inner = flow[24:-24, 24:-24]
    assert np.abs(np.median(inner.reshape(-1, 2), axis=0) - [6, 4]).max() < 0.25
    # the same, scaled up by torch: as OpenCV's resize, to float rounding
    small = flow_tensor([DISFlow()(grey(first, 150), grey(second, 150))])
    big = resize_flow(small, (300, 480))
    assert big.shape == (1, 2, 300, 480)
    assert torch.allclose(big[0].permute(1, 2, 0), torch.from_numpy(flow), atol=0.05)


def moving_patch(step: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """A real background (lucia) with a real object (a 90x90 window of hockey) pasted at column
    120, then at column 120 + step: (frame A, frame B, (top, left in A, size))."""
    background = np.ascontiguousarray(image("lucia", 0)[100:340, 100:500])
    patch = image("hockey", 40)[150:240, 300:390]
    top, left, size = 70, 120, 90
    a, b = background.copy(), background.copy()
    a[top : top + size, left : left + size] = patch
    b[top : top + size, left + step : left + step + size] = patch
    return a, b, (top, left, size)


def test_reliable_flags_the_disoccluded_strip() -> None:
    step = 12
    a, b, (top, left, size) = moving_patch(step)
    dis = DISFlow()
    ga, gb = grey(a, None), grey(b, None)
    backward = flow_tensor([dis(gb, ga)])  # B -> A
    forward = flow_tensor([dis(ga, gb)])
    mask = reliable(forward, backward)[0, 0].numpy()
    assert mask.shape == ga.shape and set(np.unique(mask)) <= {0.0, 1.0}
    # in B, the columns the object has just left show background that A hid
    strip = mask[top + 10 : top + size - 10, left + 2 : left + step - 2]
    assert strip.mean() < 0.2
    # the background far from the object, and the object's own inside, are kept
    assert mask[10:50, 10:-10].mean() > 0.9
    assert mask[top + 20 : top + size - 20, left + step + 20 : left + step + size - 20].mean() > 0.9


def test_reliable_flags_content_entering_at_the_frame_edge() -> None:
    first, second = crops(8, 0)
    dis = DISFlow()
    g1, g2 = grey(first, None), grey(second, None)
    mask = reliable(flow_tensor([dis(g1, g2)]), flow_tensor([dis(g2, g1)]))[0, 0].numpy()
    assert mask[:, :6].mean() < 0.1  # these columns of the second frame are not in the first
    assert mask[:, 20:-20].mean() > 0.9
