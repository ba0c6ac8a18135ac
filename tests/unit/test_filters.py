import numpy as np
import pytest
import torch

from models.filters import box_mean, gaussian_blur, gaussian_weights


def numpy_gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Reference: the same 1-D kernel along columns then rows, borders mirrored by np.pad."""
    w = np.array(gaussian_weights(sigma))
    r = len(w) // 2
    padded = np.pad(x, ((r, r), (0, 0)), mode="reflect")
    cols = sum(w[i] * padded[i : i + x.shape[0]] for i in range(len(w)))
    padded = np.pad(cols, ((0, 0), (r, r)), mode="reflect")
    return sum(w[i] * padded[:, i : i + x.shape[1]] for i in range(len(w)))


def numpy_box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Reference: the plain mean of each window's pixels inside the frame."""
    h, w = x.shape
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[i, j] = x[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].mean()
    return out


@pytest.mark.parametrize("shape", [(20, 30), (3, 40), (1, 1), (5, 2)])
def test_gaussian_blur_keeps_a_constant_image_at_any_size(shape: tuple[int, int]) -> None:
    # frames narrower than the kernel too: the kernel is cut to what reflection can mirror
    const = torch.full((2, 3, *shape), 0.3)
    assert torch.allclose(gaussian_blur(const, 1.6), const)
    assert torch.allclose(gaussian_blur(const, 5.4), const)


def test_gaussian_blur_reflects_at_the_border() -> None:
    x = torch.rand(1, 1, 24, 31, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = numpy_gaussian(x[0, 0].numpy(), 1.6)
    np.testing.assert_allclose(gaussian_blur(x, 1.6)[0, 0].numpy(), expected, atol=1e-12)


def test_gaussian_kernel_is_normalised_symmetric_and_cut_at_three_sigma() -> None:
    w = gaussian_weights(1.6)
    assert len(w) == 11  # ceil(4.8) on either side
    assert sum(w) == pytest.approx(1.0)
    assert w == w[::-1]
    assert len(gaussian_weights(5.0, n=4)) == 7  # a 4-pixel frame mirrors 3 pixels at most


@pytest.mark.parametrize("r", [1, 2, 7])
def test_box_mean_equals_the_mean_of_each_window_clipped_at_the_border(r: int) -> None:
    x = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = box_mean(x, r)
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[b, c].numpy(), numpy_box_mean(x[b, c].numpy(), r), atol=1e-12)


@pytest.mark.parametrize("r", [1, 3, 7])
def test_box_mean_of_float32_on_the_cpu_equals_the_exact_mean(r: int) -> None:
    x = torch.rand(2, 3, 19, 24, generator=torch.Generator().manual_seed(4))  # float32: OpenCV's path
    out = box_mean(x, r)
    assert out.dtype == torch.float32 and out.shape == x.shape
    for b in range(2):
        for c in range(3):
            exact = numpy_box_mean(x[b, c].double().numpy(), r)
            np.testing.assert_allclose(out[b, c].numpy(), exact, atol=1e-6)


def test_box_mean_keeps_constants_and_smooths_noise() -> None:
    const = torch.full((1, 2, 20, 30), 0.3)
    assert torch.allclose(box_mean(const, 3), const)
    noise = torch.rand(1, 1, 50, 50, generator=torch.Generator().manual_seed(1))
    assert box_mean(noise, 2).std() < 0.5 * noise.std()
