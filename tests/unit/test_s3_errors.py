"""What an S3 failure means: refused for good (a setting to fix, never retried), a missing
object, or a passing failure (the task runs again)."""

from __future__ import annotations

import pytest
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from orchestrator.errors import ConfigError, StoreRefused, TransientError
from orchestrator.s3store import store_error

URL = "s3://bucket/prefix/jobs/j1/source.mp4"


def client_error(code: str, status: int = 400) -> ClientError:
    response = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def upload_failed(cause: ClientError) -> S3UploadFailedError:
    failed = S3UploadFailedError(f"Failed to upload x to bucket/key: {cause}")
    failed.__context__ = cause  # as boto3 raises it: in the handler of the part's ClientError
    return failed


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("NoSuchBucket", "no such bucket"),
        ("AccessDenied", "access denied"),
        ("403", "access denied"),
        ("InvalidAccessKeyId", "unknown access key (AWS_ACCESS_KEY_ID)"),
        ("SignatureDoesNotMatch", "signature does not match the access key (AWS_SECRET_ACCESS_KEY)"),
    ],
)
def test_refusals_for_good_name_the_object_and_the_problem(code: str, problem: str) -> None:
    for exc in (client_error(code), upload_failed(client_error(code))):
        error = store_error(exc, URL)
        assert isinstance(error, StoreRefused) and isinstance(error, ConfigError)
        assert not isinstance(error, TransientError)
        assert str(error) == f"{URL}: {problem}"


def test_missing_credentials_are_a_refusal() -> None:
    error = store_error(NoCredentialsError(), URL)
    assert isinstance(error, StoreRefused) and "no credentials" in str(error)


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NotFound"])
def test_a_missing_object(code: str) -> None:
    error = store_error(client_error(code, 404), URL)
    assert isinstance(error, FileNotFoundError) and str(error) == f"no object {URL}"


@pytest.mark.parametrize(
    "exc",
    [
        client_error("InternalError", 500),
        client_error("SlowDown", 503),
        upload_failed(client_error("ServiceUnavailable", 503)),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        RetriesExceededError(ReadTimeoutError(endpoint_url="http://127.0.0.1:9")),
        S3UploadFailedError("Failed to upload x to bucket/key: connection reset"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_timeouts_connection_errors_and_server_errors_stay_transient(exc: Exception) -> None:
    error = store_error(exc, URL)
    assert isinstance(error, TransientError) and not isinstance(error, ConfigError)
    assert URL in str(error)
