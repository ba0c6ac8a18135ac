"""The temporal stabiliser on real frames: it steadies what stands still, leaves what moves
unsmeared, passes a first frame and a cut through, and carries its state across batches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.flicker_metrics import input_flows, warping_error
from models.cartoon import cartoon
from models.device import to_tensor
from models.temporal import Stabiliser

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"
CPU = torch.device("cpu")


def image(sequence: str, frame: int) -> np.ndarray:
    bgr = cv2.imread(str(DAVIS / "images" / sequence / f"{frame:05d}.jpg"))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def still(frames: int = 8) -> list[np.ndarray]:
    """A static shot: one real frame (a window of lucia) repeated."""
    frame = np.ascontiguousarray(image("lucia", 0)[160:320, 180:420])
    return [frame] * frames


def flickering(sources: list[np.ndarray], sigma: float = 0.04) -> torch.Tensor:
    """The cartoon of every frame with noise of its own added: a style that flickers."""
    gen = torch.Generator().manual_seed(0)
    styled = cartoon(to_tensor(sources, CPU))
    return (styled + sigma * torch.randn(styled.shape, generator=gen)).clamp(0, 1)


def as_frames(batch: torch.Tensor) -> list[np.ndarray]:
    return list(batch.float().permute(0, 2, 3, 1).numpy())


def test_a_first_call_passes_the_styled_frame_through() -> None:
    sources = still(3)
    styled = flickering(sources)
    stabiliser = Stabiliser()
    out = stabiliser(sources[:1], styled[:1])
    assert torch.equal(out, styled[:1])
    out = stabiliser(sources[1:], styled[1:])
    assert not torch.equal(out, styled[1:])  # now there is a state to carry


def test_reset_forgets_the_stream() -> None:
    sources = still(3)
    styled = flickering(sources)
    stabiliser = Stabiliser()
    stabiliser(sources[:2], styled[:2])
    stabiliser.reset()
    assert torch.equal(stabiliser(sources[2:], styled[2:]), styled[2:])


def test_a_static_shot_stops_flickering() -> None:
    sources = still(8)
    styled = flickering(sources)
    out = Stabiliser()(sources, styled)
    pairs = input_flows(sources)
    plain, steady = warping_error(as_frames(styled), pairs), warping_error(as_frames(out), pairs)
    assert plain > 5.0  # the noise: about 2 * 0.04 * 255 / sqrt(pi) levels
    assert steady < 0.3 * plain
    # and nothing else changes: the output stays the styled frame, give or take the noise
    assert (out[-1] - styled.mean(dim=0)).abs().mean() < 0.02


def moving_object(frames: int = 6, step: int = 8) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """A real object (an 80x80 window of hockey) moving right by `step` pixels a frame across a
    real static background (a window of lucia): the frames and the object's (top, left)."""
    background = np.ascontiguousarray(image("lucia", 0)[140:320, 100:420])
    patch = image("hockey", 40)[160:240, 310:390]
    out, places = [], []
    for t in range(frames):
        top, left = 50, 50 + t * step
        frame = background.copy()
        frame[top : top + 80, left : left + 80] = patch
        out.append(frame)
        places.append((top, left))
    return out, places


def test_a_moving_object_is_not_smeared() -> None:
    step = 8
    sources, places = moving_object(step=step)
    styled = cartoon(to_tensor(sources, CPU))
    out = Stabiliser()(sources, styled)
    top, left = places[-1]
    on_object = (slice(None), slice(top + 4, top + 76), slice(left + 4, left + 76))
    # where the object was a frame ago and the background shows again
    trail = (slice(None), slice(top + 4, top + 76), slice(left - step, left))
    for region in (on_object, trail):
        assert (out[-1][region] - styled[-1][region]).abs().mean() < 0.02
    # the test can tell: blending the previous output in without the flow and its checks drags
    # the object's old positions along
    naive = styled[0]
    for frame in styled[1:]:
        naive = torch.lerp(frame, naive, 0.95)
    for region in (on_object, trail):
        assert (naive[region] - styled[-1][region]).abs().mean() > 0.06


def test_a_cut_is_not_blended_over() -> None:
    shot = still(3)
    other = np.ascontiguousarray(image("hockey", 40)[160:320, 180:420])
    sources = [*shot, other]
    styled = flickering(sources)
    out = Stabiliser()(sources, styled)
    assert torch.equal(out[-1], styled[-1])


def test_state_is_carried_from_batch_to_batch() -> None:
    sources, _ = moving_object(frames=6)
    styled = flickering(sources)
    whole = Stabiliser()(sources, styled)
    split = Stabiliser()
    parts = torch.cat(
        [split(sources[:2], styled[:2]), split(sources[2:5], styled[2:5]), split(sources[5:], styled[5:])]
    )
    assert torch.equal(whole, parts)


def test_float16_gives_the_float32_result() -> None:
    sources, _ = moving_object(frames=4)
    styled = flickering(sources)
    full = Stabiliser()(sources, styled)
    half = Stabiliser()(sources, styled.half())
    assert half.dtype == torch.float16 and half.device == styled.device
    assert (half.float() - full).abs().max() < 4 / 255


def test_frames_and_sources_must_match() -> None:
    sources = still(2)
    styled = flickering(sources)
    with pytest.raises(ValueError):
        Stabiliser()(sources[:1], styled)
    with pytest.raises(ValueError):
        Stabiliser()([s[:-2] for s in sources], styled)
