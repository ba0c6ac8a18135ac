import torch

from models.guided import apply_coefficients, guided_coefficients, self_guided_filter


def test_self_guided_filter_is_the_guided_filter_with_each_channel_as_its_guide() -> None:
    x = torch.rand(2, 3, 30, 40, generator=torch.Generator().manual_seed(4))
    out = self_guided_filter(x, 3, 0.004)
    for c in range(3):
        channel = x[:, c : c + 1]
        expected = apply_coefficients(channel, *guided_coefficients(channel, channel, 3, 0.004))
        assert torch.allclose(out[:, c : c + 1], expected, atol=1e-5)


def test_self_guided_filter_keeps_constants_and_strong_edges_and_flattens_noise() -> None:
    const = torch.full((1, 2, 20, 30), 0.3)
    assert torch.allclose(self_guided_filter(const, 2, 0.01), const, atol=1e-5)
    step = torch.zeros(1, 1, 40, 40)
    step[..., 20:] = 1.0
    noisy = step + 0.02 * torch.randn(step.shape, generator=torch.Generator().manual_seed(5))
    out = self_guided_filter(noisy, 3, 0.004)
    assert (out[..., 19] - out[..., 20]).abs().min() > 0.9  # the edge stays a step
    assert out[..., :16].std() < 0.5 * noisy[..., :16].std()


def test_applied_coefficients_upsampled_on_the_cpu_match_torch_bilinear_sampling() -> None:
    gen = torch.Generator().manual_seed(6)
    guide, a, b = (
        torch.rand(2, 1, 45, 80, generator=gen),
        torch.rand(2, 1, 9, 16, generator=gen),
        torch.rand(2, 1, 9, 16, generator=gen),
    )
    up = lambda x: torch.nn.functional.interpolate(x, size=(45, 80), mode="bilinear", align_corners=False)  # noqa: E731
    assert torch.allclose(apply_coefficients(guide, a, b), up(b) + up(a) * guide, atol=1e-5)
    colour = torch.rand(2, 3, 45, 80, generator=gen)  # one-channel coefficients broadcast
    assert torch.allclose(apply_coefficients(colour, a, b), up(b) + up(a) * colour, atol=1e-5)
