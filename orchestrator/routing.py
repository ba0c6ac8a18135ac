"""The one table of task types: task name -> the queue (and so the kind of worker) that runs it.

The orchestrator stores the queue on each task row when it plans a job; Celery routes by the
same table. A new stage is a new row here plus its handler in `workers/tasks/`.
"""

from __future__ import annotations

from orchestrator.errors import RecipeError

QUEUES = ("media", "matte", "style", "composite", "image")

TASK_QUEUES: dict[str, str] = {
    "media.plan": "media",  # probe the input, cut segments at keyframes, expand the task graph
    "media.assemble": "media",  # concatenate segments, copy the source audio, write the output
    "style.cartoon": "style",
    "matte.person": "matte",  # alpha of every person in the frame
    "composite.bg_blur": "composite",  # frame over its own blurred background, by the matte
    "composite.cutout": "composite",  # frame with the matte as its alpha channel
    "composite.bg_replace": "composite",  # people over a colour, an image or a video
}


def queue_for(task_name: str) -> str:
    try:
        return TASK_QUEUES[task_name]
    except KeyError:
        raise RecipeError(f"unknown task type {task_name!r}") from None
