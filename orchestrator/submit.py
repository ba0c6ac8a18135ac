"""Submitting work: validate, copy the input into the store, record the job."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.background import background_key
from orchestrator.errors import InputError, RecipeError, StoreRefused, TransientError
from orchestrator.inputs import check_file, kind_of
from orchestrator.masks import mask_key
from orchestrator.params import NO_PICTURE_OPTIONS, JobParams, PictureOptions
from orchestrator.recipes import MATTE_STAGE, Recipe, get_recipe
from orchestrator.repository import Origin, Repository
from orchestrator.schema import Job
from orchestrator.settings import Settings
from orchestrator.store import Store, output_key, source_key
from orchestrator.styles import NO_STYLE_ASKED, StyleChoice, parse_style, style_key


def new_id() -> str:
    return secrets.token_hex(6)


def job_params(
    settings: Settings,
    output_suffix: str,
    background: dict[str, Any] | None = None,
    also_outputs: tuple[str, ...] = (),
    style: StyleChoice = NO_STYLE_ASKED,
    picture: PictureOptions = NO_PICTURE_OPTIONS,
) -> JobParams:
    """What this job fixes now, from the submitter's settings: its workers read it, not their own."""
    return JobParams(
        output_suffix=output_suffix,
        crf=settings.crf,
        preset=settings.preset,
        segment_s=settings.segment_s,
        batch_frames=settings.batch_frames,
        max_pixels=settings.max_pixels,
        matte_model=settings.matte_model,
        background=background,
        also_outputs=also_outputs,
        keep_intermediates=settings.keep_intermediates,
        style=style.style,
        style_strength=style.strength,
        preserve_colour=style.preserve_colour,
        style_size=style.size,
        stabilise=style.stabilise,
        crop_ratio=picture.ratio,
        remove_at=picture.at,
        person_at=picture.person,
        fine_edges=picture.fine_edges,
        mask=picture.mask,
        strip_metadata=picture.strip_metadata,
        srgb=picture.srgb,
    )


def _style(recipe: Recipe, choice: StyleChoice) -> StyleChoice:
    """The style the job paints with: the one asked, else the recipe's own; none if it paints not."""
    if recipe.default_style is None:
        if choice.asked():
            raise RecipeError(f"recipe {recipe.name} does not paint: a style and its options do not apply")
        return choice
    if choice.style is None:
        return replace(choice, style=parse_style(recipe.default_style))
    return choice


def check_request(
    recipe: str,
    background: dict[str, Any] | None,
    style: StyleChoice,
    also_outputs: tuple[str, ...],
    picture: PictureOptions = NO_PICTURE_OPTIONS,
) -> StyleChoice:
    """The caller's mistakes, before any job is recorded: a recipe's background and outputs as
    it takes them. Returns the style the job paints with."""
    spec = get_recipe(recipe)
    if spec.background == "required" and background is None:
        raise RecipeError(
            f"recipe {recipe} needs --background: a colour (#RRGGBB, R,G,B, a name) or an image or video"
        )
    if spec.background == "none" and background is not None:
        raise RecipeError(f"recipe {recipe} takes no --background")
    if background is not None:
        kind = "colour" if "colour" in background else background["kind"]
        if kind not in spec.background_kinds:
            raise RecipeError(
                f"recipe {recipe}: --background must be {' or '.join(spec.background_kinds)}, not {kind}"
            )
    if picture.ratio is not None and not spec.takes_ratio:
        raise RecipeError(f"recipe {recipe} takes no aspect ratio (crop does)")
    if picture.more_ratios:
        raise RecipeError("a job cuts one aspect ratio: `frameq run` and `submit` make one job for each")
    if picture.at is not None and not spec.takes_point:
        raise RecipeError(f"recipe {recipe} takes no point to remove at (inpaint does)")
    if picture.person is not None and not spec.has_stage(MATTE_STAGE):
        raise RecipeError(f"recipe {recipe} mattes nobody: no person to pick")
    if picture.fine_edges and not spec.has_stage(MATTE_STAGE):
        raise RecipeError(f"recipe {recipe} mattes nobody: no edges to refine")
    if spec.takes_mask and picture.mask is None:
        raise RecipeError(
            f"recipe {recipe} needs --mask (over HTTP, mask_file): an image, white where to remove, "
            "or a video of masks"
        )
    if picture.mask is not None and not spec.takes_mask:
        raise RecipeError(f"recipe {recipe} takes no --mask (erase does)")
    style = _style(spec, style)
    for stage in also_outputs:
        if stage == spec.output:
            raise RecipeError(f"recipe {recipe}: the {stage} is its output already")
        if not spec.has_stage(stage):
            raise RecipeError(f"recipe {recipe} has no {stage} stage to write as well")
    return style


def submit(
    repo: Repository,
    store: Store,
    settings: Settings,
    path: Path,
    recipe: str,
    output_suffix: str,
    *,
    priority: int = 0,
    batch_id: str | None = None,
    background: dict[str, Any] | None = None,
    also_outputs: tuple[str, ...] = (),
    style: StyleChoice = NO_STYLE_ASKED,
    picture: PictureOptions = NO_PICTURE_OPTIONS,
    job_id: str | None = None,
    name: str | None = None,
    origin: Origin | None = None,
) -> Job:
    """Record a job for `path`. A bad input still gets a job row, failed with the reason.
    A store that refuses for good fails the job too, then raises StoreRefused: every other
    submission would meet the same refusal.

    `background` is what parse_background made of `--background`, for recipes that use one;
    `also_outputs` names earlier stages to assemble as outputs of their own (the matte);
    `style`, what the style stage paints with (a picture or a checkpoint is uploaded too).
    `job_id`, when the caller chose it (new_id), lets it cancel the job should it be
    interrupted while this runs. `name` is how errors name the input (an upload's own file
    name rather than where it was spooled); `origin`, who submitted it over HTTP.
    """
    style = check_request(recipe, background, style, also_outputs, picture)
    job_id = job_id or new_id()
    stored_background = dict(background or {})
    if "path" in stored_background:
        stored_background["key"] = background_key(job_id, Path(stored_background["path"]).suffix)
    stored_style = dict(style.style or {})
    if "path" in stored_style:
        stored_style["key"] = style_key(job_id, Path(stored_style["path"]).suffix)
    style = replace(style, style=stored_style or None)
    stored_mask = dict(picture.mask or {})
    if "path" in stored_mask:
        stored_mask["key"] = mask_key(job_id, Path(stored_mask["path"]).suffix)
    picture = replace(picture, mask=stored_mask or None)
    # Files uploaded with the source, each to the key recorded for it.
    uploads = (stored_background, stored_style, stored_mask)
    attached = [(d["key"], Path(d["path"])) for d in uploads if "path" in d]
    name = name or str(path)
    job = repo.create_job(
        job_id=job_id,
        recipe=recipe,
        input_name=name,
        source_key=source_key(job_id, path.suffix),
        priority=priority,
        batch_id=batch_id,
        origin=origin,
        params=job_params(
            settings, output_suffix, stored_background or None, also_outputs, style, picture
        ).to_json(),
        image_output_key=output_key(job_id, output_suffix.lstrip(".")) if kind_of(path) == "image" else None,
    )
    try:
        check_file(path, name)  # an unknown suffix is probed as video: the probe says what it is
        repo.record_input(job_id, job.source_key, store.put_file(job.source_key, path))
        for key, local in attached:
            repo.record_input(job_id, key, store.put_file(key, local))
    except InputError as exc:
        repo.fail_job(job_id, str(exc))
    except StoreRefused as exc:  # the store's fault, not the input's: its Idempotency-Key goes free
        repo.fail_job(job_id, str(exc), server_side=True)
        raise
    except TransientError as exc:
        repo.fail_job(job_id, f"{name}: upload failed, submit again ({exc})", server_side=True)
    except OSError as exc:
        repo.fail_job(job_id, f"{name}: cannot read ({exc.strerror or exc})")
    else:
        repo.source_stored(job_id)
    return repo.get_job(job_id)
