"""Temporal stabilisation of per-frame styled video: each output is pulled towards the previous
output, carried along the optical flow of the input frames, where that flow can be trusted.

Styling every frame on its own flickers: the network's textures do not move with the scene and
its colours jump with small changes of the input. Following Ruder, Dosovitskiy, Brox, "Artistic
style transfer for videos" (GCPR 2016), the previous output is warped onto the current frame by
the flow of the inputs and blended in where that flow is reliable:

    out_t = styled_t + strength * c_t * (warp(out_{t-1}, flow_t->t-1) - styled_t)

c_t in 0..1 is the product of
  - Ruder et al.'s binary mask (models.flow.reliable): forward-backward consistent, off
    motion boundaries, inside the previous frame; a frame where under CUT_SHARE of the pixels
    pass is a scene cut and carries nothing;
  - a photometric confidence: how closely the input, carried along by the same blend as the
    output, matches the current input (mean RGB difference, full weight up to
    `photometric_free`, none from `photometric_tolerance`). The carried input drifts exactly
    as the carried output does, so this catches a flow a pixel or two off, which the mask
    passes, and a flow a little short frame after frame, whose error grows along the chain of
    warps until copies of a moving edge stack up.
A pixel's history fades as (strength c)^k over k frames, so a colour carried by mistake where
the input could not tell (a flat road next to a moving car takes the car's flow) fades within
a second or so, and nothing else limits how long a pixel is carried.

Chosen on the flicker benchmark (bench/flicker.py): strength 0.95 (0.8 and 0.9 leave the
strongly textured styles above 1.5x the input's warping error), a photometric tolerance with a
free zone (a ramp from zero difference gave 0.85-0.9 weight to most pixels on noise alone,
which doubled the residual flicker), bicubic resampling (bilinear's blur compounds: moving
textures wash out within ten frames). Binary mask, no erosion or blur of it: both cost a
quarter of the remaining flicker on the bikes clip and changed nothing visible.

Flow runs on the CPU (OpenCV) on frames reduced to the flow's working size; everything else on
the styled tensor's device, in its dtype (sampling positions in float32).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.filters import gaussian_blur
from models.flow import FLOW_SHORT_SIDE, DISFlow, flow_tensor, reliable, resize_flow, shrink, warp

# Frames to run through a fresh stabiliser before a segment's first frame (the end of the
# previous segment) so that its output matches an unsplit run's: measured by bench/flicker.py
# --warmup.
WARMUP_FRAMES = 8

# Below this share of reliable pixels a frame is taken for a scene cut: nothing is carried over
# it (at a real cut 1-2 % of pixels pass the flow tests by chance, against 55-98 % on the
# shots of the sample and DAVIS clips, fast pans included).
CUT_SHARE = 0.2


class Stabiliser:
    """State carried frame to frame within a stream: the previous input (grey, small), the input
    as carried by the blend (small) and the previous output."""

    def __init__(
        self,
        strength: float = 0.95,
        photometric_free: float = 0.05,
        photometric_tolerance: float = 0.15,
        flow_short_side: int | None = FLOW_SHORT_SIDE,
        preset: str = "medium",
        interpolation: str = "bicubic",
        layout_free: float = 0.05,
        layout_tolerance: float = 0.15,
        layout_scale: float = 1 / 30,
    ) -> None:
        """strength: the weight of the carried output where it is fully trusted (0: off).
        photometric_free, photometric_tolerance: mean RGB differences (0..1) between the current
        input and the carried one up to which the carried output keeps its full weight, and from
        which it gets none (linear in between). flow_short_side: the flow's working size. preset:
        the DIS preset ("ultrafast", "fast", "medium"). interpolation: how the previous output
        is resampled along the flow; bicubic, because bilinear's blur compounds from frame to
        frame on moving textures (visibly within ten frames at strength 0.95)."""
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), not {strength}")
        if not 0.0 <= photometric_free < photometric_tolerance:
            raise ValueError("photometric_free must be at least 0 and below photometric_tolerance")
        self.strength = strength
        self.photometric_free = photometric_free
        self.photometric_tolerance = photometric_tolerance
        self.flow_short_side = flow_short_side
        self.interpolation = interpolation
        if not 0.0 <= layout_free < layout_tolerance:
            raise ValueError("layout_free must be at least 0 and below layout_tolerance")
        self.layout_free, self.layout_tolerance, self.layout_scale = (
            layout_free,
            layout_tolerance,
            layout_scale,
        )
        self._flow = DISFlow(preset)
        self._previous_grey: np.ndarray | None = None  # uint8 [h, w], the flow's working size
        self._carried_input: torch.Tensor | None = None  # [1, 3, h, w] float32
        self._previous_out: torch.Tensor | None = None  # [1, 3, H, W]

    def reset(self) -> None:
        """Forget the stream: the next frame is output as styled."""
        self._previous_grey = self._carried_input = self._previous_out = None

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
            small = shrink(source, self.flow_short_side)
            now = torch.from_numpy(small).to(frame.device, torch.float32).permute(2, 0, 1)[None] / 255.0
            grey_now = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            out = frame
            if self._previous_out is not None and self._previous_out.shape == frame.shape:
                out, now = self._blend(grey_now, now, frame)
            outputs.append(out)
            self._previous_grey, self._carried_input, self._previous_out = grey_now, now, out
        return torch.cat(outputs)

    def _layout(self, diff: torch.Tensor) -> torch.Tensor:
        """The low frequencies of `diff` [1, 3, H, W]: a Gaussian blur of sigma `layout_scale` x
        the short side, computed at a quarter of the size (the blur is wide; the result smooth)."""
        h, w = diff.shape[-2:]
        small = F.interpolate(diff, size=(max(1, h // 4), max(1, w // 4)), mode="area")
        blurred = gaussian_blur(small, max(0.5, self.layout_scale * min(h, w) / 4))
        return F.interpolate(blurred, size=(h, w), mode="bilinear", align_corners=False)

    def _blend(
        self, grey_now: np.ndarray, now: torch.Tensor, frame: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stabilised frame, and the input as carried to it (at the flow's working size)."""
        assert self._previous_grey is not None and self._carried_input is not None
        assert self._previous_out is not None
        device = frame.device
        backward = flow_tensor([self._flow(grey_now, self._previous_grey)], device)  # t -> t-1
        forward = flow_tensor([self._flow(self._previous_grey, grey_now)], device)
        mask = reliable(forward, backward)
        if float(mask.mean()) < CUT_SHARE:
            return frame, now
        # The input goes through the same blend as the output, at the small size: where its
        # carried version no longer looks like the current input, the carried output no longer
        # fits the current frame either. That catches a flow wrong by a pixel or two (the tests
        # above pass it) and also drift, a flow a little short frame after frame, whose error
        # grows along the chain of warps until copies of a moving edge stack up.
        history = warp(self._carried_input, backward, self.interpolation)
        # mean over the channels: a red car and a grey road can have one grey level; blurred a
        # little: sensor noise and compression alone should not reject a match
        error = gaussian_blur((history - now).abs().mean(dim=1, keepdim=True), 1.0)
        span = self.photometric_tolerance - self.photometric_free
        weight = mask * ((self.photometric_tolerance - error) / span).clamp_(0.0, 1.0)
        size = (frame.shape[-2], frame.shape[-1])
        warped = warp(self._previous_out, resize_flow(backward, size), self.interpolation)
        weight = weight * self.strength
        carried_input = torch.lerp(now, history, weight)
        weight = F.interpolate(weight, size=size, mode="bilinear", align_corners=False).to(frame.dtype)
        diff = warped - frame
        layout = self._layout(diff)
        # where the carried colours stray from the fresh frame's, its layout of them is taken
        # (the low frequencies of the difference dropped) and only the texture is carried
        stray = layout.abs().mean(dim=1, keepdim=True)
        span = self.layout_tolerance - self.layout_free
        keep = ((self.layout_tolerance - stray) / span).clamp_(0.0, 1.0)
        out = frame + weight * (diff - (1.0 - keep) * layout)
        return out.clamp_(0.0, 1.0), carried_input
