"""Planning: cut a video into segments at keyframes and expand a recipe into task specs."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from orchestrator.formats import extra_output_format, segment_format
from orchestrator.params import JobParams
from orchestrator.recipes import ASSEMBLE_STAGE, ASSEMBLE_TASK, Recipe
from orchestrator.store import output_key, segment_key, slice_key, stage_output_key
from orchestrator.tasktypes import queue_for, task_type


@dataclass(frozen=True)
class Segment:
    """Frames with start_pts <= pts < end_pts (end None: to the end of the stream)."""

    index: int
    start_pts: int
    end_pts: int | None
    frames: int


@dataclass(frozen=True)
class TaskSpec:
    """A task to insert; `needs` names (stage, segment) pairs of the same job."""

    stage: str
    name: str
    segment: int | None
    frames_total: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    needs: tuple[tuple[str, int | None], ...] = ()
    output_key: str | None = None  # where the task writes its result
    output_format: str | None = None  # what it writes there (orchestrator/formats.py)

    @property
    def queue(self) -> str:
        return queue_for(self.name)


def cut_segments(
    frame_pts: list[int], keyframe_pts: list[int], time_base: Fraction, target_s: float
) -> list[Segment]:
    """Cut at the first keyframe at least `target_s` after the current segment's start.

    `frame_pts` are the presentation times of every frame, `keyframe_pts` those of the
    keyframes. Every segment after the first starts at a keyframe so it decodes on its own.
    """
    if not frame_pts:
        return []
    ordered = sorted(frame_pts)
    starts = [ordered[0]]
    target = int(target_s / time_base)
    for pts in sorted(set(keyframe_pts)):
        if pts - starts[-1] >= max(target, 1):
            starts.append(pts)
    ends: list[int | None] = [*starts[1:], None]
    return [
        Segment(
            index=index,
            start_pts=start,
            end_pts=end,
            frames=(len(ordered) if end is None else bisect_left(ordered, end)) - bisect_left(ordered, start),
        )
        for index, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


def expand(
    recipe: Recipe,
    segments: list[Segment],
    kind: str,
    job_id: str,
    params: JobParams,
    audio_key: str | None = None,
) -> list[TaskSpec]:
    """One task per (segment, stage), then one assemble task needing every output segment and,
    for each stage in `params.also_outputs` (assembled as an output of its own), that stage's.

    Every task's output key and format are decided here, once: a handler writes what its row
    says, and assemble names the job's outputs. `audio_key`: where plan put the source's audio
    (None: it has none).
    """
    specs = []
    for seg in segments:
        span: dict[str, Any] = {"start_pts": seg.start_pts, "end_pts": seg.end_pts, "frames": seg.frames}
        if kind == "video":  # a task reads its own slice of the source, not the whole input
            span["slice_key"] = slice_key(job_id, seg.index)
        if seg.index > 0:  # stages with state across frames warm up on the previous segment's tail
            span["previous_start_pts"] = segments[seg.index - 1].start_pts
            span["previous_slice_key"] = slice_key(job_id, seg.index - 1)
        for stage in recipe.stages:
            fmt = segment_format(
                kind,
                task_type(stage.task).produces,
                is_output=stage.name == recipe.output,
                output_suffix=params.output_suffix,
            )
            specs.append(
                TaskSpec(
                    stage=stage.name,
                    name=stage.task,
                    segment=seg.index,
                    frames_total=seg.frames,
                    params={**stage.params, **span, "inputs": list(stage.needs), "source": stage.source},
                    needs=tuple((need, seg.index) for need in stage.needs),
                    output_key=segment_key(job_id, stage.name, seg.index, fmt.ext),
                    output_format=str(fmt),
                )
            )
    also = [
        {
            "stage": stage,
            "key": stage_output_key(job_id, stage, kind),
            "format": str(extra_output_format(kind)),
        }
        for stage in params.also_outputs
    ]
    specs.append(
        TaskSpec(
            stage=ASSEMBLE_STAGE,
            name=ASSEMBLE_TASK,
            segment=None,
            params={"stage": recipe.output, "also": also, "audio_key": audio_key},
            needs=tuple(
                (stage, seg.index) for stage in (recipe.output, *params.also_outputs) for seg in segments
            ),
            output_key=output_key(job_id, params.output_suffix.lstrip(".")),
        )
    )
    return specs
