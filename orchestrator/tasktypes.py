"""The one registry of task types. Everything else is derived from it: the queue stored on each
task row, Celery's routes and task registrations, the handler a worker calls, and the queues
`frameq worker` and `infra/` may consume.

A new task type is one `TaskType(...)` line here plus its handler function in `workers/tasks/`.
Handlers are named as "module:function" strings so the orchestrator never imports worker code
(nor torch); a worker resolves only the handlers of the task types it runs.

Most task types are per-frame stages (`per_frame`): their handler makes the function a batch of
frames goes through (workers/frames.py `Frames`), and one frame loop runs it over a video
segment, or an image. `image.run` runs a whole recipe's stages on one image in memory with those
same functions: an image pays no plan, no assemble and no intermediates.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import RecipeError


@dataclass(frozen=True)
class TaskType:
    name: str  # e.g. "matte.person"; also the Celery task name
    queue: str  # the kind of worker that runs it
    handler: str  # "module:function" in workers/tasks/
    doc: str
    gpu: bool = False  # runs a model: faster on a GPU worker (CPU works too)
    produces: str = "rgb"  # what its frames hold (rgb, rgba, grey): the planner picks the format
    model_files: bool = False  # needs the pretrained files of `frameq models pull`
    per_frame: bool = True  # its handler makes a frame function (see above), not a Result


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType(
            "media.plan",
            "media",
            "workers.tasks.plan:plan",
            "probe the input, cut segments at keyframes and slices of the source, expand the task graph",
            per_frame=False,
        ),
        TaskType(
            "media.assemble",
            "media",
            "workers.tasks.assemble:assemble",
            "join the output segments, copy the source audio, write the outputs",
            per_frame=False,
        ),
        TaskType(
            "image.run",
            "image",
            "workers.tasks.image:run",
            "an image through every stage of its recipe in memory, written in its output format",
            gpu=True,
            model_files=True,
            per_frame=False,
        ),
        TaskType(
            "style.frames",
            "style",
            "workers.tasks.style:frames",
            "whole frames in the job's style (a network or a built-in filter), stabilised over time",
            gpu=True,
            model_files=True,
        ),
        TaskType(
            "matte.person",
            "matte",
            "workers.tasks.matte:person",
            "alpha of every person",
            gpu=True,
            produces="grey",
            model_files=True,
        ),
        TaskType(
            "composite.bg_blur",
            "composite",
            "workers.tasks.composite:bg_blur",
            "frame over its own blurred background, by the matte",
            gpu=True,
        ),
        TaskType(
            "composite.cutout",
            "composite",
            "workers.tasks.composite:cutout",
            "frame with the matte as its alpha channel",
            produces="rgba",
        ),
        TaskType(
            "composite.bg_replace",
            "composite",
            "workers.tasks.composite:bg_replace",
            "people over a colour, an image or a video",
            gpu=True,
        ),
        TaskType(
            "composite.styled_people",
            "composite",
            "workers.tasks.composite:styled_people",
            "the styled people over the original frame, by the matte",
            gpu=True,
        ),
        TaskType(
            "composite.styled_background",
            "composite",
            "workers.tasks.composite:styled_background",
            "the original people over the styled frame, by the matte",
            gpu=True,
        ),
        TaskType(
            "composite.stencil",
            "composite",
            "workers.tasks.composite:stencil",
            "the people as two or three flat tones on paper or a colour",
            gpu=True,
        ),
        TaskType(
            "composite.double_exposure",
            "composite",
            "workers.tasks.composite:double_exposure",
            "the people's silhouette filled with a second image or video",
            gpu=True,
        ),
        TaskType(
            "crop.smart",
            "image",
            "workers.tasks.crop:smart",
            "the window of the job's aspect ratio over the most faces, people and salient objects",
            gpu=True,
            model_files=True,
        ),
        TaskType(
            "inpaint.people",
            "composite",
            "workers.tasks.inpaint:people",
            "the people removed, filled in from their surroundings (OpenCV inpainting, by the matte)",
        ),
        TaskType(
            "inpaint.mask",
            "composite",
            "workers.tasks.inpaint:masked",
            "what the job's --mask covers removed, filled in from its surroundings (OpenCV inpainting)",
        ),
    )
}

# Queues in a stable order (first seen), only those some task type uses.
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(t.queue for t in TASK_TYPES.values()))


def task_type(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise RecipeError(f"unknown task type {name!r}") from None


def queue_for(task_name: str) -> str:
    return task_type(task_name).queue


def task_names(queue: str) -> list[str]:
    return [t.name for t in TASK_TYPES.values() if t.queue == queue]
