"""S3 (or any S3-compatible endpoint) as the object store, through boto3.

Endpoint and credentials come from what boto3 already reads (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, …). Large files go up in parts. boto3 retries throttling and 5xx answers
itself (standard mode); what still fails is raised as `TransientError`, so the task runs again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.errors import ConfigError, TransientError

MULTIPART = TransferConfig(multipart_threshold=32 * 2**20, multipart_chunksize=16 * 2**20)
RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)


class S3Store:
    def __init__(self, url: str, scratch: Path, client: Any = None) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"FRAMEQ_STORE_URL {url!r} names no bucket (s3://bucket/prefix)")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.scratch = scratch  # local files being written or read
        self.client = client or boto3.client("s3", config=RETRIES)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, src: Path) -> int:
        with _transient(key):
            self.client.upload_file(str(src), self.bucket, self._key(key), Config=MULTIPART)
        return src.stat().st_size

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
            path = Path(tmp) / Path(key).name  # keep the suffix: encoders pick formats by it
            yield path
            self.put_file(key, path)  # one PUT (or one completed multipart): all or nothing

    @contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
            path = Path(tmp) / Path(key).name
            self.get_file(key, path)
            yield path

    def get_file(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _transient(key):
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=MULTIPART)

    def exists(self, key: str) -> bool:
        try:
            with _transient(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return False
        return True

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
            )
        )


@contextmanager
def _transient(key: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"no object {key!r}") from None
        if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ConfigError(f"object store refused {key!r}: {code}") from exc
        raise TransientError(f"object store error on {key!r}: {code or exc}") from exc
    except (BotoCoreError, S3UploadFailedError, RetriesExceededError) as exc:
        # The transfer manager wraps what failed after boto3's own retries in these two.
        raise TransientError(f"object store unreachable for {key!r}: {exc}") from exc
