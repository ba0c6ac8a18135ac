"""An image submitted over HTTP comes back processed; a request without a key gets nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.api.server import ApiServer


def test_an_uploaded_image_is_styled_and_downloaded(api: ApiServer, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    _, key = api.key()
    with api.client(key) as client:
        files = {"file": ("in.png", src.read_bytes())}
        answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon"})
        assert answer.status_code == 201, answer.text
        job = api.wait_finished(client, answer.json()["id"])
        assert job["state"] == "done", job["error"]
        assert job["progress"] == 1.0
        result = client.get(str(job["result_url"]))
        assert result.status_code == 200
    out = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == (96, 128, 3)
    assert np.abs(out.astype(int) - cv2.imread(str(src)).astype(int)).mean() > 1  # it was changed


def test_no_key_no_answer(api: ApiServer) -> None:
    with api.client() as client:
        assert client.get("/v1/jobs").status_code == 401
    with api.client("fq_000000000000_" + "A" * 43) as client:
        assert client.get("/v1/jobs").status_code == 401
