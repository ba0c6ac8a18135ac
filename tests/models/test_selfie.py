"""The selfie segmenters against MediaPipe's own runtime.

Their last layer is MediaPipe's custom Convolution2DTransposeBias, which ai-edge-litert cannot
run, so the reference masks were produced once by MediaPipe 0.10.14 and kept as a fixture
(tests/fixtures/mediapipe/make_selfie.py regenerates it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.tflite import TFLiteModule
from models.weights import model_path

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mediapipe" / "selfie.npz"
MODELS = {"selfie": "selfie_segmentation.tflite", "selfie_landscape": "selfie_segmentation_landscape.tflite"}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("n", [0, 1])
def test_selfie_mask_matches_mediapipe(name: str, n: int) -> None:
    fixture = np.load(FIXTURE)
    image = torch.from_numpy(fixture[f"{name}-{n}-input"]).permute(2, 0, 1)[None].float() / 255.0
    expected = fixture[f"{name}-{n}-mask"].astype(np.float64) / 65535.0
    module = TFLiteModule(model_path(MODELS[name])).eval()
    assert "Convolution2DTransposeBias" in module.operators()
    with torch.no_grad():
        (mask,) = module(image)
    assert mask.shape == (1, 1, *expected.shape)
    # a person is in the frame: the mask is neither empty nor full
    assert 0.2 < expected.mean() < 0.8 and (expected > 0.9).mean() > 0.1
    assert np.abs(mask[0, 0].numpy() - expected).max() <= 1e-3
