"""The edge matter on a real person: partial opacity along the hair, nothing changed away from
the pose path's edge, and nothing taken from the network where it disagrees."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch

from frameq.samples import sample_clip
from models.edges import EdgeMatter, _band
from models.person import PersonMatter, alpha_to_uint8


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """carphone's first frame at 4x (704x576), so the hair is some pixels wide."""
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return cv2.resize(rgb, (704, 576), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def edges() -> EdgeMatter:
    return EdgeMatter(torch.device("cpu"))


@pytest.fixture(scope="module")
def alpha(frame: np.ndarray) -> np.ndarray:
    return alpha_to_uint8(PersonMatter(torch.device("cpu"))([frame]))[0]


def soft(alpha: np.ndarray) -> float:
    return float(((alpha > 12) & (alpha < 243)).mean())


def test_the_edges_get_partial_opacity_and_the_rest_is_kept(
    edges: EdgeMatter, frame: np.ndarray, alpha: np.ndarray
) -> None:
    fine = edges(frame, alpha)
    assert fine.shape == alpha.shape and fine.dtype == np.uint8
    assert soft(fine) > 1.5 * soft(alpha)  # hair and collar: opacity between 0 and 1
    # away from the edge band (and its fade) not a pixel changes
    band = _band(alpha, 14) > 0
    assert np.array_equal(fine[~band], alpha[~band])
    assert (fine[band] != alpha[band]).mean() > 0.3
    # the man stays whole and the car's window stays out
    person = alpha >= 128
    assert ((fine >= 128) & person).sum() / ((fine >= 128) | person).sum() > 0.9


def test_nobody_or_a_network_that_disagrees_leaves_the_matte_as_it_is(
    edges: EdgeMatter, frame: np.ndarray
) -> None:
    empty = np.zeros(frame.shape[:2], np.uint8)
    assert np.array_equal(edges(frame, empty), empty)
    # a "person" the pose path never gave: a block of the car's rear window, top left
    block = empty.copy()
    block[20:140, 20:160] = 255
    assert np.array_equal(edges(frame, block), block)
