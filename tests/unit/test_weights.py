"""Model files: pinned sources, and the settings that name them."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.person import LANDMARK_MODELS
from models.weights import MODELS, ModelMissingError, pull
from orchestrator.settings import MATTE_MODELS


def test_every_matte_model_setting_names_a_pinned_network() -> None:
    # settings stay free of torch, so they keep their own list: it must match the matter's
    assert set(MATTE_MODELS) == set(LANDMARK_MODELS)
    assert all(LANDMARK_MODELS[name] in MODELS for name in MATTE_MODELS)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEQ_MODELS", str(tmp_path / "models"))
    fake = tmp_path / "mediapipe-0.10.14-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(ModelMissingError, match="does not match its pinned sha256"):
        pull(fake)
    assert not any((tmp_path / "models").iterdir())  # nothing half-written into the cache
