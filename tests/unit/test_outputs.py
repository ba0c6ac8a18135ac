"""A finished job's outputs copied out of the store: the result and the matte beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import FrameqError
from orchestrator.outputs import copy_outputs, output_keys, stage_output_path
from orchestrator.params import JobParams
from orchestrator.schema import Job
from orchestrator.store import LocalStore, output_key, stage_output_key


def finished(kind: str, also: list[str]) -> Job:
    params = JobParams(".mov", also_outputs=tuple(also)).to_json()
    return Job(id="j1", kind=kind, output_key=output_key("j1", "mov"), params=params)


def test_the_matte_lands_beside_the_output() -> None:
    assert stage_output_path(Path("out/cut.mov"), "matte", "video") == Path("out/cut.matte.mp4")
    assert stage_output_path(Path("out/man.webp"), "matte", "image") == Path("out/man.matte.png")
    assert output_keys(finished("video", ["matte"])) == ["jobs/j1/output.mov", "jobs/j1/matte.mp4"]


def test_outputs_are_copied_together_or_not_at_all(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    job = finished("video", ["matte"])
    with store.writing(str(job.output_key)) as tmp:
        tmp.write_bytes(b"cutout")
    dest = tmp_path / "cut.mov"
    # the matte is not in the store: nothing is written, and the error names what is missing
    with pytest.raises(FrameqError, match=r"jobs/j1/matte\.mp4 missing"):
        copy_outputs(store, job, dest)
    assert not dest.exists()
    with store.writing(stage_output_key("j1", "matte", "video")) as tmp:
        tmp.write_bytes(b"matte")
    assert copy_outputs(store, job, dest) == [dest, tmp_path / "cut.matte.mp4"]
    assert (tmp_path / "cut.matte.mp4").read_bytes() == b"matte" and dest.read_bytes() == b"cutout"


def test_a_job_without_output_has_nothing_to_copy(tmp_path: Path) -> None:
    job = Job(id="j2", kind="video", output_key=None, state="failed", params={})
    with pytest.raises(FrameqError, match="no output"):
        copy_outputs(LocalStore(tmp_path), job, tmp_path / "x.mp4")
