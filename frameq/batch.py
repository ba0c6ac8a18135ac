"""`frameq batch`: a media library through one recipe, resumable, and what became of it.

`frameq batch SOURCE -r RECIPE -o DEST` decides what each file needs (orchestrator/batches.py),
records the new jobs in bulk, runs them (here, or on the workers when FRAMEQ_BROKER_URL is set),
copies each output into DEST's mirror of SOURCE and writes DEST/manifest.jsonl. Interrupted
(Ctrl-C, kill -9), the same command goes on where it stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from frameq import interrupts
from frameq.checks import check_device, check_output_directory
from frameq.options import job_options
from frameq.progress import ProgressBar
from orchestrator.batches import (
    Decision,
    Filters,
    already_written,
    batch_key,
    check_collisions,
    decide,
    file_size,
    fingerprint,
    identify,
    scan,
    source_id,
)
from orchestrator.dispatch import PRIORITIES, CeleryDispatcher
from orchestrator.errors import ConfigError, FrameqError, InputError, RecipeError
from orchestrator.inputs import MEDIA_SUFFIXES, check_file, kind_of
from orchestrator.outputs import copy_outputs
from orchestrator.params import PictureOptions
from orchestrator.recipes import MATTE_STAGE, get_recipe
from orchestrator.repository import BatchJob, BatchRow
from orchestrator.schema import FINISHED_JOB_STATES, JobState
from orchestrator.settings import Settings
from orchestrator.store import output_key, source_key
from orchestrator.styles import StyleChoice
from orchestrator.submit import check_request, job_params, new_id
from workers.local import reclaim_orphans, run_jobs
from workers.runtime import Runtime

MANIFEST = "manifest.jsonl"
LOCK = ".frameq-batch.lock"
CHUNK = 200  # new jobs recorded per transaction: a kill loses at most this many uploads
POLL_S = 0.5


class DefaultGroup(click.Group):
    """`frameq batch SOURCE ...` is `frameq batch run SOURCE ...`; `frameq batch status ID`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup)
def batch() -> None:
    """Process a media library (a directory tree of images and videos), resumably:
    `frameq batch SOURCE -r RECIPE -o DEST`, and `frameq batch status ID`."""


@batch.command("run")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Destination directory.")
@click.option("-r", "--recipe", default="cartoon", show_default=True, help="See `frameq recipes`.")
@click.option("--ext", help=f"Only these extensions, comma-separated (default: {','.join(MEDIA_SUFFIXES)}).")
@click.option("--include", multiple=True, help="Only paths (relative to SOURCE) matching this glob.")
@click.option("--exclude", multiple=True, help="Leave out paths matching this glob; repeatable.")
@click.option("--max-size", type=float, help="Leave out files larger than this many MB.")
@click.option("--dry-run", is_flag=True, help="List what would be done, and do nothing.")
@click.option("--skip-failed", is_flag=True, help="Leave the items that failed before as they are.")
@click.option(
    "--priority", type=click.Choice(list(PRIORITIES)), default="bulk", show_default=True, help="Job priority."
)
@click.option("--device", help="auto, cpu, cuda or cuda:N; default auto.")
@job_options
@click.option("--with-matte", is_flag=True, help="Also write each output's matte beside it.")
def run_batch(
    source: str,
    output: Path,
    recipe: str,
    ext: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    max_size: float | None,
    dry_run: bool,
    skip_failed: bool,
    priority: str,
    device: str | None,
    background: dict[str, Any] | None,
    style: StyleChoice,
    picture: PictureOptions,
    with_matte: bool,
) -> None:
    """Process every media file below SOURCE (a directory, or s3://bucket/prefix) with RECIPE
    into DEST, mirroring the tree."""
    settings = Settings.from_env(device=device)
    check_device(settings, device)
    also = (MATTE_STAGE,) if with_matte else ()
    if picture.more_ratios:  # items are files: one output each
        raise RecipeError("one aspect ratio a batch: run it once per ratio, each into its own DEST")
    style = check_request(recipe, background, style, also, picture)
    filters = Filters(
        suffixes=_suffixes(ext) if ext else MEDIA_SUFFIXES,
        include=include,
        exclude=(*exclude, *_inside(source, output)),
        max_bytes=int(max_size * 1e6) if max_size is not None else None,
    )
    # Objects of an s3:// source are downloaded here when needed (an unchanged one never is).
    settings.home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="batch-", dir=settings.home))
    click.get_current_context().call_on_close(lambda: shutil.rmtree(scratch, ignore_errors=True))
    files = scan(source, filters, scratch)
    if not files:
        raise InputError(source, "no media files the filters take")
    check_output_directory(output)
    if not dry_run:  # before deciding anything: what another run decides is stale once it ends
        _hold_destination(output)
    print_ = fingerprint(recipe, job_params(settings, ".png", background, also, style, picture).to_json())
    runtime = Runtime.open(settings)
    repo = runtime.repo
    chosen = repo.open_batch(
        new_id(), batch_key(source, output, print_), source_id(source), str(output), recipe
    )
    known = repo.known_items(chosen.id)
    items = identify(files, known, print_, get_recipe(recipe).alpha)
    check_collisions(items, also)
    already_written(items, known, output)
    forgotten = sorted(set(known) - {f.path for f in files})  # gone from the source, or filtered out
    repo.forget_items(chosen.id, forgotten)
    open_keys = [i.key for i in items if i.job_id is None]
    decision = decide(items, repo.jobs_for_keys(open_keys), retry_failed=not skip_failed)
    _say_plan(chosen.id, decision)
    if dry_run:
        for item in decision.new:
            click.echo(f"would process {item.file.path} -> {item.dest}")
        return
    # A style, background or mask file goes to the store once for the whole batch.
    stored_background = _attach(runtime, chosen.id, "background", background)
    stored_style = replace(style, style=_attach(runtime, chosen.id, "style", style.style))
    picture = replace(picture, mask=_attach(runtime, chosen.id, "mask", picture.mask))
    interrupts.install()  # on Ctrl-C: stop, keep what is done, leave the rest for the next run
    started = time.monotonic()
    interrupted = False
    pending: list[str] = []
    try:
        _record_new(
            runtime,
            chosen.id,
            recipe,
            decision,
            PRIORITIES[priority],
            stored_background,
            also,
            stored_style,
            picture,
        )
        pending = sorted({i.job_id for i in items if i.job_id and i.state not in FINISHED_JOB_STATES})
        if settings.embedded:
            reclaim_orphans(runtime, pending)
            with ProgressBar(repo, pending, enabled=sys.stderr.isatty()):
                run_jobs(runtime, pending)
        else:
            _dispatch_and_wait(runtime, settings, pending)
    except interrupts.Interrupted:
        interrupts.caught()
        interrupted = True
        if settings.embedded:
            reclaim_orphans(runtime, [i.job_id for i in items if i.job_id], mine=True)
    try:
        rows, copied, problems = _write_outputs(runtime, chosen.id, output)
    except interrupts.Interrupted:  # what was copied so far is recorded; the next run copies the rest
        interrupts.caught()
        interrupted, rows, copied, problems = True, repo.batch_report(chosen.id), 0, []
    _write_manifest(output / MANIFEST, rows)
    failed = _say_summary(chosen.id, rows)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    elapsed = time.monotonic() - started
    ran = set(pending)
    made = len({r.job_id for r in rows if r.job_id in ran and r.state == JobState.DONE})
    click.echo(
        f"this run: {made} job(s) done, {copied} output(s) copied to {output} in {elapsed:.1f}s "
        f"({made / elapsed:.1f} jobs/s)"
    )
    click.echo(f"manifest: {output / MANIFEST}")
    if interrupted:
        click.echo("interrupted: run the same command again to go on", err=True)
        sys.exit(130)
    # Embedded, a job another process runs (another batch sharing an item) may still be going.
    if under_way := sum(1 for r in rows if r.state in (JobState.QUEUED, JobState.RUNNING)):
        click.echo(f"{under_way} item(s) still under way elsewhere: run the command again later", err=True)
    if failed or problems or under_way:
        sys.exit(1)


@batch.command()
@click.argument("batch_id")
@click.option("--manifest", type=click.Path(path_type=Path), help="Write the JSON Lines manifest here.")
def status(batch_id: str, manifest: Path | None) -> None:
    """One batch: items by state, throughput, the failures with their reasons."""
    runtime = Runtime.open(Settings.from_env())
    chosen = runtime.repo.get_batch(batch_id)
    rows = runtime.repo.batch_report(batch_id)
    click.echo(f"batch {chosen.id}: {chosen.source} -> {chosen.dest} ({chosen.recipe})")
    _say_summary(chosen.id, rows)
    # by job: identical files share one
    jobs = {r.job_id: r for r in rows if r.job_id}.values()
    started = [r.started_at for r in jobs if r.started_at]
    finished = [r.finished_at for r in jobs if r.finished_at and r.state == JobState.DONE]
    if started and finished:
        span = (max(finished) - min(started)).total_seconds()
        click.echo(
            f"throughput: {len(finished)} jobs done in {span:.1f}s ({len(finished) / max(span, 1e-3):.1f}/s)"
        )
    if manifest is not None:
        _write_manifest(manifest, rows)
        click.echo(f"manifest: {manifest}")


def _hold_destination(dest: Path) -> None:
    """One `frameq batch` at a time writes into a destination: two would record the same new
    items twice and copy over each other. The lock (on DEST/.frameq-batch.lock) goes with the
    process, however it ends."""
    dest.mkdir(parents=True, exist_ok=True)
    lock = (dest / LOCK).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ConfigError(f"{dest}: another frameq batch is writing there; wait for it to end") from None
    click.get_current_context().call_on_close(lock.close)


def _suffixes(ext: str) -> tuple[str, ...]:
    chosen = tuple(f".{e.strip().lower().lstrip('.')}" for e in ext.split(",") if e.strip())
    if unknown := [s for s in chosen if s not in MEDIA_SUFFIXES]:
        raise ConfigError(f"--ext: {', '.join(unknown)} not media (known: {', '.join(MEDIA_SUFFIXES)})")
    return chosen


def _attach(runtime: Runtime, batch_id: str, name: str, spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A style, background or mask given as a file: uploaded once under the batch, by its key."""
    if spec is None or "path" not in spec:
        return spec
    path = Path(spec["path"])
    key = f"batches/{batch_id}/{name}{path.suffix.lower()}"
    if not runtime.store.exists(key):
        runtime.store.put_file(key, path)
    return {**{k: v for k, v in spec.items() if k != "path"}, "key": key, "name": path.name}


def _say_plan(batch_id: str, decision: Decision) -> None:
    states = Counter(item.state for item in decision.items)
    parts = [f"{n} {state}" for state, n in sorted(states.items())]
    click.echo(f"batch {batch_id}: {len(decision.items)} items: {', '.join(parts)}", err=True)


def _record_new(
    runtime: Runtime,
    batch_id: str,
    recipe: str,
    decision: Decision,
    priority: int,
    background: dict[str, Any] | None,
    also: tuple[str, ...],
    style: StyleChoice,
    picture: PictureOptions,
) -> None:
    """Upload each new item's input and record its job, a chunk at a time; then every item."""
    settings, store = runtime.settings, runtime.store
    job_of: dict[str, str] = {}
    chunk: list[BatchJob] = []
    bar = tqdm(total=len(decision.new), unit="file", desc="store", disable=not sys.stderr.isatty())
    with bar:
        for item in decision.new:
            job_id = new_id()
            suffix = Path(item.dest).suffix
            params = job_params(settings, suffix, background, also, style, picture).to_json()
            key = source_key(job_id, Path(item.file.path).suffix)
            size, error = 0, None
            try:
                check_file(item.file.ready(), item.file.name)
                size = store.put_file(key, item.file.ready())
            except InputError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"{item.file.path}: cannot read ({exc.strerror or exc})"
            image = kind_of(Path(item.file.path)) == "image"
            chunk.append(
                BatchJob(
                    job_id=job_id,
                    recipe=recipe,
                    input_name=item.file.name,
                    source_key=key,
                    source_size=size,
                    params=params,
                    item_key=item.key,
                    priority=priority,
                    image_output_key=output_key(job_id, suffix.lstrip(".")) if image else None,
                    error=error,
                )
            )
            job_of[item.key] = job_id
            item.job_id, item.state = job_id, JobState.QUEUED if error is None else JobState.FAILED
            bar.update()
            if len(chunk) == CHUNK:
                runtime.repo.create_batch_jobs(batch_id, chunk, [])
                chunk = []
        runtime.repo.create_batch_jobs(batch_id, chunk, [])
    for item in decision.items:
        if item.state == "duplicate":
            item.job_id = job_of[item.key]
            item.state = JobState.QUEUED
    runtime.repo.create_batch_jobs(batch_id, [], decision.items)


def _dispatch_and_wait(runtime: Runtime, settings: Settings, pending: Sequence[str]) -> None:
    """Distributed: send the ready tasks to the workers, then follow the jobs until they end
    (interrupted, the jobs go on; the next run waits for them again)."""
    dispatcher = CeleryDispatcher.from_settings(settings, runtime.repo)
    for start in range(0, len(pending), CHUNK):
        ready = runtime.repo.ready_tasks(pending[start : start + CHUNK])
        dispatcher.send(ready)
    with ProgressBar(runtime.repo, pending, enabled=sys.stderr.isatty()):
        while runtime.repo.progress(pending).jobs_finished < len(pending):
            time.sleep(POLL_S)


def _inside(source: str, dest: Path) -> tuple[str, ...]:
    """A DEST inside SOURCE is left out of it: its outputs are no new inputs."""
    if source.startswith("s3://"):
        return ()
    root, out = Path(source).resolve(), dest.resolve()
    return (f"{out.relative_to(root).as_posix()}/*",) if out.is_relative_to(root) and out != root else ()


def _write_outputs(runtime: Runtime, batch_id: str, dest: Path) -> tuple[list[BatchRow], int, list[str]]:
    """Copy every done item's output that is not in DEST yet; returns the batch's rows, how many
    outputs it copied, and the items whose output could not be copied, with why (the others are
    copied all the same)."""
    rows = runtime.repo.batch_report(batch_id)
    todo = [
        r
        for r in rows
        if r.state == JobState.DONE and (r.written_size is None or file_size(dest / r.dest) != r.written_size)
    ]
    jobs = runtime.repo.get_jobs(sorted({str(r.job_id) for r in todo}))
    written, problems = [], []
    for row in todo:
        path = dest / row.dest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            copy_outputs(runtime.store, jobs[str(row.job_id)], path)
        except (FrameqError, OSError) as exc:
            problems.append(f"{row.path}: output not written ({exc})")
            continue
        written.append((row.path, path.stat().st_size))
        if len(written) == CHUNK:  # recorded as they go: an interrupt keeps what was copied
            runtime.repo.record_written(batch_id, written)
            written = []
    runtime.repo.record_written(batch_id, written)
    return (runtime.repo.batch_report(batch_id) if todo else rows), len(todo) - len(problems), problems


def _write_manifest(path: Path, rows: Sequence[BatchRow]) -> None:
    """One JSON object a line, one line an item, atomically replaced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        for r in rows:
            record = {
                "path": r.path,
                "output": r.dest if r.state == JobState.DONE else None,
                "state": r.state or "new",
                "job": r.job_id,
                "sha256": r.sha256,
                "output_key": r.output_key if r.state == JobState.DONE else None,
                "kind": r.kind,
                "frames": r.frames,
                "error": r.error,
            }
            f.write(json.dumps(record) + "\n")
    tmp.replace(path)


def _say_summary(batch_id: str, rows: Sequence[BatchRow]) -> int:
    """Items by state, and the failures; returns how many items failed."""
    states = Counter(r.state or "new" for r in rows)
    frames = sum(r.frames or 0 for r in rows if r.state == JobState.DONE)
    parts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    click.echo(f"batch {batch_id}: {len(rows)} items: {parts} ({frames} frames done)")
    failed = [r for r in rows if r.state == JobState.FAILED]
    for r in failed:
        click.echo(f"failed {r.path}: {r.error}", err=True)
    return len(failed)
