"""The S3 store against a real S3-compatible HTTP endpoint."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from orchestrator.errors import StoreRefused, TransientError
from orchestrator.s3store import S3Store
from orchestrator.store import open_store


def store(env: dict[str, str], tmp_path: Path) -> S3Store:
    s = open_store(f"s3://{env['FRAMEQ_TEST_BUCKET']}/prefix", tmp_path / "scratch")
    assert isinstance(s, S3Store)
    return s


def test_write_read_overwrite(s3_env: dict[str, str], tmp_path: Path) -> None:
    s3 = store(s3_env, tmp_path)
    key = "jobs/j1/style/00000.mp4"
    assert not s3.exists(key)
    for content in (b"first", b"second"):
        with s3.writing(key) as path:
            assert path.suffix == ".mp4"
            path.write_bytes(content)
    with s3.reading(key) as path:
        assert path.read_bytes() == b"second"
    assert s3.exists(key)
    listed = s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["prefix/jobs/j1/style/00000.mp4"]  # overwritten, not duplicated
    assert not list((tmp_path / "scratch").rglob("*.mp4"))  # local copies are gone


def test_large_file_goes_up_in_parts_and_comes_back_whole(s3_env: dict[str, str], tmp_path: Path) -> None:
    s3 = store(s3_env, tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 2**20))  # over the 32 MiB multipart threshold
    assert s3.put_file("jobs/j1/source.mp4", big) == big.stat().st_size
    head = s3.client.head_object(Bucket=s3.bucket, Key="prefix/jobs/j1/source.mp4")
    assert "-" in head["ETag"]  # multipart uploads have an ETag of the form "<md5>-<parts>"
    back = tmp_path / "back.bin"
    s3.get_file("jobs/j1/source.mp4", back)
    assert back.read_bytes() == big.read_bytes()


def test_presigned_url_serves_the_object(s3_env: dict[str, str], tmp_path: Path) -> None:
    s3 = store(s3_env, tmp_path)
    with s3.writing("jobs/j1/output.mp4") as path:
        path.write_bytes(b"result")
    with urllib.request.urlopen(s3.presigned_url("jobs/j1/output.mp4")) as response:
        assert response.read() == b"result"


def test_missing_object_and_unreachable_endpoint(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = store(s3_env, tmp_path)
    with pytest.raises(FileNotFoundError), s3.reading("jobs/nope"):
        pass
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    dead = store(s3_env, tmp_path)
    with pytest.raises(TransientError, match="unreachable"):
        dead.exists("jobs/x")


@pytest.mark.parametrize("size", [5, 40 * 2**20], ids=["one request", "in parts"])
def test_a_bucket_that_does_not_exist_is_refused_at_once(
    s3_env: dict[str, str], tmp_path: Path, size: int
) -> None:
    s3 = open_store("s3://frameq-no-such-bucket/prefix", tmp_path / "scratch")
    assert isinstance(s3, S3Store)
    requests: list[str] = []
    s3.client.meta.events.register("before-send.s3", lambda request, **_: requests.append(request.method))
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(size))
    with pytest.raises(StoreRefused) as refused:
        s3.put_file("jobs/j1/source.mp4", src)
    assert str(refused.value) == "s3://frameq-no-such-bucket/prefix/jobs/j1/source.mp4: no such bucket"
    assert len(requests) == 1  # asked once: a refusal is not retried


def test_delete_and_bytes_read(s3_env: dict[str, str], tmp_path: Path) -> None:
    s3 = store(s3_env, tmp_path)
    key = "jobs/j9/matte/00000.mkv"
    with s3.writing(key) as path:
        path.write_bytes(b"x" * 1000)
    with s3.reading(key):
        pass
    assert s3.bytes_read == 1000  # what a task downloaded, for its row
    assert s3.keys("jobs/j9/") == [key] and s3.keys("jobs/none/") == []
    s3.delete(key)
    assert not s3.exists(key)
    s3.delete(key)  # deleting twice is harmless
