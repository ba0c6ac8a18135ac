"""Commands of distributed mode: submit, fetch, cancel, worker, reconcile, flower."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from frameq.checks import check_device, check_outputs
from frameq.options import job_options
from frameq.servers import BROKER_ERRORS, broker_unreachable, check_broker, wait_for_database
from orchestrator.dispatch import PRIORITIES, CeleryDispatcher
from orchestrator.errors import ConfigError, FrameqError
from orchestrator.inputs import output_suffix_for
from orchestrator.outputs import copy_outputs, output_keys, stage_output_path
from orchestrator.params import JobParams, PictureOptions
from orchestrator.recipes import MATTE_STAGE, get_recipe
from orchestrator.reconcile import reconcile as reconcile_once
from orchestrator.repository import Repository
from orchestrator.schema import Job, JobState, TaskState
from orchestrator.settings import Settings
from orchestrator.styles import StyleChoice
from orchestrator.submit import submit as submit_job
from orchestrator.tasktypes import QUEUES, TASK_TYPES
from workers.runtime import Runtime


def _distributed() -> tuple[Settings, Runtime, CeleryDispatcher]:
    settings = Settings.from_env()
    if settings.embedded:
        raise ConfigError(
            "this command needs FRAMEQ_BROKER_URL (distributed mode); `frameq run` works without"
        )
    runtime = Runtime.open(settings)
    return settings, runtime, CeleryDispatcher.from_settings(settings, runtime.repo)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-r", "--recipe", default="cartoon", show_default=True)
@click.option(
    "--priority",
    type=click.Choice(list(PRIORITIES)),
    default="normal",
    show_default=True,
    help="high: interactive work, ahead of any backlog; bulk: overnight libraries.",
)
@click.option(
    "--format", "fmt", help="Output format (mp4, mov, mkv, webm, png, jpg, webp); default by input."
)
@job_options
@click.option("--with-matte", is_flag=True, help="Also keep the people's matte; `fetch` writes it too.")
def submit(
    input_path: Path,
    recipe: str,
    priority: str,
    fmt: str | None,
    background: dict[str, Any] | None,
    style: StyleChoice,
    picture: PictureOptions,
    with_matte: bool,
) -> None:
    """Upload INPUT to the store, record its job and queue it; print the job id at once."""
    settings, runtime, dispatcher = _distributed()
    check_broker(dispatcher, settings)  # else the job would be recorded and uploaded, then stuck
    alpha = get_recipe(recipe).alpha
    suffix = output_suffix_for(input_path, Path(f"output.{fmt}") if fmt else None, alpha)
    for one in picture.each_ratio():  # several aspect ratios: a job for each, its id on a line
        job = submit_job(
            runtime.repo,
            runtime.store,
            settings,
            input_path,
            recipe,
            suffix,
            priority=PRIORITIES[priority],
            background=background,
            also_outputs=(MATTE_STAGE,) if with_matte else (),
            style=style,
            picture=one,
        )
        if job.state == JobState.FAILED:
            click.echo(f"error: {job.error}", err=True)
            sys.exit(1)
        send_ready(dispatcher, runtime.repo, settings, job.id)
        click.echo(job.id)


def send_ready(dispatcher: CeleryDispatcher, repo: Repository, settings: Settings, job_id: str) -> None:
    """Send the job's ready tasks. A broker lost since the check leaves them ready and never sent
    (dispatched_at unset), which the reconciler sends once the broker is back: the job and its
    upload are kept, and the error says so."""
    try:
        dispatcher.send([t.id for t in repo.tasks(job_id) if t.state == TaskState.READY])
    except BROKER_ERRORS as exc:
        then = f"job {job_id} is queued; will be sent when the broker is back"
        raise broker_unreachable(settings, exc, then) from None


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write the result.")
@click.option(
    "--url", is_flag=True, help="Print a presigned URL of the result (and of its matte) instead (S3 stores)."
)
def fetch(job_id: str, output: Path | None, url: bool) -> None:
    """Download the result of a finished job."""
    runtime = Runtime.open(Settings.from_env())
    job = runtime.repo.get_job(job_id)
    if job.state != JobState.DONE or not job.output_key:
        raise FrameqError(f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
    if url:
        presign = getattr(runtime.store, "presigned_url", None)
        if presign is None:
            raise ConfigError("presigned URLs need an s3:// store")
        for key in output_keys(job):  # the result, then the matte when kept
            click.echo(presign(key))
        return
    if output is None:
        raise click.UsageError("give -o OUTPUT or --url")
    check_outputs(_written(job, output))
    written = copy_outputs(runtime.store, job, output)
    click.echo(f"{job_id} -> {', '.join(map(str, written))}")


def _written(job: Job, output: Path) -> list[Path]:
    """The files `fetch` writes: the output, and the stage outputs kept beside it."""
    also = JobParams.from_json(job.params).also_outputs
    return [output, *(stage_output_path(output, stage, str(job.kind)) for stage in also)]


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job: queued tasks are dropped, running ones stop at their next batch."""
    runtime = Runtime.open(Settings.from_env())
    if runtime.repo.cancel_job(job_id):
        click.echo(f"{job_id} cancelled")
    else:
        click.echo(f"{job_id} had already finished ({runtime.repo.get_job(job_id).state})")


@click.command()
@click.option(
    "-Q",
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Task types to consume, e.g. matte,style.",
)
@click.option("-c", "--concurrency", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--device", help="auto, cpu, cuda or cuda:N (one worker per GPU).")
@click.option(
    "--beat",
    is_flag=True,
    help="Also run Celery beat with the periodic reconcile task (every worker reconciles anyway).",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker(queues: str, concurrency: int, device: str | None, beat: bool, loglevel: str) -> None:
    """Start a Celery worker for some task types."""
    from workers.celery_app import make_app

    unknown = set(queues.split(",")) - set(QUEUES)
    if unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(sorted(unknown))} (known: {', '.join(QUEUES)})")
    settings = Settings.from_env(device=device)
    check_device(settings, device)
    check_model_files(queues.split(","))
    wait_for_database(settings, lambda line: click.echo(f"frameq worker: {line}", err=True))
    app = make_app(settings)
    argv = [
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--loglevel",
        loglevel,
        "-n",
        f"frameq-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main([*argv, "-B"] if beat else argv)


def check_model_files(queues: list[str]) -> None:
    """A worker for task types that run pretrained models refuses to start without their files,
    rather than take tasks it cannot run."""
    from models.weights import missing, models_dir

    needing = sorted({t.queue for t in TASK_TYPES.values() if t.model_files and t.queue in queues})
    if needing and (absent := missing()):
        raise ConfigError(
            f"queue {', '.join(needing)} needs model files missing from {models_dir()}: "
            f"{', '.join(absent)}; run `frameq models pull`"
        )


@click.command()
@click.option("--every", type=float, help="Run again every this many seconds (else once).")
def reconcile(every: float | None) -> None:
    """Re-queue tasks of dead workers and tasks whose message the broker lost."""
    settings, runtime, dispatcher = _distributed()
    while True:
        try:
            done = reconcile_once(runtime.repo, dispatcher, settings, runtime.retry, runtime.store)
            click.echo(
                f"requeued {len(done.requeued)}, failed {len(done.failed)}, sent {len(done.sent)}, "
                f"deleted {done.collected} objects"
            )
        except Exception as exc:  # a database or broker blip: the next round tries again
            if every is None:
                raise
            click.echo(f"reconcile failed, again in {every:g}s: {type(exc).__name__}: {exc}", err=True)
        if every is None:
            return
        time.sleep(every)


@click.command()
@click.option("--port", type=int, default=5555, show_default=True)
def flower(port: int) -> None:
    """Serve Flower (workers, tasks, queues) for the same app."""
    from workers.celery_app import make_app

    make_app(Settings.from_env()).start(["flower", f"--port={port}", "--address=127.0.0.1"])
