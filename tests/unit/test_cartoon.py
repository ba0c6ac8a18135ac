import numpy as np
import torch

from models.cartoon import CartoonParams, cartoon
from models.colour import luma


def scene(height: int = 120, width: int = 160, noise: float = 0.04) -> torch.Tensor:
    """Left half dark blue, right half light orange, with sensor-like noise: [1, 3, H, W]."""
    gen = torch.Generator().manual_seed(0)
    img = torch.empty(1, 3, height, width)
    img[..., : width // 2] = torch.tensor([0.15, 0.2, 0.5]).view(1, 3, 1, 1)
    img[..., width // 2 :] = torch.tensor([0.9, 0.7, 0.5]).view(1, 3, 1, 1)
    return (img + noise * torch.randn(img.shape, generator=gen)).clamp(0, 1)


def test_shape_and_range_are_kept() -> None:
    x = scene()
    y = cartoon(x.repeat(3, 1, 1, 1))
    assert y.shape == (3, 3, 120, 160)
    assert y.min() >= 0 and y.max() <= 1


def test_flat_regions_become_flatter() -> None:
    x = scene()
    y = cartoon(x)
    left_in, left_out = x[..., 10:-10, 10:60], y[..., 10:-10, 10:60]
    assert left_out.std(dim=(-2, -1)).mean() < 0.3 * left_in.std(dim=(-2, -1)).mean()  # per channel


def test_edges_get_a_dark_line() -> None:
    y = luma(cartoon(scene(noise=0.0)))[0, 0]  # [H, W]
    middle_row = y[60]
    near_edge = middle_row[72:88].min()
    assert near_edge < 0.6 * middle_row[100:150].mean()
    assert middle_row[100:150].std() < 0.01  # no lines inside flat areas


def test_luminance_is_quantised() -> None:
    gradient = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(1, 3, 64, 256).contiguous()
    params = CartoonParams(levels=4)
    y = luma(cartoon(gradient, params))[0, 0, 32, 16:-16]
    hist = np.sort(np.histogram(y.numpy(), bins=20, range=(0, 1))[0])
    assert hist[-4:].sum() > 0.75 * hist.sum()  # a ramp's values gather at 4 levels


def test_deterministic_and_batch_independent() -> None:
    x = scene()
    batch = torch.cat([x, x.flip(-1)])
    assert torch.equal(cartoon(batch), cartoon(batch))
    assert torch.allclose(cartoon(batch)[1:], cartoon(batch[1:]), atol=1e-6)
