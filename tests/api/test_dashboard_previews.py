"""The dashboard's previews, as a real `frameq api` process serves them: inputs over the pixel
limit (and decompression bombs) are refused before anything is decoded, a video's clip is cut
by frame count even when its frames carry no time, a failed job's input is not previewed, and
previews live in the job's own folder of the store, so they expire with it. Last, the styles'
contact sheet is drawn once per FRAMEQ_HOME: a second server serves it without loading torch."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.server import ApiServer
from tests.conftest import run_cli

MB = 1024 * 1024


def memory(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (its peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current VmRSS (Linux: 5 written to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def submit(client: httpx.Client, path: Path, name: str, recipe: str = "cartoon") -> str:
    answer = client.post("/v1/jobs", files={"file": (name, path.read_bytes())}, data={"recipe": recipe})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def one_line(answer: httpx.Response) -> str:
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, answer.text
    return detail


def huge_png(folder: Path) -> Path:
    """9500x9500 (90 Mpx, just under Pillow's bomb threshold), one bit a pixel: about 11 KB."""
    path = folder / "huge.png"
    Image.new("1", (9500, 9500), 1).save(path)
    return path


def bomb_png(folder: Path) -> Path:
    """14000x14000: past twice Pillow's MAX_IMAGE_PIXELS, so opening it raises DecompressionBombError."""
    path = folder / "bomb.png"
    Image.new("1", (14000, 14000)).save(path)
    return path


def huge_video(folder: Path) -> Path:
    """One frame of 4160x4096, just over the default FRAMEQ_MAX_PIXELS (4096x4096)."""
    path = folder / "huge.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 4160, 4096, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((4096, 4160, 3), np.uint8), format="rgb24")
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def untimed_video(folder: Path, frames: int = 300) -> Path:
    """12 s of 64x48 H.264 at 25 fps as a bare elementary stream (named .mkv, which is what is
    uploaded): its decoded frames have no time at all."""
    path = folder / "untimed.mkv"
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), n % 250, np.uint8), format="rgb24")
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def small_png(folder: Path) -> Path:
    path = folder / "small.png"
    y, x = np.mgrid[0:48, 0:64]
    Image.fromarray(np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("make", "name", "said"),
    [
        (huge_png, "huge.png", "9500x9500 is over the limit"),
        (bomb_png, "bomb.png", "too large"),
        (huge_video, "huge.mp4", "4160x4096 is over the limit"),
    ],
)
def test_an_input_over_the_pixel_limit_is_refused_without_decoding_it(
    idle_api: ApiServer, tmp_path: Path, make: Callable[[Path], Path], name: str, said: str
) -> None:
    _, key = idle_api.key()
    src = make(tmp_path)
    assert src.stat().st_size < 100_000
    pid = idle_api.proc.pid
    with idle_api.client(key) as client:
        job_id = submit(client, src, name)  # no worker on this server: it stays queued
        reset_peak(pid)
        before = memory(pid)
        started = time.monotonic()
        answers = [client.get(f"/jobs/{job_id}/preview/{p}") for p in ("input.jpg", "input.jpg")]
        took = time.monotonic() - started
        after = memory(pid)
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
    assert [a.status_code for a in answers] == [422, 422]
    detail = one_line(answers[0])
    assert detail.startswith(f"no preview of {name}: ") and said in detail, detail
    assert took < 5, took
    assert after["VmHWM"] - before["VmRSS"] < 100 * MB, (before, after)


def test_a_video_without_frame_times_gets_a_clip_of_its_first_seconds_only(
    idle_api: ApiServer, tmp_path: Path
) -> None:
    _, key = idle_api.key()
    src = untimed_video(tmp_path)
    with idle_api.client(key) as client:
        job_id = submit(client, src, "untimed.mkv")
        clip = client.get(f"/jobs/{job_id}/preview/input.mp4")
        still = client.get(f"/jobs/{job_id}/preview/input.jpg")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4", clip.text
    (tmp_path / "clip.mp4").write_bytes(clip.content)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate
    assert rate == Fraction(25) and frames == 100  # 4 s of the 12, not all of them
    assert still.status_code == 200 and still.headers["content-type"] == "image/jpeg"
    (tmp_path / "still.jpg").write_bytes(still.content)
    with Image.open(tmp_path / "still.jpg") as picture:
        assert picture.size == (64, 48)


def test_a_failed_jobs_input_is_not_previewed(api: ApiServer, tmp_path: Path) -> None:
    _, key = api.key()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    with api.client(key) as client:
        job_id = submit(client, broken, "broken.png")
        assert api.wait_finished(client, job_id, 120)["state"] == "failed"
        answers = {p: client.get(f"/jobs/{job_id}/preview/{p}") for p in ("input.jpg", "result.jpg")}
    assert answers["input.jpg"].status_code == 409
    assert one_line(answers["input.jpg"]).startswith(f"job {job_id} failed: its input is not previewed")
    assert answers["result.jpg"].status_code == 409


def stored(server: ApiServer, job_id: str) -> Path:
    return Path(server.env["FRAMEQ_HOME"]) / "store" / "jobs" / job_id


def test_a_done_jobs_previews_are_kept_in_its_store_folder_and_expire_with_it(
    api: ApiServer, tmp_path: Path
) -> None:
    _, key = api.key()
    with api.client(key) as client:
        job_id = submit(client, small_png(tmp_path), "small.png")
        assert api.wait_finished(client, job_id, 120)["state"] == "done"
        folder = stored(api, job_id)
        deadline = time.monotonic() + 30  # its intermediates go right after it is done
        while {p.name for p in folder.rglob("*") if p.is_file()} != {"source.png", "output.png"}:
            assert time.monotonic() < deadline, sorted(folder.rglob("*"))
            time.sleep(0.2)
        answers = {p: client.get(f"/jobs/{job_id}/preview/{p}") for p in ("input.jpg", "result.jpg")}
        for name, answer in answers.items():
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg", answer.text
            assert (folder / "previews" / name).read_bytes() == answer.content
            assert client.get(f"/jobs/{job_id}/preview/{name}").content == answer.content
        assert not (Path(api.env["FRAMEQ_HOME"]) / "dashboard" / "previews").exists()

        result = run_cli(api.env, "gc", "--older-than", "0s")
        assert result.returncode == 0, result.stderr
        assert not folder.exists()  # source, output and previews: all of the job's folder
        gone = client.get(f"/jobs/{job_id}/preview/input.jpg")
    assert gone.status_code == 410 and "deleted from the store" in one_line(gone)


def test_the_styles_sheet_is_drawn_once_per_home(idle_api: ApiServer, tmp_path: Path) -> None:
    _, key = idle_api.key()
    with idle_api.client(key) as client:
        first = client.get("/styles.png", timeout=180)
    if first.status_code == 404:
        pytest.skip(one_line(first))  # no style network's model file here: no sheet to draw
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    second = ApiServer(idle_api.env, tmp_path / "second.log", local_workers=0)
    try:
        with second.client(key) as client:
            again = client.get("/styles.png")
        assert again.status_code == 200 and again.content == first.content
        maps = Path(f"/proc/{second.proc.pid}/maps").read_text()
        assert "libtorch" not in maps  # read from FRAMEQ_HOME, not drawn again
    finally:
        second.stop()
