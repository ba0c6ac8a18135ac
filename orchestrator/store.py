"""Object store port. Keys are deterministic paths such as `jobs/{job}/{stage}/{segment:05d}.mp4`:
writing a key again replaces the object, so a retried task never leaves a duplicate.

`LocalStore` (embedded mode) keeps objects as files under a directory; `S3Store`
(distributed mode, `s3store.py`) keeps them in a bucket.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Protocol

from orchestrator.errors import ConfigError
from orchestrator.formats import extra_output_format


class Store(Protocol):
    url: str
    bytes_read: int  # object bytes this process has read (downloaded, for S3), all keys together

    def put_file(self, key: str, src: Path) -> int:
        """Store a copy of `src` under `key`; returns its size in bytes."""
        ...

    def writing(self, key: str) -> AbstractContextManager[Path]:
        """Yield a local path to write; on success it becomes `key` in one step."""
        ...

    def reading(self, key: str) -> AbstractContextManager[Path]:
        """Yield a local path holding the object's bytes."""
        ...

    def get_file(self, key: str, dest: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is no error (deleting twice is harmless)."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """The keys of the objects under `prefix` (a folder such as `jobs/{job}/`)."""
        ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self.bytes_read = 0

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"store key escapes the store: {key!r}")
        return path

    def put_file(self, key: str, src: Path) -> int:
        with self.writing(key) as tmp:
            shutil.copyfile(src, tmp)
        return self.path(key).stat().st_size

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Keep the suffix: encoders pick the container from the file name.
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=final.suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {key!r} in {self.url}")
        self.bytes_read += path.stat().st_size
        yield path

    def get_file(self, key: str, dest: Path) -> None:
        with self.reading(key) as src:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        top = self.root.resolve()
        # .tmp- files are writes under way (writing() renames them into place when done)
        return sorted(
            str(p.relative_to(top))
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        top = self.root.resolve()
        for folder in path.parents:  # the job's own folders, once empty (never jobs/ itself)
            if folder.parent == top or not folder.is_relative_to(top):
                break
            with suppress(OSError):  # not empty (a file just written), or gone already
                folder.rmdir()


def open_store(url: str, scratch: Path) -> Store:
    """`file:///dir` or `s3://bucket/prefix`; `scratch` holds local copies while in use."""
    if url.startswith("file://"):
        return LocalStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from orchestrator.s3store import S3Store  # boto3 only where it is used

        return S3Store(url, scratch)
    raise ConfigError(f"store {url!r}: expected file:// or s3://")


def check_key(key: str) -> str:
    """A store key as a client or a setting may name one: relative, its `/`-separated parts
    neither empty nor `.` or `..`, without backslashes (a separator to some file systems and
    tools) or control characters. Returns it; ConfigError says what is wrong."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in key):
        raise ConfigError(f"store key {key[:80]!r}: control characters are not allowed")
    if key.startswith("/") or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ConfigError(f"store key {key!r}: a relative key without backslashes or empty, . or .. parts")
    return key


def job_prefix(job_id: str) -> str:
    """The folder of every object a job stores: the keys below all start with it."""
    return f"jobs/{job_id}/"


def source_key(job_id: str, suffix: str) -> str:
    return f"{job_prefix(job_id)}source{suffix.lower()}"


def slice_key(job_id: str, segment: int) -> str:
    """The source's frames of one segment, cut by stream copy when the job is planned."""
    return f"{job_prefix(job_id)}source/{segment:05d}.nut"


# The audio is copied into a file of the source's own container, which keeps what the codec
# needs from it (an MP4's edit list trimming AAC's priming samples, Matroska's codec delay).
AUDIO_CONTAINERS = {".mp4": ".mp4", ".m4v": ".mp4", ".mov": ".mov", ".webm": ".webm", ".avi": ".avi"}


def audio_key(job_id: str, source_key: str) -> str:
    """The source's audio tracks, stream-copied when the job is planned, for assemble."""
    suffix = AUDIO_CONTAINERS.get(PurePosixPath(source_key).suffix.lower(), ".mkv")
    return f"{job_prefix(job_id)}audio{suffix}"


def segment_key(job_id: str, stage: str, segment: int, ext: str) -> str:
    return f"{job_prefix(job_id)}{stage}/{segment:05d}.{ext}"


def output_key(job_id: str, ext: str) -> str:
    return f"{job_prefix(job_id)}output.{ext}"


def stage_output_key(job_id: str, stage: str, kind: str) -> str:
    """An earlier stage assembled as an output of its own (`--with-matte`)."""
    return f"{job_prefix(job_id)}{stage}.{extra_output_format(kind).ext}"
