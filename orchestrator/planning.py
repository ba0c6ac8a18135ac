"""Planning: cut a video into segments at keyframes and expand a recipe into task specs."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from orchestrator.recipes import ASSEMBLE_STAGE, ASSEMBLE_TASK, Recipe
from orchestrator.routing import queue_for


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


def expand(recipe: Recipe, segments: list[Segment], also: tuple[str, ...] = ()) -> list[TaskSpec]:
    """One task per (segment, stage), then one assemble task needing every output segment and,
    for each stage named in `also` (assembled as an output of its own), that stage's too."""
    specs = []
    for seg in segments:
        span = {"start_pts": seg.start_pts, "end_pts": seg.end_pts, "frames": seg.frames}
        if seg.index > 0:  # stages with state across frames warm up on the previous segment's tail
            span["previous_start_pts"] = segments[seg.index - 1].start_pts
        for stage in recipe.stages:
            specs.append(
                TaskSpec(
                    stage=stage.name,
                    name=stage.task,
                    segment=seg.index,
                    frames_total=seg.frames,
                    params={**stage.params, **span},
                    needs=tuple((need, seg.index) for need in stage.needs),
                )
            )
    specs.append(
        TaskSpec(
            stage=ASSEMBLE_STAGE,
            name=ASSEMBLE_TASK,
            segment=None,
            params={"stage": recipe.output, "also": list(also)},
            needs=tuple((stage, seg.index) for stage in (recipe.output, *also) for seg in segments),
        )
    )
    return specs
