"""S3 (or any S3-compatible endpoint) as the object store, through boto3.

Endpoint and credentials come from what boto3 already reads (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, …). Large files go up in parts. boto3 retries throttling and 5xx answers
itself (standard mode); what still fails is raised as `TransientError`, so the task runs again,
unless S3 refused for good (no such bucket, access denied): `StoreRefused`, never retried.
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
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from orchestrator.errors import ConfigError, StoreRefused, TransientError

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
        self.bytes_read = 0

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_file(self, key: str, src: Path) -> int:
        with _translated(self._url(key)):
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
        with _translated(self._url(key)):
            self.client.download_file(self.bucket, self._key(key), str(dest), Config=MULTIPART)
        self.bytes_read += dest.stat().st_size

    def exists(self, key: str) -> bool:
        try:
            with _translated(self._url(key)):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        found = []
        with _translated(self._url(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                found += [item["Key"] for item in page.get("Contents", [])]
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(key[cut:] for key in found)

    def listing(self, prefix: str = "") -> list[tuple[str, int, int]]:
        """(key, size, modification time in ns) of the objects under `prefix`."""
        found = []
        cut = len(self.prefix) + 1 if self.prefix else 0
        with _translated(self._url(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                for item in page.get("Contents", []):
                    modified = int(item["LastModified"].timestamp() * 1e9)
                    found.append((item["Key"][cut:], int(item["Size"]), modified))
        return sorted(found)

    def delete(self, key: str) -> None:
        with _translated(self._url(key)):  # S3 answers a missing key with success too
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
            )
        )


# Answers that no retry can change: the bucket or the credentials are wrong, or a policy forbids
# the request. HEAD requests carry no body, so their refusal comes as the bare status "403".
REFUSED = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "403": "access denied",
    "Forbidden": "access denied",
    "InvalidAccessKeyId": "unknown access key (AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "signature does not match the access key (AWS_SECRET_ACCESS_KEY)",
    "ExpiredToken": "expired session token (AWS_SESSION_TOKEN)",
    "InvalidToken": "invalid session token (AWS_SESSION_TOKEN)",
    "InvalidBucketName": "invalid bucket name",
    "PermanentRedirect": "the bucket is in another region (AWS_DEFAULT_REGION)",
    "AuthorizationHeaderMalformed": "the bucket is in another region (AWS_DEFAULT_REGION)",
    "AccountProblem": "the account is blocked",
}
MISSING = ("404", "NoSuchKey", "NotFound")


def store_error(exc: Exception, url: str) -> Exception:
    """What a boto3 failure on the object at `url` means to frameq: a missing object, a refusal
    for good (StoreRefused), or a passing failure worth running the task again (TransientError)."""
    client_error = _client_error(exc)
    if client_error is not None:
        code = str(client_error.response.get("Error", {}).get("Code", ""))
        if code in MISSING:
            return FileNotFoundError(f"no object {url}")
        if code in REFUSED:
            return StoreRefused(f"{url}: {REFUSED[code]}")
        return TransientError(f"object store error on {url}: {code or client_error}")
    if isinstance(exc, NoCredentialsError):
        return StoreRefused(f"{url}: no credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    return TransientError(f"object store unreachable for {url}: {exc}")


def _client_error(exc: BaseException) -> ClientError | None:
    """The S3 answer behind `exc`: the transfer manager raises S3UploadFailedError from the
    ClientError of the part that failed, which is then only its context."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        return exc.__context__
    return None


@contextmanager
def _translated(url: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError, S3UploadFailedError, RetriesExceededError) as exc:
        # What still fails here has been through boto3's own retries (standard mode).
        raise store_error(exc, url) from exc
