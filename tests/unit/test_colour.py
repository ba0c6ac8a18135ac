import pytest
import torch

from models.colour import luma


@pytest.mark.parametrize(
    ("rgb", "expected"),
    [((1, 0, 0), 0.299), ((0, 1, 0), 0.587), ((0, 0, 1), 0.114), ((1, 1, 1), 1.0), ((0, 0, 0), 0.0)],
)
def test_luma_of_pure_colours_is_bt601(rgb: tuple[int, int, int], expected: float) -> None:
    frame = torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1).expand(2, 3, 4, 5)
    y = luma(frame)
    assert y.shape == (2, 1, 4, 5)
    assert torch.allclose(y, torch.full_like(y, expected), atol=1e-6)


def test_luma_is_the_weighted_sum_of_the_channels() -> None:
    frames = torch.rand(2, 3, 9, 16, generator=torch.Generator().manual_seed(6))
    weights = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    assert torch.allclose(luma(frames), (frames * weights).sum(1, keepdim=True), atol=1e-6)
