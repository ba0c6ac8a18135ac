"""The fast neural style network of Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time
Style Transfer and Super-Resolution" (ECCV 2016), in the layout that pytorch/examples'
fast_neural_style trains and saves, so that users' checkpoints of it load by name.

Layers (reflection padding of kernel // 2 before every convolution, affine instance norm,
ReLU): a 9x9 convolution 3 -> 32, two 3x3 stride-2 convolutions 32 -> 64 -> 128, five residual
blocks of two 3x3 convolutions at 128 channels, two x2 nearest-neighbour upsamplings each
followed by a 3x3 convolution (128 -> 64 -> 32), and a final 9x9 convolution 32 -> 3 with no
activation. The network works on pixel values 0..255. Parameter names: conv1.conv2d.weight,
in1.weight, ..., res1.conv1.conv2d.weight, res1.in1.weight, ..., deconv1.conv2d.weight, in4,
deconv2, in5, deconv3.conv2d.bias.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Checkpoints saved by torch before 0.4 carry instance-norm running statistics the network
# never uses (instance norm normalises by each frame's own statistics); they are dropped.
_LEGACY_KEY = re.compile(r"in\d+\.running_(mean|var)$")


class CheckpointError(ValueError):
    """A file that is not a TransformerNet checkpoint: "NAME: PROBLEM", both kept apart too."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class _Conv(nn.Module):
    """Reflection padding of kernel // 2, then a convolution (named `conv2d`, as saved)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.conv2d = nn.Conv2d(channels_in, channels_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))


class _UpsampleConv(_Conv):
    """x2 nearest-neighbour upsampling, then the padded convolution: the resize-convolution
    that avoids transposed convolutions' checkerboard artefacts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Residual(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), at a fixed width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _Conv(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = _Conv(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """RGB [B, 3, H, W] in 0..1 -> the stylised frames, same shape, in 0..1.

    Any size: the two stride-2 layers need sides that are multiples of 4 to come back to the
    same size, so the frames are padded by reflection on the right and bottom to the next
    multiple of 4 (and to at least 8, which the 9x9 layers' padding needs) and the result is
    cropped back.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _Conv(3, 32, 9)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = _Conv(32, 64, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = _Conv(64, 128, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = _Residual(128)
        self.res2 = _Residual(128)
        self.res3 = _Residual(128)
        self.res4 = _Residual(128)
        self.res5 = _Residual(128)
        self.deconv1 = _UpsampleConv(128, 64, 3)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = _UpsampleConv(64, 32, 3)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = _Conv(32, 3, 9)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2:]
        x = _pad_to(frames, max(8, -(-h // 4) * 4), max(8, -(-w // 4) * 4)) * 255.0
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)
        return (y[..., :h, :w] / 255.0).clamp(0.0, 1.0)

    @classmethod
    def load(cls, path: Path, name: str | None = None) -> TransformerNet:
        """A network with the weights of a fast_neural_style checkpoint (a state dict saved with
        torch.save), on the CPU in float32. Refuses with one CheckpointError (a ValueError)
        naming the file (as `name`, else its path) and the problem: not a state dict, missing or
        unexpected keys, wrong shapes."""
        shown = str(path) if name is None else name
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # absent, truncated, garbage, or pickles more than tensors
            raise CheckpointError(shown, f"not a readable torch checkpoint ({_reason(exc)})") from exc
        if not isinstance(state, dict):
            raise CheckpointError(shown, f"not a state dict of tensors (it holds a {type(state).__name__})")
        odd = next(
            (k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None
        )
        if odd is not None:
            found = type(state[odd]).__name__
            raise CheckpointError(shown, f"not a state dict of tensors (its entry {odd!r} is a {found})")
        state = {k: v for k, v in state.items() if not _LEGACY_KEY.search(k)}
        net = cls()
        expected = net.state_dict()
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        wrong = sorted(
            f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
            for k, v in expected.items()
            if k in state and state[k].shape != v.shape
        )
        problems = []
        if missing:
            problems.append(f"missing keys {_listed(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_listed(unexpected)}")
        if wrong:
            problems.append(f"wrong shapes {_listed(wrong)}")
        if problems:
            raise CheckpointError(
                shown, f"not a fast_neural_style TransformerNet checkpoint: {'; '.join(problems)}"
            )
        net.load_state_dict({k: v.float() for k, v in state.items()})
        return net.eval()


def _pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """x padded on the right and bottom to height x width: by reflection where the frame is
    large enough for it (reflection needs fewer pad rows than the frame has), else by
    repeating the border."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    mode = "reflect" if height - h < h and width - w < w else "replicate"
    return F.pad(x, (0, width - w, 0, height - h), mode=mode)


def _reason(exc: Exception) -> str:
    """Why torch.load failed, in a line: its own messages run to paragraphs (the weights-only
    one advises loading the file unrestricted, which is not an option for users' files)."""
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "torch.load with weights_only refused it: it holds objects other than tensors, or no pickle"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    text = str(exc).strip()
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _listed(names: list[str], most: int = 4) -> str:
    """The first few of `names`, and how many more."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"
