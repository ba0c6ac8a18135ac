"""Copying a finished job's outputs out of the store: its result, and beside it any earlier
stage it was asked to write as well (`--with-matte`: out.mov and out.matte.mp4)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import FrameqError
from orchestrator.formats import extra_output_format
from orchestrator.params import JobParams
from orchestrator.schema import Job
from orchestrator.store import Store, stage_output_key


def stage_output_path(output: Path, stage: str, kind: str) -> Path:
    """Where a stage's own output goes beside the job's output: out.mov -> out.matte.mp4."""
    return output.with_name(f"{output.stem}.{stage}.{extra_output_format(kind).ext}")


def output_keys(job: Job) -> list[str]:
    """The store keys of a finished job's outputs: its result first, then the extra stages'."""
    if not job.output_key:
        raise FrameqError(f"job {job.id} has no output (it is {job.state})")
    return [job.output_key, *(stage_output_key(job.id, s, str(job.kind)) for s in _also(job))]


def copy_outputs(store: Store, job: Job, dest: Path) -> list[Path]:
    """The job's output to `dest`, each extra stage output beside it; returns the paths written.
    Nothing is written unless every output is in the store."""
    keys = output_keys(job)
    paths = [dest, *(stage_output_path(dest, stage, str(job.kind)) for stage in _also(job))]
    if missing := [key for key in keys if not store.exists(key)]:
        raise FrameqError(f"job {job.id}: {', '.join(missing)} missing from the store")
    for key, path in zip(keys, paths, strict=True):
        store.get_file(key, path)
    return paths


def _also(job: Job) -> list[str]:
    return list(JobParams.from_json(job.params).also_outputs)
