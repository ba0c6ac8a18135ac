"""Recipes as data: a named graph of per-segment stages, validated when declared.

A video job runs `plan` first (probe, cut segments, expand this graph once per segment) and
`assemble` last (join the output stage's segments, restore the audio). An image job is one
task, `image`, that runs the whole graph on its one frame in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from orchestrator.errors import RecipeError
from orchestrator.styles import DEFAULT_STYLE
from orchestrator.tasktypes import task_type

PLAN_STAGE = "plan"
ASSEMBLE_STAGE = "assemble"
PLAN_TASK = "media.plan"
ASSEMBLE_TASK = "media.assemble"
IMAGE_STAGE = "image"
IMAGE_TASK = "image.run"
ENTRY_STAGES = (PLAN_STAGE, IMAGE_STAGE)  # a job's first task: ready once its input is stored
TERMINAL_TASKS = (ASSEMBLE_TASK, IMAGE_TASK)  # a job's last task: its completion ends the job
MATTE_STAGE = "matte"  # the people's alpha, in every matting recipe
STYLE_STAGE = "style"  # the styled frames, in every recipe that paints (its style: --style)


@dataclass(frozen=True)
class Stage:
    name: str  # unique within the recipe; also the folder of its artifacts
    task: str  # a name from the task-type registry (orchestrator/tasktypes.py)
    needs: tuple[str, ...] = ()  # stages of the same segment whose frames it reads, in this order
    source: bool = True  # it reads the source's frames too (beside those of `needs`)
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    stages: tuple[Stage, ...]
    output: str  # the stage whose per-segment results are assembled
    background: str = "none"  # --background (a colour, an image or a video): none, optional, required
    background_kinds: tuple[str, ...] = ("colour", "image", "video")  # what it may be
    default_style: str | None = None  # the --style it paints with unless told (a style stage only)
    takes_ratio: bool = False  # --ratio W:H: the aspect ratio it crops to
    takes_point: bool = False  # --at X,Y: the person or object it removes
    takes_mask: bool = False  # --mask FILE (required): what it removes
    # A video in one segment: a stage must see every frame in one pass (the crop path follows
    # the subject over the whole video), so its work is not split across workers.
    whole_video: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in (PLAN_STAGE, ASSEMBLE_STAGE, IMAGE_STAGE) or stage.name in seen:
                raise RecipeError(f"recipe {self.name}: stage name {stage.name!r} is taken")
            task_type(stage.task)  # the task type must be registered
            # Needs may only point backwards, so the graph is acyclic by construction.
            for need in stage.needs:
                if need not in seen:
                    raise RecipeError(
                        f"recipe {self.name}: stage {stage.name!r} needs {need!r}, "
                        "which is not an earlier stage"
                    )
            seen.add(stage.name)
        if self.background not in ("none", "optional", "required"):
            raise RecipeError(f"recipe {self.name}: background must be none, optional or required")
        if (self.default_style is None) == (STYLE_STAGE in seen):
            raise RecipeError(f"recipe {self.name}: a style stage and a default style go together")
        if self.output not in seen:
            raise RecipeError(f"recipe {self.name}: output stage {self.output!r} is not a stage")
        # One terminal: assemble, which reads the output stage. A stage that nothing reads would
        # be a second end of the graph, its work never used.
        needed = {need for stage in self.stages for need in stage.needs} | {self.output}
        if unused := [stage.name for stage in self.stages if stage.name not in needed]:
            raise RecipeError(
                f"recipe {self.name}: stage(s) {', '.join(unused)} feed nothing (one terminal: the output)"
            )

    @property
    def alpha(self) -> bool:
        """The output has an alpha channel (ProRes 4444 MOV, VP9 WebM, PNG or WebP)."""
        return task_type(self.stage(self.output).task).produces == "rgba"

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def has_stage(self, name: str) -> bool:
        return any(s.name == name for s in self.stages)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="cartoon",
            description="Whole frame in a built-in cartoon style (smoothed flat colours, ink lines)",
            stages=(Stage(STYLE_STAGE, "style.frames"),),
            output=STYLE_STAGE,
            default_style="cartoon",
        ),
        Recipe(
            name="style",
            description="Whole frame styled: --style INDEX, A:W,B:W (a blend), NAME, PICTURE or .pth",
            stages=(Stage(STYLE_STAGE, "style.frames"),),
            output=STYLE_STAGE,
            default_style=DEFAULT_STYLE,
        ),
        Recipe(
            name="portrait-style",
            description="The styled people over the original background (--style as for style)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage(STYLE_STAGE, "style.frames"),
                Stage("composite", "composite.styled_people", needs=(MATTE_STAGE, STYLE_STAGE)),
            ),
            output="composite",
            default_style=DEFAULT_STYLE,
        ),
        Recipe(
            name="style-background",
            description="The original people over a styled background (--style as for style)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage(STYLE_STAGE, "style.frames"),
                Stage("composite", "composite.styled_background", needs=(MATTE_STAGE, STYLE_STAGE)),
            ),
            output="composite",
            default_style=DEFAULT_STYLE,
        ),
        Recipe(
            name="stencil",
            description="A poster: the people as flat tones on paper (--background COLOUR: on a colour)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("composite", "composite.stencil", needs=(MATTE_STAGE,)),
            ),
            output="composite",
            background="optional",
            background_kinds=("colour",),
        ),
        Recipe(
            name="double-exposure",
            description="The people's silhouette filled with --background IMAGE or VIDEO (double exposure)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("composite", "composite.double_exposure", needs=(MATTE_STAGE,)),
            ),
            output="composite",
            background="required",
            background_kinds=("image", "video"),
        ),
        Recipe(
            name="matte",
            description="The people's alpha matte as greyscale (white = person)",
            stages=(Stage(MATTE_STAGE, "matte.person"),),
            output=MATTE_STAGE,
        ),
        Recipe(
            name="bg-blur",
            description="Portrait mode: people sharp over their own blurred background",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("composite", "composite.bg_blur", needs=(MATTE_STAGE,)),
            ),
            output="composite",
        ),
        Recipe(
            name="bg-replace",
            description="People over a new background: --background COLOUR, IMAGE or VIDEO",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("composite", "composite.bg_replace", needs=(MATTE_STAGE,)),
            ),
            output="composite",
            background="required",
        ),
        Recipe(
            name="crop",
            description="Smart crop to --ratio W:H (default 1:1) keeping faces, people and salient objects; "
            "video: a smooth crop path",
            stages=(Stage("crop", "crop.smart"),),
            output="crop",
            takes_ratio=True,
            whole_video=True,
        ),
        Recipe(
            name="inpaint",
            description="The people removed, filled in from their surroundings (object removal)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("inpaint", "inpaint.people", needs=(MATTE_STAGE,)),
            ),
            output="inpaint",
            takes_point=True,
        ),
        Recipe(
            name="erase",
            description="What --mask covers (white) removed, filled in from its surroundings",
            stages=(Stage("erase", "inpaint.mask"),),
            output="erase",
            takes_mask=True,
        ),
        Recipe(
            name="cutout",
            description="The people alone on a transparent background (ProRes 4444 MOV, VP9 WebM, PNG)",
            stages=(
                Stage(MATTE_STAGE, "matte.person"),
                Stage("composite", "composite.cutout", needs=(MATTE_STAGE,)),
            ),
            output="composite",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(RECIPES))
        raise RecipeError(f"unknown recipe {name!r} (known: {known})") from None
