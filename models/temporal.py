"""Temporal stabilisation of per-frame styled video: each output is pulled towards the previous
output, carried along the optical flow of the input frames, where that flow can be trusted.

Styling every frame on its own flickers: the network's textures do not move with the scene and
its colours jump with small changes of the input. Following Ruder, Dosovitskiy, Brox, "Artistic
style transfer for videos" (GCPR 2016), the previous output is warped onto the current frame by
the flow of the inputs, and blended in only where that flow is reliable (forward-backward
consistent, off motion boundaries, inside the frame):

    out_t = styled_t + c_t * strength * (warp(out_{t-1}, flow_t->t-1) - styled_t)

c_t in 0..1 is the reliability mask, eroded and blurred so that a blended region meets an
unblended one without a seam, times a photometric confidence: how well the warped previous
input matches the current input. The latter catches what the flow tests miss (a consistent
but wrong match on a fast limb), which would otherwise drag an old texture along: smearing.
A pixel's history fades as strength^k over k frames, so nothing is carried for long and a
wrongly carried colour is gone within a few frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.filters import gaussian_blur
from models.flow import FLOW_SHORT_SIDE, DISFlow, flow_tensor, grey, reliable, resize_flow, warp

# Frames to run through a fresh stabiliser before a segment's first frame (the end of the
# previous segment) so that its output matches an unsplit run's: measured by bench/flicker.py
# --warmup.
WARMUP_FRAMES = 8

# Below this share of reliable pixels a frame is taken for a scene cut: nothing is carried over
# it (at a real cut 1-2 % of pixels pass the flow tests by chance, against 55-98 % on the
# shots of the sample and DAVIS clips, fast pans included).
CUT_SHARE = 0.2


class Stabiliser:
    """State carried frame to frame within a stream: the previous input (grey, small) and the
    previous output."""

    def __init__(
        self,
        strength: float = 0.95,
        photometric_tolerance: float = 0.15,
        flow_short_side: int | None = FLOW_SHORT_SIDE,
        preset: str = "medium",
        interpolation: str = "bicubic",
        tone_strength: float | None = None,
        tone_sigma: float = 3.0,
        photometric_free: float = 0.0,
    ) -> None:
        """strength: the weight of the carried output where the flow is fully trusted (0: off).
        photometric_tolerance: the grey-level difference (0..1) between the current input and the
        warped previous one at which the carried output gets no weight (falling linearly from
        full weight at no difference). flow_short_side: the flow's working size. preset: DIS
        preset ("ultrafast", "fast", "medium"). interpolation: how the previous output is
        resampled along the flow; bicubic, because bilinear's blur compounds from frame to frame
        on moving textures (visibly so within ten frames at strength 0.95)."""
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), not {strength}")
        self.strength = strength
        self.photometric_tolerance = photometric_tolerance
        self.flow_short_side = flow_short_side
        self.interpolation = interpolation
        self.tone_strength = tone_strength
        self.tone_sigma = tone_sigma
        self.photometric_free = photometric_free
        self._flow = DISFlow(preset)
        self._previous_grey: np.ndarray | None = None
        self._previous_out: torch.Tensor | None = None  # [1, 3, H, W]

    def reset(self) -> None:
        """Forget the stream: the next frame is output as styled."""
        self._previous_grey = None
        self._previous_out = None

    def __call__(self, sources: list[np.ndarray], styled: torch.Tensor) -> torch.Tensor:
        """sources: the RGB uint8 [H, W, 3] input frames, in order; styled: [B, 3, H, W] in 0..1, the
        per-frame styled outputs of those frames (any device and float dtype). Returns the
        stabilised [B, 3, H, W], same device and dtype, and keeps the last frame as the state.

        A first frame with no state before it (or of another size than the state's) is returned
        as styled.
        """
        if len(sources) != styled.shape[0]:
            raise ValueError(f"{len(sources)} source frames for {styled.shape[0]} styled ones")
        size = (styled.shape[-2], styled.shape[-1])
        outputs = []
        for source, frame in zip(sources, styled.split(1), strict=True):
            if source.shape[:2] != size:
                raise ValueError(f"source frame {source.shape[:2]} and styled {size} differ in size")
            current = grey(source, self.flow_short_side)
            previous, carried = self._previous_grey, self._previous_out
            if previous is None or carried is None or carried.shape != frame.shape:
                out = frame
            else:
                out = self._blend(previous, current, carried, frame)
            outputs.append(out)
            self._previous_grey, self._previous_out = current, out
        return torch.cat(outputs)

    def _blend(
        self, previous: np.ndarray, current: np.ndarray, carried: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        device = frame.device
        backward = flow_tensor([self._flow(current, previous)], device)  # t -> t-1, on t's grid
        forward = flow_tensor([self._flow(previous, current)], device)
        weight = self._confidence(previous, current, forward, backward)
        size = (frame.shape[-2], frame.shape[-1])
        weight = F.interpolate(weight, size=size, mode="bilinear", align_corners=False).to(frame.dtype)
        warped = warp(carried, resize_flow(backward, size), self.interpolation)
        diff = warped - frame
        if self.tone_strength is None:
            return (frame + weight * self.strength * diff).clamp_(0.0, 1.0)
        tone = gaussian_blur(diff, self.tone_sigma)
        return (frame + weight * (self.strength * diff + (self.tone_strength - self.strength) * tone)).clamp_(0.0, 1.0)

    def _confidence(
        self, previous: np.ndarray, current: np.ndarray, forward: torch.Tensor, backward: torch.Tensor
    ) -> torch.Tensor:
        """0..1 weight of the carried output at the flow's working size: [1, 1, h, w], float32."""
        mask = reliable(forward, backward)
        if float(mask.mean()) < CUT_SHARE:
            return torch.zeros_like(mask)
        device = backward.device
        now = torch.from_numpy(current).to(device, torch.float32)[None, None] / 255.0
        before = torch.from_numpy(previous).to(device, torch.float32)[None, None] / 255.0
        # a little blur: sensor noise and compression alone should not reject a match
        error = gaussian_blur((warp(before, backward) - now).abs(), 1.0)
        span = self.photometric_tolerance - self.photometric_free
        photometric = ((self.photometric_tolerance - error) / span).clamp_(0.0, 1.0)
        return mask * photometric
