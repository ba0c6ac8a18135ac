"""The one registry of task types. Everything else is derived from it: the queue stored on each
task row, Celery's routes and task registrations, the handler a worker calls, and the queues
`frameq worker` and `infra/` may consume.

A new task type is one `TaskType(...)` line here plus its handler function in `workers/tasks/`.
Handlers are named as "module:function" strings so the orchestrator never imports worker code
(nor torch); a worker resolves only the handlers of the task types it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.errors import RecipeError


@dataclass(frozen=True)
class TaskType:
    name: str  # e.g. "matte.person"; also the Celery task name
    queue: str  # the kind of worker that runs it
    handler: str  # "module:function" in workers/tasks/
    gpu: bool  # runs a model: faster on a GPU worker (CPU works too)
    doc: str
    produces: str = "rgb"  # what its frames hold (rgb, rgba, grey): the planner picks the format


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType(
            "media.plan",
            "media",
            "workers.tasks.plan:plan",
            False,
            "probe the input, cut segments at keyframes, expand the task graph",
        ),
        TaskType(
            "media.assemble",
            "media",
            "workers.tasks.assemble:assemble",
            False,
            "join the output segments, copy the source audio, write the outputs",
        ),
        TaskType(
            "style.cartoon", "style", "workers.tasks.style:cartoon", True, "whole frame in a cartoon style"
        ),
        TaskType(
            "matte.person", "matte", "workers.tasks.matte:person", True, "alpha of every person", "grey"
        ),
        TaskType(
            "composite.bg_blur",
            "composite",
            "workers.tasks.composite:bg_blur",
            True,
            "frame over its own blurred background, by the matte",
        ),
        TaskType(
            "composite.cutout",
            "composite",
            "workers.tasks.composite:cutout",
            False,
            "frame with the matte as its alpha channel",
            "rgba",
        ),
        TaskType(
            "composite.bg_replace",
            "composite",
            "workers.tasks.composite:bg_replace",
            True,
            "people over a colour, an image or a video",
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
