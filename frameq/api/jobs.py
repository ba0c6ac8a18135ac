"""`/v1/jobs`: submit, watch, list, download, cancel; the webhook log of a job.

A tenant sees only its own jobs: another tenant's job answers 404, as a job that does not exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from starlette.requests import ClientDisconnect

from frameq.api.auth import CurrentServices, CurrentTenant
from frameq.api.schemas import (
    BATCH_ID,
    AttemptOut,
    DeliveryOut,
    JobByReference,
    JobOut,
    JobPage,
    RecipeParams,
    StageOut,
    one_line,
    problems,
)
from frameq.api.services import Services
from frameq.api.uploads import FORM_BYTES, Form, UploadedFile, UploadError, read_form
from orchestrator.background import parse_background, parse_colour
from orchestrator.dispatch import PRIORITIES, priority_name
from orchestrator.dispatch import PRIORITY_NAMES as PRIORITY_NAMES  # dashboard.py names it from here
from orchestrator.errors import (
    ConfigError,
    FrameqError,
    InputError,
    JobNotFound,
    LimitReached,
    StoreRefused,
    TransientError,
    Unreachable,
)
from orchestrator.inputs import output_suffix_for
from orchestrator.masks import parse_mask
from orchestrator.outputs import output_keys
from orchestrator.params import PictureOptions, parse_point, parse_ratio
from orchestrator.recipes import MATTE_STAGE, Recipe, get_recipe
from orchestrator.repository import (
    IdempotencyKeyTaken,
    JobFilter,
    JobView,
    Origin,
    StageView,
    TenantGone,
    check_limits,
)
from orchestrator.schema import FINISHED_JOB_STATES, Job, JobState, TaskState, Tenant
from orchestrator.store import LocalStore, check_key
from orchestrator.styles import STORE_PREFIX, StyleChoice, names_a_file, parse_style
from orchestrator.submit import new_id, submit
from orchestrator.webhooks import check_url

log = logging.getLogger("frameq.api")
router = APIRouter(prefix="/v1", tags=["jobs"])

FILE_FIELDS = {"file", "style_file", "background_file", "mask_file"}
RETRY_AFTER_S = 30  # a tenant at its limit: about how long a job takes to make room
BUSY_RETRY_S = 5  # the database busy (locked, a serialization failure): it passes in moments
# Submissions being recorded at once. Each may copy an upload of up to FRAMEQ_MAX_UPLOAD_MB into
# the store or download a store reference: they get threads of their own, never all of the pool
# every other route runs in (a few at a time fill the disk's or the network's bandwidth anyway).
RECORDING = CapacityLimiter(4)
PAGE_MAX = 200
JSON_BYTES = 64 * 1024  # a job by reference is a few hundred bytes: a larger body is refused unread
KEY_CHARS, URL_CHARS = 1024, 2048  # the JSON form's limits (schemas.JobByReference), for both forms
ID_FORM = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what new_id makes, with room; anything else is no job
# Media types a result may be sent as (FileResponse guesses from the output's suffix).
RESULT_TYPES = (
    *("image/png", "image/jpeg", "image/webp"),
    *("video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-m4v"),
    "application/octet-stream",
)


@dataclass
class Submission:
    """A request to make a job, parsed and checked, before anything is recorded."""

    recipe: Recipe
    params: RecipeParams
    priority: str
    webhook_url: str | None
    name: str  # the input as errors and listings name it
    source: Path | None = None  # an upload's spool file
    source_key: str | None = None  # or an object already in the store
    files: dict[str, Any] = field(default_factory=dict)  # style_file, background_file, mask_file
    fingerprint: dict[str, Any] = field(default_factory=dict)  # what idempotency compares
    batch: str | None = None  # an id from POST /v1/batches (or the client's own)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, detail, headers)


def _printable(text: str) -> bool:
    """No control characters, and no lone surrogates (which no file system, database or JSON
    answer takes): what a key or URL may hold."""
    return all(unicodedata.category(c) not in ("Cc", "Cs") for c in text)


def _check_store_key(key: str, tenant: Tenant) -> str:
    """A store key the tenant may read: a plain relative key inside one of its prefixes."""
    if len(key) > KEY_CHARS:
        raise _problem(422, f"store key {key[:80]!r}...: at most {KEY_CHARS} characters")
    try:
        check_key(key)
    except ConfigError as exc:
        raise _problem(422, str(exc)) from None
    if not any(key.startswith(prefix) for prefix in tenant.prefixes):
        raise _problem(422, f"store key {key!r} is outside this tenant's prefixes")
    return key


def _parse(form_fields: dict[str, str], tenant: Tenant) -> tuple[Recipe, RecipeParams, str, str | None]:
    name = form_fields.get("recipe", "")
    if len(name) > 64:  # as the JSON form's limit: no recipe has a longer name
        raise _problem(422, f"recipe: unknown recipe {name[:20]!r}... (at most 64 characters)")
    try:
        recipe = get_recipe(name)
    except FrameqError as exc:
        raise _problem(422, str(exc)) from None
    try:
        params = RecipeParams.model_validate_json(form_fields.get("params") or "{}")
    except ValidationError as exc:
        raise _problem(422, one_line(exc.errors(), "params")) from None
    priority = form_fields.get("priority", "normal")
    if priority not in PRIORITIES:
        raise _problem(422, f"priority must be one of {', '.join(PRIORITIES)}, got {priority[:20]!r}")
    webhook = form_fields.get("webhook_url") or None
    return recipe, params, priority, webhook


def _check_webhook(url: str, allow_private: bool) -> None:
    """A URL frameq may call: printable, http(s), and (unless allowed) to a public address."""
    if len(url) > URL_CHARS or not _printable(url) or any(c.isspace() for c in url):
        raise _problem(422, f"webhook_url: at most {URL_CHARS} characters, without spaces or control ones")
    try:
        check_url(url, allow_private)
    except ConfigError as exc:
        raise _problem(422, f"webhook_url: {exc}") from None
    except ValueError as exc:  # urlsplit: a broken [IPv6] host, a port out of range
        raise _problem(422, f"webhook_url: not a URL ({exc})") from None


def _style(params: RecipeParams, form: Form | None, tenant: Tenant) -> StyleChoice:
    style = None
    if params.style is not None:
        if names_a_file(params.style):
            raise _problem(422, "style: a picture or checkpoint comes as the style_file part, not a path")
        if params.style.strip().startswith(STORE_PREFIX):
            _check_store_key(params.style.strip()[len(STORE_PREFIX) :], tenant)
        style = parse_style(params.style)
    upload = form.files.get("style_file") if form else None
    if upload is not None:
        if style is not None:
            raise _problem(422, "give the style as params.style or as style_file, not both")
        with _named_as_sent(upload):
            # "name": what the workers' errors call it, rather than its spool file
            style = parse_style(str(upload.path)) | {"name": upload.name}
    return StyleChoice(
        style=style,
        strength=params.strength,
        preserve_colour=params.preserve_colour,
        size=params.style_size,
        stabilise=params.stabilise,
    )


def _background(params: RecipeParams, form: Form | None) -> dict[str, Any] | None:
    upload = form.files.get("background_file") if form else None
    if params.background is not None and upload is not None:
        raise _problem(422, "give the background as params.background or as background_file, not both")
    if params.background is not None:
        colour = parse_colour(params.background)
        if colour is None:
            raise _problem(422, f"background {params.background!r}: a colour (#RRGGBB, R,G,B or a name)")
        return {"colour": colour}
    if upload is not None:
        with _named_as_sent(upload):
            return parse_background(str(upload.path))
    return None


def _mask(form: Form | None) -> dict[str, Any] | None:
    upload = form.files.get("mask_file") if form else None
    if upload is None:
        return None
    with _named_as_sent(upload):
        return parse_mask(str(upload.path))


@contextmanager
def _named_as_sent(upload: UploadedFile) -> Iterator[None]:
    """An upload refused by what it holds is named as the client sent it: the refusal would
    otherwise name its spool file, a path of the server's."""
    try:
        yield
    except InputError as exc:
        raise _problem(422, f"{upload.field} {upload.name!r}: {exc.problem}") from None


def request_hash(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def job_out(view: JobView, stages: list[StageView] | None = None) -> JobOut:
    job = view.job
    total = job.frames_total
    progress = 1.0 if job.state == JobState.DONE else (view.frames_done / total if total else 0.0)
    return JobOut(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        recipe=job.recipe,
        input_name=job.input_name,
        priority=priority_name(job.priority),
        batch_id=job.batch_id,
        progress=round(min(progress, 1.0), 4),
        frames_done=total if job.state == JobState.DONE else view.frames_done,
        frames_total=total,
        current_stage=view.current_stage,
        stages=[_stage_out(s) for s in stages] if stages is not None else None,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result_url=f"/v1/jobs/{job.id}/result" if job.state == JobState.DONE else None,
        webhook_url=job.webhook_url,
    )


def _stage_out(stage: StageView) -> StageOut:
    states = stage.tasks_by_state
    for state in (
        TaskState.FAILED,
        TaskState.RUNNING,
        TaskState.CANCELLED,
        TaskState.READY,
        TaskState.WAITING,
    ):
        if states.get(state):
            summary = str(state)
            break
    else:
        summary = TaskState.DONE
    return StageOut(
        stage=stage.stage,
        state=summary,
        frames_done=stage.frames_done,
        frames_total=stage.frames_total,
        tasks=states,
        started_at=stage.started_at,
        finished_at=stage.finished_at,
    )


def own_job(svc: Services, tenant: Tenant, job_id: str) -> Job:
    """The tenant's job, or 404 (the same answer whether it exists for another tenant or not)."""
    try:
        # An id of another form is no job of anyone's: it is not looked up at all.
        job = svc.repo.get_job(job_id) if ID_FORM.fullmatch(job_id) else None
    except JobNotFound:
        job = None
    if job is None or job.tenant != tenant.name:
        raise _problem(404, f"no job {job_id[:80]!r}")
    return job


def _room_for_one_more(svc: Services, tenant: Tenant, idempotency_key: str | None) -> None:
    """LimitReached when the tenant is at its limits now: told before its upload is read. The
    retry of a request that made a job is let through (it is answered with that job). Only a
    first look: the transaction that records the job checks again, one submission at a time."""
    if idempotency_key is not None and svc.repo.find_idempotent(tenant.name, idempotency_key) is not None:
        return
    active, frames = svc.repo.tenant_load(tenant.name)
    check_limits(tenant.name, active, frames, tenant.max_active_jobs, tenant.max_queued_frames)


def _record(svc: Services, tenant: Tenant, sub: Submission, idempotency_key: str | None) -> tuple[Job, bool]:
    """Record the job (blocking: the upload goes to the store; run with RECORDING's threads).
    (job, made now)."""
    fingerprint = request_hash(sub.fingerprint)
    if idempotency_key is not None:
        earlier = svc.repo.find_idempotent(tenant.name, idempotency_key)
        if earlier is not None:
            return _same_request(earlier, fingerprint), False
    # What the request asks is checked before the tenant's load: a wrong request is wrong at
    # any load. Both may wait on the network (DNS, the store): this runs in a worker thread.
    if sub.webhook_url is not None:
        _check_webhook(sub.webhook_url, svc.settings.webhook_allow_private)
    style_key = (sub.files["style"].style or {}).get("key")
    if style_key is not None and not svc.store.exists(style_key):
        raise _problem(422, f"style: no object {style_key!r} in the store")
    params = sub.params
    alpha = sub.recipe.alpha
    suffix = output_suffix_for(
        Path(sub.name), Path(f"output.{params.format}") if params.format else None, alpha
    )
    origin = Origin(
        tenant.name,
        sub.webhook_url,
        idempotency_key,
        fingerprint,
        max_active_jobs=tenant.max_active_jobs,
        max_queued_frames=tenant.max_queued_frames,
    )
    try:
        ratio = parse_ratio(params.ratio) if params.ratio else None
        at = parse_point(params.at) if params.at else None
        person = parse_point(params.person) if params.person else None
    except ConfigError as exc:
        raise _problem(422, f"params: {exc}") from None
    kwargs: dict[str, Any] = {
        "priority": PRIORITIES[sub.priority],
        "batch_id": sub.batch,
        "background": sub.files.get("background"),
        "also_outputs": (MATTE_STAGE,) if params.with_matte else (),
        "style": sub.files["style"],
        "picture": PictureOptions(
            ratio, at, params.strip_metadata, params.srgb, person, params.fine_edges, sub.files.get("mask")
        ),
        "job_id": new_id(),
        "name": sub.name,
        "origin": origin,
    }
    try:
        if sub.source_key is not None:
            try:
                with svc.store.reading(sub.source_key) as local:
                    job = submit(svc.repo, svc.store, svc.settings, local, sub.recipe.name, suffix, **kwargs)
            except FileNotFoundError:  # submit itself turns a file it cannot read into a failed job
                raise _problem(422, f"source: no object {sub.source_key!r} in the store") from None
        else:
            assert sub.source is not None
            job = submit(svc.repo, svc.store, svc.settings, sub.source, sub.recipe.name, suffix, **kwargs)
    except IdempotencyKeyTaken:  # the same key sent twice at once: the other request made the job
        earlier = svc.repo.find_idempotent(tenant.name, idempotency_key or "")
        if earlier is None:  # and has let go of it since (it failed on the server's side)
            raise _problem(
                503, "this Idempotency-Key is in use by another request", {"Retry-After": str(BUSY_RETRY_S)}
            ) from None
        return _same_request(earlier, fingerprint), False
    except TenantGone:  # between the key's check and the job: the tenant was removed
        raise _problem(401, "this key's tenant is gone", {"WWW-Authenticate": "Bearer"}) from None
    if svc.dispatcher is not None and job.state != JobState.FAILED:
        try:
            svc.dispatcher.send([t.id for t in svc.repo.tasks(job.id) if t.state == TaskState.READY])
        except Exception as exc:  # the job is recorded: the reconciler sends it once the broker is back
            log.warning("job %s recorded but not sent (the reconciler will): %s", job.id, exc)
    return job, True


def _same_request(job: Job, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise _problem(422, "this Idempotency-Key was used with another request")
    return job


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    summary="Submit a job",
    responses={
        200: {"model": JobOut, "description": "The job made earlier with this Idempotency-Key"},
        **problems(400, 413, 415, 422, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["recipe"],
                        "properties": {
                            "file": {"type": "string", "format": "binary", "description": "The media"},
                            "source": {"type": "string", "description": "Or a store key"},
                            "recipe": {"type": "string"},
                            "params": {"type": "string", "description": "RecipeParams as JSON"},
                            "priority": {"type": "string", "enum": list(PRIORITIES)},
                            "webhook_url": {"type": "string"},
                            "batch": {"type": "string", "pattern": BATCH_ID.pattern},
                            "style_file": {"type": "string", "format": "binary"},
                            "background_file": {"type": "string", "format": "binary"},
                            "mask_file": {"type": "string", "format": "binary"},
                        },
                    }
                },
                "application/json": {"schema": {"$ref": "#/components/schemas/JobByReference"}},
            },
        }
    },
)
async def create_job(request: Request, svc: CurrentServices, tenant: CurrentTenant) -> Response:
    """Upload media (multipart, streamed to the store) or name an object in the store (JSON)."""
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise _problem(422, "Idempotency-Key must be 1 to 255 characters")
    content_type = request.headers.get("content-type", "")
    form: Form | None = None
    try:
        await run_in_threadpool(_room_for_one_more, svc, tenant, idempotency_key)
        if content_type.lower().startswith("application/json"):
            sub = _by_reference(await _json_body(request), tenant)
        else:
            # A declared length over the limit is refused before a byte of the body is read
            # (a digit string too long to be a size is over any limit).
            length = request.headers.get("content-length", "")
            allowed = svc.settings.max_upload_bytes + FORM_BYTES  # the form's own parts and headers
            if length.isdigit() and (len(length) > 18 or int(length) > allowed):
                raise _problem(413, f"upload larger than the limit of {svc.settings.max_upload_mb:g} MiB")
            try:
                form = await read_form(
                    content_type,
                    request.stream(),
                    svc.settings.home / "uploads",
                    svc.settings.max_upload_bytes,
                    FILE_FIELDS,
                )
            except UploadError as exc:
                raise _problem(exc.status, str(exc)) from None
            sub = _by_upload(form, tenant)
        sub.files["style"] = _style(sub.params, form, tenant)
        sub.files["background"] = _background(sub.params, form)
        sub.files["mask"] = _mask(form)
        job, made = await anyio.to_thread.run_sync(
            _record, svc, tenant, sub, idempotency_key, limiter=RECORDING
        )
        view = await run_in_threadpool(svc.repo.view, job.id)
    except ClientDisconnect:  # the client left mid-body: read_form removed what it spooled
        raise _problem(400, "the request body was cut off") from None
    except OperationalError as exc:  # SQLite's "database is locked", PostgreSQL's serialization failures
        log.warning("job not recorded: the database is busy: %s", exc)
        raise _problem(
            503, "the database is busy or does not answer: try again", {"Retry-After": str(BUSY_RETRY_S)}
        ) from None
    except LimitReached as exc:
        raise _problem(429, f"{exc}: try again later", {"Retry-After": str(RETRY_AFTER_S)}) from None
    except (Unreachable, TransientError, StoreRefused) as exc:  # the server's side, not the request's
        log.warning("job not recorded: %s", exc)
        raise _problem(
            503, f"cannot record the job now: {exc}", {"Retry-After": str(RETRY_AFTER_S)}
        ) from None
    except FrameqError as exc:  # the request's: a recipe, a style, a background or a file it refuses
        raise _problem(422, str(exc)) from None
    finally:
        if form is not None:
            form.close()
    body = job_out(view).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if made else 200, headers={"Location": f"/v1/jobs/{job.id}"})


async def _json_body(request: Request) -> bytes:
    """The body, read up to JSON_BYTES: a client cannot make the server hold more."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > JSON_BYTES:
            raise _problem(413, f"a JSON body is at most {JSON_BYTES // 1024} KiB (media comes as multipart)")
    return bytes(body)


def _by_upload(form: Form, tenant: Tenant) -> Submission:
    recipe, params, priority, webhook = _parse(form.fields, tenant)
    upload, key = form.files.get("file"), form.fields.get("source")
    if (upload is None) == (key is None):
        raise _problem(422, "give the media as the file part or a store key as source (one of them)")
    files = {name: f.sha256 for name, f in form.files.items()}
    fingerprint = {
        "recipe": recipe.name,
        "params": params.model_dump(),
        "priority": priority,
        "webhook": webhook,
    }
    batch = _batch(form.fields.get("batch"))
    fingerprint |= {"files": files, "source": key, "batch": batch}
    if upload is not None:
        return Submission(
            recipe,
            params,
            priority,
            webhook,
            upload.name,
            source=upload.path,
            fingerprint=fingerprint,
            batch=batch,
        )
    assert key is not None
    key = _check_store_key(key, tenant)
    return Submission(
        recipe, params, priority, webhook, key, source_key=key, fingerprint=fingerprint, batch=batch
    )


def _batch(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not BATCH_ID.fullmatch(value):
        raise _problem(422, f"batch: 1 to 16 letters, digits, - or _, got {value[:20]!r}")
    return value


def _by_reference(body: bytes, tenant: Tenant) -> Submission:
    try:
        request = JobByReference.model_validate_json(body)
    except ValidationError as exc:
        raise _problem(422, one_line(exc.errors())) from None
    recipe, _, _, _ = _parse({"recipe": request.recipe}, tenant)
    key = _check_store_key(request.source, tenant)
    fingerprint = {"json": request.model_dump()}
    return Submission(
        recipe,
        request.params,
        request.priority,
        request.webhook_url,
        key,
        source_key=key,
        fingerprint=fingerprint,
        batch=request.batch,
    )


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first", responses=problems(422))
def list_jobs(
    svc: CurrentServices,
    tenant: CurrentTenant,
    state: Annotated[JobState | None, Query()] = None,
    recipe: Annotated[str | None, Query(max_length=64)] = None,
    batch: Annotated[str | None, Query(pattern=BATCH_ID.pattern)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    before = _cursor(cursor) if cursor else None
    where = JobFilter(tenant=tenant.name, state=state, recipe=recipe, batch_id=batch, before=before)
    views = svc.repo.list_jobs(limit + 1, where)
    page = [job_out(v) for v in views[:limit]]
    next_cursor = None
    if len(views) > limit:
        last = views[limit - 1].job
        next_cursor = base64.urlsafe_b64encode(f"{last.created_at.isoformat()}|{last.id}".encode()).decode()
    return JobPage(jobs=page, next_cursor=next_cursor)


def _cursor(text: str) -> tuple[datetime, str]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(text.encode()).decode().partition("|")
        when = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError):
        raise _problem(422, "cursor: not one this API gave") from None
    if not ID_FORM.fullmatch(job_id):
        raise _problem(422, "cursor: not one this API gave")
    if when.tzinfo is not None:  # the table's times are naive UTC
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when, job_id


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job's state and progress per stage")
def get_job(job_id: str, svc: CurrentServices, tenant: CurrentTenant) -> JobOut:
    own_job(svc, tenant, job_id)
    return job_out(svc.repo.view(job_id), svc.repo.stages(job_id))


@router.get(
    "/jobs/{job_id}/result",
    summary="Download the result",
    responses={
        200: {"content": {t: {} for t in RESULT_TYPES}, "description": "The file"},
        307: {"description": "Presigned URL"},
        **problems(409, 410, 501, 503),
    },
)
def get_result(
    job_id: str,
    svc: CurrentServices,
    tenant: CurrentTenant,
    output: Annotated[str, Query(pattern="^(result|matte)$")] = "result",
) -> Response:
    """The output file: streamed from the local store, or a redirect to a presigned S3 URL."""
    job = own_job(svc, tenant, job_id)
    if job.state != JobState.DONE or not job.output_key:
        raise _problem(409, f"job {job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
    keys = output_keys(job)
    key = keys[0] if output == "result" else keys[1] if len(keys) > 1 else None
    if key is None:
        raise _problem(404, f"job {job_id} kept no matte (submit with params.with_matte)")
    stem = PurePosixPath(job.input_name).stem or "result"
    filename = f"{stem}-{job.recipe}{'-matte' if output == 'matte' else ''}{PurePosixPath(key).suffix}"
    gone = _problem(410, f"job {job_id}: its result has been deleted (FRAMEQ_OUTPUTS_TTL_DAYS)")
    if isinstance(svc.store, LocalStore):
        path = svc.store.path(key)
        if not path.is_file():
            raise gone
        return FileResponse(path, filename=filename)
    presign = getattr(svc.store, "presigned_url", None)
    if presign is None:
        raise _problem(501, "this store cannot hand out downloads")
    try:
        stored = svc.store.exists(key)  # one HEAD: a URL to an object deleted would answer 404 later
    except (TransientError, StoreRefused) as exc:
        log.warning("result of job %s not looked up: %s", job_id, exc)
        raise _problem(503, "the store does not answer", {"Retry-After": str(RETRY_AFTER_S)}) from None
    if not stored:
        raise gone
    return RedirectResponse(presign(key), status_code=307)


@router.delete("/jobs/{job_id}", response_model=JobOut, summary="Cancel a job", responses=problems(409))
def cancel_job(job_id: str, svc: CurrentServices, tenant: CurrentTenant) -> JobOut:
    """Queued tasks are dropped, running ones stop at their next batch. A finished job: 409."""
    job = own_job(svc, tenant, job_id)
    if not svc.repo.cancel_job(job_id):
        raise _problem(409, f"job {job_id} is {job.state} already")
    return job_out(svc.repo.view(job_id))


@router.get("/jobs/{job_id}/webhooks", response_model=list[DeliveryOut], summary="The job's webhook log")
def webhook_log(job_id: str, svc: CurrentServices, tenant: CurrentTenant) -> list[DeliveryOut]:
    own_job(svc, tenant, job_id)
    return [
        DeliveryOut(
            id=d.id,
            message_id=d.message_id,
            event=d.event,
            url=d.url,
            state=d.state,
            attempts=[
                AttemptOut(at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
                for a in attempts
            ],
            next_attempt_at=d.next_attempt_at if d.state == "pending" else None,
            delivered_at=d.delivered_at,
        )
        for d, attempts in svc.webhooks.deliveries(job_id)
    ]


@router.post(
    "/jobs/{job_id}/webhooks/replay",
    status_code=202,
    summary="Send the job's webhooks again",
    responses=problems(409),
)
def replay_webhooks(job_id: str, svc: CurrentServices, tenant: CurrentTenant) -> dict[str, int]:
    job = own_job(svc, tenant, job_id)
    if not job.webhook_url:
        raise _problem(409, f"job {job_id} has no webhook")
    if job.state not in FINISHED_JOB_STATES:  # its webhook is called when it ends
        raise _problem(409, f"job {job_id} has not finished")
    return {"replayed": svc.webhooks.replay(job_id)}
