"""The jobs API against a real `frameq api` process: submit, watch, list, download, cancel, and
what a tenant's limits, idempotency keys and store prefixes do."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest

from frameq.samples import sample_clip
from tests.api.server import ApiServer
from tests.media import audio_onset_s, decode, make_video


@pytest.fixture(scope="module")
def shared_key(api: ApiServer) -> str:
    """A tenant for the tests that do not count its jobs."""
    return api.key()[1]


def write_png(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (96, 112, 3), dtype=np.uint8))
    return path


def upload(
    client: httpx.Client,
    name: str,
    content: bytes,
    recipe: str = "cartoon",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    return client.post(
        "/v1/jobs", files={"file": (name, content)}, data={"recipe": recipe, **fields}, headers=headers
    )


def created(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    assert answer.headers["location"] == f"/v1/jobs/{job_id}"
    return job_id


def one_line_problem(answer: httpx.Response, status: int) -> str:
    """The error answer's detail, checked to be the one line the API promises."""
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    return detail


def listed(client: httpx.Client, **query: Any) -> list[str]:
    answer = client.get("/v1/jobs", params=query)
    assert answer.status_code == 200, answer.text
    return [job["id"] for job in answer.json()["jobs"]]


def test_a_video_shows_progress_per_stage_and_comes_back_with_its_audio(
    api: ApiServer, shared_key: str, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", width=160, height=120, frames=30)
    with api.client(shared_key) as client:
        job_id = created(upload(client, "clip.mp4", clip.path.read_bytes()))
        polls: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while not polls or polls[-1]["finished_at"] is None:
            assert time.monotonic() < deadline, polls[-1]
            answer = client.get(f"/v1/jobs/{job_id}")
            assert answer.status_code == 200, answer.text
            polls.append(answer.json())
            time.sleep(0.1)
        job = polls[-1]
        assert job["state"] == "done", job["error"]
        result = client.get(job["result_url"])
    # The job was seen under way before it was done, and its progress never went back.
    assert polls[0]["state"] in ("queued", "running") and polls[0]["progress"] < 1.0
    progress = [p["progress"] for p in polls]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert job["frames_done"] == job["frames_total"] == 30
    stages = {s["stage"]: s for s in job["stages"]}
    assert list(stages) == ["plan", "style", "assemble"]
    assert stages["style"]["frames_done"] == stages["style"]["frames_total"] == 30
    for stage in stages.values():
        assert stage["state"] == "done" and stage["finished_at"] is not None, stage
        assert set(stage["tasks"]) == {"done"}
    # Some poll caught it between stages: planned, the rest still to do.
    between = [p["stages"] for p in polls if p["stages"] and p["state"] != "done"]
    assert any(
        s[0]["stage"] == "plan" and s[0]["state"] == "done" and s[-1]["state"] != "done" for s in between
    ), between
    # The download is the video: every frame, at its size, with the sound where it was.
    assert result.status_code == 200
    assert 'filename="clip-cartoon.mp4"' in result.headers["content-disposition"]
    out = tmp_path / "out.mp4"
    out.write_bytes(result.content)
    decoded = decode(out)
    assert len(decoded.frames) == 30
    assert (decoded.width, decoded.height) == (160, 120)
    assert decoded.audio_streams == 1
    onset_in, onset_out = audio_onset_s(clip.path), audio_onset_s(out)
    assert onset_in is not None and onset_out is not None and abs(onset_in - onset_out) < 0.01
    # and it was styled, not copied
    original = decode(clip.path)
    assert np.abs(decoded.frames[5].astype(int) - original.frames[5].astype(int)).mean() > 1


def test_listing_pages_through_every_job_once_and_filters(
    api: ApiServer, shared_key: str, tmp_path: Path
) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = api.key()
    with api.client(key) as client:
        cartoons = [created(upload(client, f"in{i}.png", image)) for i in range(3)]
        pencil = created(upload(client, "pencil.png", image, "style", params=json.dumps({"style": "pencil"})))
        broken = created(upload(client, "broken.png", os.urandom(2000)))
        submitted = [*cartoons, pencil, broken]
        for job_id in submitted:
            api.wait_finished(client, job_id)
        # Pages of two, newest first, cover every job exactly once.
        ids: list[str] = []
        pages = 0
        cursor = None
        while True:
            answer = client.get("/v1/jobs", params={"limit": 2} | ({"cursor": cursor} if cursor else {}))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            assert len(page["jobs"]) <= 2
            ids += [j["id"] for j in page["jobs"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert ids == submitted[::-1]
        assert pages == 3
        assert listed(client, limit=5) == submitted[::-1]
        # Filters by state and recipe, alone and together, and paged.
        assert listed(client, state="failed") == [broken]
        assert listed(client, recipe="style") == [pencil]
        assert listed(client, state="done", recipe="cartoon") == cartoons[::-1]
        assert listed(client, state="cancelled") == []
        first = client.get("/v1/jobs", params={"state": "done", "limit": 3}).json()
        rest = listed(client, state="done", limit=3, cursor=first["next_cursor"])
        assert [j["id"] for j in first["jobs"]] + rest == [pencil, *cartoons[::-1]]
        one_line_problem(client.get("/v1/jobs", params={"cursor": "not-a-cursor"}), 422)
        assert client.get("/v1/jobs", params={"state": "sleeping"}).status_code == 422
    # Another tenant sees none of them.
    with api.client(shared_key) as client:
        assert not set(listed(client, limit=200)) & set(submitted)
        one_line_problem(client.get(f"/v1/jobs/{pencil}"), 404)
        one_line_problem(client.get(f"/v1/jobs/{pencil}/result"), 404)


def test_cancel_a_job_under_way(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", width=160, height=120, frames=30)
    with api.client(shared_key) as client:
        job_id = created(upload(client, "clip.mp4", clip.path.read_bytes()))
        # Its result is not there yet
        early = one_line_problem(client.get(f"/v1/jobs/{job_id}/result"), 409)
        assert "queued" in early or "running" in early
        # When it is cancelled, it says so at once
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        # and cancelling again is refused, as is its result
        assert "cancelled" in one_line_problem(client.delete(f"/v1/jobs/{job_id}"), 409)
        assert "cancelled" in one_line_problem(client.get(f"/v1/jobs/{job_id}/result"), 409)
        # Then no task of it runs any more: the one running stops at its next batch
        deadline = time.monotonic() + 30
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            states = {state for stage in job["stages"] for state in stage["tasks"]}
            if states <= {"done", "cancelled"}:
                break
            assert time.monotonic() < deadline, job["stages"]
            time.sleep(0.2)
        assert job["state"] == "cancelled" and job["result_url"] is None
        assert "cancelled" in states
        one_line_problem(client.delete("/v1/jobs/000000000000"), 404)


def test_idempotency_key(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = api.key()
    retry = {"Idempotency-Key": "order-42"}
    with api.client(key) as client:
        job_id = created(upload(client, "in.png", image, headers=retry))
        # The same request again (a client retrying after a lost answer) gets the same job.
        again = upload(client, "in.png", image, headers=retry)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == job_id and again.headers["location"] == f"/v1/jobs/{job_id}"
        # The same key with another request is refused: another recipe, or other media.
        detail = one_line_problem(upload(client, "in.png", image, "style", headers=retry), 422)
        assert "Idempotency-Key" in detail
        other = write_png(tmp_path / "other.png", seed=1).read_bytes()
        one_line_problem(upload(client, "in.png", other, headers=retry), 422)
        assert listed(client) == [job_id]
        assert api.wait_finished(client, job_id)["state"] == "done"
        # After it finished, the key still names it.
        assert upload(client, "in.png", image, headers=retry).json()["id"] == job_id
        assert listed(client) == [job_id]
    # Keys are the tenant's own: another tenant's same key makes its own job.
    with api.client(shared_key) as client:
        assert created(upload(client, "in.png", image, headers=retry)) != job_id


def _answer_to_headers_alone(server: ApiServer, key: str, length: int) -> int:
    """The status answered to a POST /v1/jobs whose headers announce `length` bytes of form
    that never come (the client waits for the answer before sending them)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the connection without an answer"
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_tenant_at_its_limit_is_told_to_retry_later(idle_api: ApiServer, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = idle_api.key(None, "--max-active-jobs", "1")
    retry = {"Idempotency-Key": "first"}
    with idle_api.client(key) as client:
        first = created(upload(client, "in.png", image, headers=retry))  # stays queued: no worker
        # While the first is under way, a second is refused, with when to try again
        refused = upload(client, "other.png", image)
        detail = one_line_problem(refused, 429)
        assert "limit 1" in detail
        assert int(refused.headers["retry-after"]) > 0
        # at once, before a byte of its upload is read
        assert _answer_to_headers_alone(idle_api, key, 50 * 2**20) == 429
        # The client's retry of the request that made the first is still answered with it.
        again = upload(client, "in.png", image, headers=retry)
        assert again.status_code == 200 and again.json()["id"] == first
        assert listed(client) == [first]
        # Once the first is out of the way, the next is taken.
        assert client.delete(f"/v1/jobs/{first}").status_code == 200
        second = created(upload(client, "other.png", image))
        assert listed(client) == [second, first]
        assert client.get(f"/v1/jobs/{second}").json()["state"] == "queued"


def test_the_webhooks_of_an_unfinished_job_are_not_replayed(idle_api: ApiServer, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = idle_api.key()
    with idle_api.client(key) as client:
        job_id = created(upload(client, "in.png", image, webhook_url="http://93.184.215.14/hook"))
        detail = one_line_problem(client.post(f"/v1/jobs/{job_id}/webhooks/replay"), 409)
        assert detail == f"job {job_id} has not finished"
        assert client.get(f"/v1/jobs/{job_id}/webhooks").json() == []
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"


def test_a_corrupt_upload_fails_its_own_job_only(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    with api.client(shared_key) as client:
        bad = created(upload(client, "x.mp4", os.urandom(4096)))
        job = api.wait_finished(client, bad)
        assert job["state"] == "failed"
        error = str(job["error"])
        assert "\n" not in error and "x.mp4" in error, error
        assert api.env["FRAMEQ_HOME"] not in error  # the upload's name, not where it was spooled
        assert "x.mp4" in one_line_problem(client.get(f"/v1/jobs/{bad}/result"), 409)
        good = created(upload(client, "in.png", image))
        assert api.wait_finished(client, good)["state"] == "done"
        assert client.get(f"/v1/jobs/{good}/result").status_code == 200


def test_a_job_from_an_object_in_the_store(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    # Given an object put into the store under a tenant's prefix
    stored = Path(api.env["FRAMEQ_HOME"]) / "store" / "uploads" / "acme" / "x.png"
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_png(stored, seed=3)
    _, key = api.key(None, "--prefix", "uploads/acme/")
    with api.client(key) as client:
        # When the tenant names it
        answer = client.post("/v1/jobs", json={"source": "uploads/acme/x.png", "recipe": "cartoon"})
        job_id = created(answer)
        assert answer.json()["input_name"] == "uploads/acme/x.png"
        job = api.wait_finished(client, job_id)
        assert job["state"] == "done", job["error"]
        result = client.get(str(job["result_url"]))
        assert result.status_code == 200
        # Keys outside its prefixes, or that climb out of them, are refused
        for key_outside in ("uploads/other/x.png", "uploads/acme/../other/x.png", "jobs/x/output.png"):
            answer = client.post("/v1/jobs", json={"source": key_outside, "recipe": "cartoon"})
            one_line_problem(answer, 422)
    # Then the result is that image, styled
    out = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == (96, 112, 3)
    assert np.abs(out.astype(int) - cv2.imread(str(stored)).astype(int)).mean() > 1
    # and a tenant without the prefix may not name it
    with api.client(shared_key) as client:
        answer = client.post("/v1/jobs", json={"source": "uploads/acme/x.png", "recipe": "cartoon"})
        assert "prefixes" in one_line_problem(answer, 422)


def test_submissions_at_once_never_exceed_the_limit(idle_api: ApiServer, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = idle_api.key(None, "--max-active-jobs", "2")
    start = threading.Barrier(8)

    def submit(_: int) -> int:
        with idle_api.client(key) as client:
            start.wait()
            return upload(client, "in.png", image).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(submit, range(8)))
    assert statuses == [201, 201] + [429] * 6, statuses
    with idle_api.client(key) as client:
        assert len(listed(client)) == 2


# -- an S3 store ---------------------------------------------------------------------------


@dataclass
class S3Api:
    server: ApiServer
    s3: Any  # a boto3 client of the same endpoint
    bucket: str  # the server's store: s3://BUCKET/frameq, made by the tests that need it

    def buckets(self) -> set[str]:
        return {b["Name"] for b in self.s3.list_buckets()["Buckets"]}

    def ensure_bucket(self) -> None:
        if self.bucket not in self.buckets():
            self.s3.create_bucket(Bucket=self.bucket)

    def remove_bucket(self) -> None:
        if self.bucket in self.buckets():
            for item in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
                self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
            self.s3.delete_bucket(Bucket=self.bucket)


@pytest.fixture(scope="module")
def s3_api(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Api]:
    """`frameq api` (embedded, one local worker) on a store in an S3 bucket that does not
    exist until a test makes it."""
    import boto3

    aws = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    bucket = f"frameq-{secrets.token_hex(4)}"
    home = tmp_path_factory.mktemp("s3api")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMEQ_", "AWS_"))}
    env |= aws | {"FRAMEQ_HOME": str(home / "home"), "FRAMEQ_STORE_URL": f"s3://{bucket}/frameq"}
    server = ApiServer(env, home / "api.log")
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    yield S3Api(server, s3, bucket)
    server.stop()


def test_a_retry_after_the_store_refused_makes_a_new_job(s3_api: S3Api, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    server = s3_api.server
    _, key = server.key()
    retry = {"Idempotency-Key": "store-down"}
    s3_api.remove_bucket()
    with server.client(key) as client:
        # The store refuses: the server's fault, not the request's.
        refused = upload(client, "in.png", image, headers=retry)
        assert "no such bucket" in one_line_problem(refused, 503)
        assert int(refused.headers["retry-after"]) > 0
        [failed] = client.get("/v1/jobs").json()["jobs"]
        assert failed["state"] == "failed"
        # The same request again, the store still down: refused again, not answered with that job.
        one_line_problem(upload(client, "in.png", image, headers=retry), 503)
        s3_api.ensure_bucket()
        # Once the store is back, the retry makes the job, and the key names it from then on.
        job_id = created(upload(client, "in.png", image, headers=retry))
        assert job_id != failed["id"]
        assert len(listed(client)) == 3  # two failed, one made now
        again = upload(client, "in.png", image, headers=retry)
        assert again.status_code == 200 and again.json()["id"] == job_id
        assert server.wait_finished(client, job_id)["state"] == "done"


def test_a_deleted_result_in_s3_is_gone(s3_api: S3Api, tmp_path: Path) -> None:
    s3_api.ensure_bucket()
    server = s3_api.server
    _, key = server.key()
    with server.client(key) as client:
        job_id = created(upload(client, "in.png", write_png(tmp_path / "in.png").read_bytes()))
        assert server.wait_finished(client, job_id)["state"] == "done"
        result = client.get(f"/v1/jobs/{job_id}/result")
        assert result.status_code == 307 and s3_api.bucket in result.headers["location"]
        stored = s3_api.s3.list_objects_v2(Bucket=s3_api.bucket, Prefix=f"frameq/jobs/{job_id}/output")
        [output] = [item["Key"] for item in stored["Contents"]]
        s3_api.s3.delete_object(Bucket=s3_api.bucket, Key=output)  # as FRAMEQ_OUTPUTS_TTL_DAYS does
        assert "deleted" in one_line_problem(client.get(f"/v1/jobs/{job_id}/result"), 410)


def test_the_same_request_sent_at_once_makes_one_job(idle_api: ApiServer, tmp_path: Path) -> None:
    """A client retrying before its first request was answered: whichever records first makes
    the job, and every other one is answered with it."""
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = idle_api.key()
    start = threading.Barrier(8)

    def submit(_: int) -> tuple[int, str]:
        with idle_api.client(key) as client:
            start.wait()
            answer = upload(client, "in.png", image, headers={"Idempotency-Key": "twice"})
            return answer.status_code, answer.json().get("id", answer.text)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201], answers
    assert len({job_id for _, job_id in answers}) == 1
    with idle_api.client(key) as client:
        assert listed(client) == [answers[0][1]]


def test_a_picked_person_with_fine_edges_over_http(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    # Given two men side by side (the carphone clip's and his mirror image), as a PNG
    with av.open(str(sample_clip("carphone_pristine"))) as container:
        decoded = zip(range(6), container.decode(video=0), strict=False)
        frames = [f.to_ndarray(format="rgb24") for _, f in decoded]
    pair = np.concatenate([frames[0], frames[5][:, ::-1]], axis=1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    assert ok
    params = json.dumps({"person": "262,120", "fine_edges": True})
    with api.client(shared_key) as client:
        # When a cutout of the one on the right is asked for
        job = created(upload(client, "two.png", png.tobytes(), "cutout", params=params))
        assert api.wait_finished(client, job)["state"] == "done"
        result = client.get(f"/v1/jobs/{job}/result")
        # Then only he is in it
        alpha = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_UNCHANGED)[..., 3]
        assert alpha[100:, 232:292].mean() > 230 and alpha[100:, 60:120].mean() < 10
        # and a point on nobody fails its job in one line naming the upload; a malformed one is a 422
        nobody = created(upload(client, "two.png", png.tobytes(), "cutout", params='{"person": "176,5"}'))
        failed = api.wait_finished(client, nobody)
        assert failed["state"] == "failed" and "two.png" in failed["error"] and "176,5" in failed["error"]
        bad = upload(client, "two.png", png.tobytes(), "cutout", params='{"person": "left"}')
        assert "point 'left'" in one_line_problem(bad, 422)


def test_erase_with_a_mask_uploaded_beside_it(api: ApiServer, shared_key: str, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png")
    mask = np.zeros((96, 112), np.uint8)
    mask[30:60, 40:80] = 255
    ok, mask_png = cv2.imencode(".png", mask)
    assert ok
    with api.client(shared_key) as client:
        answer = client.post(
            "/v1/jobs",
            files={"file": ("in.png", image.read_bytes()), "mask_file": ("mask.png", mask_png.tobytes())},
            data={"recipe": "erase"},
        )
        job = created(answer)
        assert api.wait_finished(client, job)["state"] == "done"
        result = cv2.imdecode(np.frombuffer(client.get(f"/v1/jobs/{job}/result").content, np.uint8), 1)
        changed = np.abs(result.astype(int) - cv2.imread(str(image)).astype(int)).max(-1) > 0
        assert changed[30:60, 40:80].mean() > 0.9
        assert not changed[:20].any() and not changed[75:].any()  # far from the mask: untouched
        # erase without a mask is the request's mistake
        assert "needs --mask" in one_line_problem(upload(client, "in.png", image.read_bytes(), "erase"), 422)
