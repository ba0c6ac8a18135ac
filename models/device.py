"""Device choice: CUDA (with fp16) when present, CPU (fp32) otherwise."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} requested but CUDA is not available")
    return device


def available_devices() -> list[str]:
    """The devices this machine can run models on, as `--device` names them."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{index}" for index in range(count))]


def compute_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def to_tensor(frames: list, device: torch.device) -> torch.Tensor:
    """uint8 arrays [H, W, C] (or [H, W]: one channel, a matte) -> float tensor [B, C, H, W] in
    0..1 on `device`."""
    batch = torch.stack([torch.from_numpy(f) for f in frames]).to(device, non_blocking=True)
    if batch.ndim == 3:  # [B, H, W] grey
        batch = batch.unsqueeze(-1)
    # [B, H, W, 3] -> [B, 3, H, W], made contiguous: the filters are much slower on strided input
    return (
        batch.permute(0, 3, 1, 2).to(compute_dtype(device), memory_format=torch.contiguous_format).div_(255.0)
    )


def to_uint8(batch: torch.Tensor) -> list:
    """Float tensor [B, 3, H, W] in 0..1 -> RGB uint8 arrays [H, W, 3] on the CPU."""
    out = batch.clamp(0, 1).mul(255.0).round_().to(torch.uint8)  # [B, 3, H, W]
    return list(out.permute(0, 2, 3, 1).contiguous().cpu().numpy())
