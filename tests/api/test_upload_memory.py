"""An upload streams through the server: its memory does not grow with the file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import ApiServer

UPLOAD_MB = 200


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the process's peak resident memory
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> int:
    """Start the peak over from the memory the process holds now (its start-up peak, which
    an upload's growth could hide under, forgotten); returns that (kB)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_kb(pid)


@pytest.fixture(scope="module")
def roomy_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("roomy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {"FRAMEQ_HOME": str(home / "home"), "FRAMEQ_MAX_UPLOAD_MB": str(UPLOAD_MB + 10)}
    server = ApiServer(env, home / "api.log", local_workers=0)
    yield server
    server.stop()


def test_a_large_upload_is_never_held_in_memory(roomy_api: ApiServer) -> None:
    _, key = roomy_api.key()
    chunk = os.urandom(1024 * 1024)
    boundary = "frameqmemorytest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="recipe"\r\n\r\ncartoon\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:  # made as it is sent: the test holds 1 MiB, not 200
        yield head
        for _ in range(UPLOAD_MB):
            yield chunk
        yield tail

    before = reset_peak(roomy_api.proc.pid)
    with roomy_api.client(key) as client:
        answer = client.post(
            "/v1/jobs", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert answer.status_code == 201, answer.text
        # Random bytes are no video: the job fails when planned; here it waits, recorded and stored.
        assert answer.json()["state"] == "queued"
    grown_mb = (peak_rss_kb(roomy_api.proc.pid) - before) / 1024
    assert grown_mb < UPLOAD_MB / 4, f"peak memory grew by {grown_mb:.0f} MB for a {UPLOAD_MB} MB upload"
    stored = Path(roomy_api.env["FRAMEQ_HOME"]) / "store" / "jobs" / answer.json()["id"]
    assert sum(f.stat().st_size for f in stored.rglob("*") if f.is_file()) == UPLOAD_MB * 1024 * 1024
    assert not any((Path(roomy_api.env["FRAMEQ_HOME"]) / "uploads").iterdir())  # the spool file is gone
