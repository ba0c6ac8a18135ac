"""Copying a finished job's outputs out of the store: its result, and beside it any earlier
stage it was asked to write as well (`--with-matte`: out.mov and out.matte.mp4)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.schema import Job
from orchestrator.store import Store, stage_output_key


def stage_output_path(output: Path, stage: str, kind: str) -> Path:
    """Where a stage's own output goes beside the job's output: out.mov -> out.matte.mp4."""
    return output.with_name(f"{output.stem}.{stage}{'.png' if kind == 'image' else '.mp4'}")


def copy_outputs(store: Store, job: Job, dest: Path) -> list[Path]:
    """The job's output to `dest`, each extra stage output beside it; returns the paths written."""
    if not job.output_key:
        raise ValueError(f"job {job.id} has no output yet")
    store.get_file(job.output_key, dest)
    written = [dest]
    for stage in job.params.get("also_outputs", ()):
        path = stage_output_path(dest, stage, str(job.kind))
        store.get_file(stage_output_key(job.id, stage, str(job.kind)), path)
        written.append(path)
    return written
