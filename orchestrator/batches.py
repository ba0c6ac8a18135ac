"""Library batches: a source tree through one recipe into a mirror of it, resumable.

Before any work, `frameq batch` decides what each file of the source needs:
- its content's sha256, read again only for a file whose size or mtime changed since the
  batch last saw it (a re-run over an unchanged library reads no file);
- its item key: that hash with the recipe and every parameter of the job (orchestrator/params),
  the style or background file by its content too. Two files of one key make the same output;
- a job: the one that already makes its key (done with its output in the store, or under
  way, in this batch or any other), else a new one. Identical files share one job. A failed
  item is tried again on the next run (a corrupt file fails again at once; one that failed
  for want of a model file or a store gets its chance), unless the run is told to skip them;
- an item whose output this batch already copied to the destination, from the same bytes,
  is done whatever became of its job (its stored output may have expired since).

New jobs are recorded in bulk (`Repository.create_batch_jobs`, one transaction per chunk), at
bulk priority. Outputs are copied to the destination once their job is done, and each copy
is recorded, so a re-run copies only what is missing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.errors import InputError
from orchestrator.inputs import MEDIA_SUFFIXES, directory_output_suffix, kind_of
from orchestrator.outputs import stage_output_path

HASH_CHUNK = 1 << 20
log = logging.getLogger("frameq.batch")


@dataclass(frozen=True)
class Filters:
    """Which files of the source a batch takes."""

    suffixes: tuple[str, ...] = MEDIA_SUFFIXES  # lower case, with the dot
    include: tuple[str, ...] = ()  # globs on the path relative to the source; none: every file
    exclude: tuple[str, ...] = ()
    max_bytes: int | None = None

    def takes(self, relative: str, size: int) -> bool:
        if Path(relative).suffix.lower() not in self.suffixes:
            return False
        if self.include and not any(fnmatch.fnmatch(relative, g) for g in self.include):
            return False
        if any(fnmatch.fnmatch(relative, g) for g in self.exclude):
            return False
        return self.max_bytes is None or size <= self.max_bytes


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the source, with "/"
    local: Path  # where its bytes are: the file itself, or where an object is downloaded to
    size: int
    mtime_ns: int
    name: str = ""  # how errors and jobs name it: its path, or its s3:// URL (default: local)
    fetch: Callable[[], None] | None = None  # an object's download to `local`, done when needed

    def ready(self) -> Path:
        """Its bytes on this machine (an object is downloaded once, when first needed: an
        unchanged one never is)."""
        if self.fetch is not None and not self.local.exists():
            self.fetch()
        return self.local

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", str(self.local))


def scan(source: str, filters: Filters, scratch: Path) -> list[SourceFile]:
    """The source's files the filters take, in path order: a directory tree, or the objects
    under an s3://bucket/prefix (downloaded under `scratch` when needed)."""
    if source.startswith("s3://"):
        return _scan_s3(source, filters, scratch)
    root = Path(source)
    if not root.is_dir():
        raise InputError(source, "not a directory")
    found = []
    for local in root.rglob("*"):
        if not local.is_file():
            continue
        relative = local.relative_to(root).as_posix()
        stat = local.stat()
        if filters.takes(relative, stat.st_size):
            found.append(SourceFile(relative, local, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.path)


def _scan_s3(url: str, filters: Filters, scratch: Path) -> list[SourceFile]:
    from orchestrator.s3store import S3Store  # boto3 only for an s3:// source

    bucket = S3Store(url.rstrip("/"), scratch)
    found = []
    for key, size, mtime_ns in bucket.listing():
        parts = PurePosixPath(key).parts
        if key.startswith("/") or not parts or any(p in ("", ".", "..") for p in parts) or "//" in key:
            log.warning("%s/%s left out: a key that is no relative path", url, key)
            continue  # it would name a place outside the scratch folder and the destination
        if filters.takes(key, size):
            local = scratch / "source" / key

            def fetch(key: str = key, local: Path = local) -> None:
                bucket.get_file(key, local)

            found.append(SourceFile(key, local, size, mtime_ns, f"{url.rstrip('/')}/{key}", fetch))
    return sorted(found, key=lambda f: f.path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(recipe: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a job's output depends on besides its input: the recipe and its parameters, with
    a style, background or mask file as its content's hash (not where it was uploaded to)."""
    values = dict(params)
    for name in ("background", "style", "mask"):
        attached = values.get(name)
        if isinstance(attached, dict) and ("path" in attached or "key" in attached):
            kept = {k: v for k, v in attached.items() if k not in ("path", "key", "name")}
            if "path" in attached:
                kept["sha256"] = file_sha256(Path(attached["path"]))
            values[name] = kept
    return {"recipe": recipe, "params": values}


def item_key(content_sha256: str, print_: dict[str, Any]) -> str:
    return hashlib.sha256(f"{content_sha256}\n{_canonical(print_)}".encode()).hexdigest()


def source_id(source: str) -> str:
    """A source as the batch knows it: a directory's absolute path, or its s3:// URL."""
    return source.rstrip("/") if source.startswith("s3://") else str(Path(source).resolve())


def batch_key(source: str, dest: Path, print_: dict[str, Any]) -> str:
    """The same command again: the same source, destination, recipe and parameters (output
    formats follow each input, so they are not part of it)."""
    params = {k: v for k, v in print_["params"].items() if k != "output_suffix"}
    what = [source_id(source), str(dest.resolve()), print_["recipe"], params]
    return hashlib.sha256(_canonical(what).encode()).hexdigest()


@dataclass(frozen=True)
class Known:
    """What the batch recorded of a file on an earlier run."""

    size: int
    mtime_ns: int
    sha256: str
    job_id: str | None
    written_size: int | None


@dataclass
class Item:
    """One file of the source, with what it needs."""

    file: SourceFile
    dest: str  # the output, relative to the destination
    sha256: str
    key: str  # item key
    job_id: str | None = None  # the job that makes its output (None: a new one is needed)
    state: str = "new"  # the job's state, or new


def output_path(relative: str, alpha: bool) -> str:
    """The output mirrors the input's place; its format follows the input's where it can."""
    path = Path(relative)
    return path.with_suffix(directory_output_suffix(path, alpha)).as_posix()


def identify(
    files: Iterable[SourceFile], known: dict[str, Known], print_: dict[str, Any], alpha: bool
) -> list[Item]:
    """Each file with its hash and item key; a file unchanged since the last run (same size
    and mtime) keeps the hash recorded then, unread."""
    items = []
    for f in files:
        before = known.get(f.path)
        unchanged = before is not None and (before.size, before.mtime_ns) == (f.size, f.mtime_ns)
        sha = before.sha256 if before is not None and unchanged else file_sha256(f.ready())
        dest = output_path(f.path, alpha)
        suffix = Path(dest).suffix
        key = item_key(sha, {**print_, "params": {**print_["params"], "output_suffix": suffix}})
        items.append(Item(f, dest, sha, key))
    return items


def check_collisions(items: Sequence[Item], also: Sequence[str]) -> None:
    """Two inputs that would write one output (a.jpg and a.png both to a.png) are refused
    before anything runs."""
    written_by: dict[str, str] = {}
    for item in items:
        kind = kind_of(Path(item.file.path)) or "video"
        dest = Path(item.dest)
        for path in (dest, *(stage_output_path(dest, stage, kind) for stage in also)):
            other = written_by.setdefault(path.as_posix(), item.file.path)
            if other != item.file.path:
                raise InputError(item.file.path, f"its output {path} would overwrite that of {other}")


@dataclass
class Decision:
    """What a run of the batch will do, by item."""

    items: list[Item]
    new: list[Item] = field(default_factory=list)  # one per new job (the first of its key)


def already_written(items: Sequence[Item], known: dict[str, Known], dest: Path) -> None:
    """Mark done the items whose output this batch copied to `dest` from the same bytes, and
    which are still there at that size."""
    for item in items:
        before = known.get(item.file.path)
        if before is None or before.job_id is None or before.written_size is None:
            continue
        if before.sha256 == item.sha256 and file_size(dest / item.dest) == before.written_size:
            item.job_id, item.state = before.job_id, "done"


def file_size(path: Path) -> int | None:
    """Its size, or None when there is no such file."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def decide(items: list[Item], existing: dict[str, tuple[str, str]], retry_failed: bool) -> Decision:
    """Give each item without one its job: `existing` maps item keys to (job id, state) of the
    job that makes that key (Repository.jobs_for_keys). A failed one is reused unless
    `retry_failed`. Items of one key without a job share the first one's new job."""
    decision = Decision(items)
    first_of: dict[str, Item] = {}
    for item in items:
        if item.job_id is not None:  # decided already (already_written)
            continue
        job = existing.get(item.key)
        if job is not None and not (retry_failed and job[1] == "failed"):
            item.job_id, item.state = job
        elif item.key in first_of:
            item.state = "duplicate"  # gets its twin's job once that is recorded
        else:
            first_of[item.key] = item
            decision.new.append(item)
    return decision
