"""The FastAPI application: routers, error answers, health, and the process's lifespan."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from frameq.api import batches, dashboard, jobs, metrics
from frameq.api.auth import CurrentServices, CurrentTenant
from frameq.api.schemas import ERRORS, JobByReference, Problem, Readiness, one_line
from frameq.api.services import Services
from orchestrator.recipes import MATTE_STAGE, RECIPES
from orchestrator.settings import Settings
from orchestrator.styles import catalogue

log = logging.getLogger("frameq.api")


def create_app(settings: Settings, local_workers: int = 0) -> FastAPI:
    """The app for these settings; in embedded mode `local_workers` processes run the tasks."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings)
        app.state.services = services
        services.start(local_workers)
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(
        title="frameq",
        version="1",
        summary="Media-processing jobs: recipes of models over videos and images",
        lifespan=lifespan,
    )
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(_meta)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_line(exc.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = " ".join(exc.detail.split()) if isinstance(exc.detail, str) else exc.detail
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, _exc: Exception) -> JSONResponse:
        # Still a 500 (and uvicorn logs the traceback), but in the form every other error has;
        # the exception's text stays in the log: it may name the server's paths.
        return JSONResponse({"detail": "internal error (the server's log has its traceback)"}, 500)

    app.add_middleware(RefuseControlCharacters)
    app.openapi = _completed(app.openapi)  # type: ignore[method-assign]
    return app


class RefuseControlCharacters:
    """Answers 400 to a URL whose path or query holds a control character (%00, %0A, ...): no
    id, name or filter of this API has one, and PostgreSQL refuses a NUL in any string, which
    would otherwise surface as a 500 from whichever query first met it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in scope.get("path", "") + query):
                answer = JSONResponse({"detail": "the URL holds a control character"}, status_code=400)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _completed(make: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI document, completed: the models of request bodies declared by hand
    (`openapi_extra`, which FastAPI does not collect), and the errors every operation may
    answer, as Problems: 400 (the URL check above), 401 and, for changes, 403 where a key is
    needed, 404 on a path with an id, and 422 in this API's one-line form rather than
    FastAPI's list of errors."""

    completed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if completed:
            return completed[0]
        schema = make()  # FastAPI's own, completed in place below
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, JobByReference):
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components |= found.pop("$defs", {})
            components[model.__name__] = found
        problem = {"$ref": "#/components/schemas/Problem"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                codes = [400]
                if operation.get("security"):
                    codes += [401] if method in ("get", "head") else [401, 403]
                if "{" in path:
                    codes.append(404)
                if "422" in responses:
                    responses["422"] = {
                        "description": ERRORS[422],
                        "content": {"application/json": {"schema": problem}},
                    }
                for code in codes:
                    responses.setdefault(
                        str(code),
                        {"description": ERRORS[code], "content": {"application/json": {"schema": problem}}},
                    )
        for name in ("HTTPValidationError", "ValidationError"):  # in that order: one names the other
            if f"#/components/schemas/{name}" not in json.dumps(schema):
                components.pop(name, None)
        completed.append(schema)
        return schema

    return openapi


_meta = APIRouter(tags=["service"])


@_meta.get("/healthz", summary="The process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@_meta.get(
    "/readyz",
    summary="The database, the store and the broker answer, and local workers are alive",
    description=(
        "In embedded mode `checks.workers` says how many of the local worker processes are "
        'alive ("2/2 alive"); the server is not ready while none is, if it should have some.'
    ),
    responses={
        200: {"model": Readiness},
        503: {"model": Readiness, "description": "Not ready: `checks` says which part does not answer"},
    },
)
def readyz(svc: CurrentServices) -> JSONResponse:
    def select_one() -> None:
        with svc.repo.sessions() as s:
            s.execute(text("SELECT 1"))

    probes: dict[str, Callable[[], object]] = {
        "database": select_one,
        "store": lambda: svc.store.exists("readyz-probe"),
    }
    if svc.dispatcher is not None:
        probes["broker"] = svc.dispatcher.queue_depths
    checks = {name: _probe(name, probe) for name, probe in probes.items()}
    ready = all(v == "ok" for v in checks.values())
    if (workers := svc.workers()) is not None:
        alive, size = workers
        checks["workers"] = f"{alive}/{size} alive"
        ready = ready and (alive > 0 or size == 0)  # a pool that lost some still runs tasks
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _probe(name: str, probe: Callable[[], object]) -> str:
    """The probe's answer: ok, or only the kind of failure. Anyone may ask /readyz, and an
    error's text names hosts, users and buckets: that goes to the log."""
    try:
        probe()
    except Exception as exc:
        log.warning("readyz: the %s does not answer: %s: %s", name, type(exc).__name__, exc)
        return f"failing ({type(exc).__name__}; the server's log has the details)"
    return "ok"


@_meta.get("/v1/recipes", summary="The recipes and what they take")
def recipes(_tenant: CurrentTenant) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "description": r.description,
            "background": r.background,
            "background_kinds": list(r.background_kinds),
            "paints": r.default_style is not None,
            "default_style": r.default_style,
            "mattes": r.has_stage(MATTE_STAGE),  # takes params.person and params.fine_edges
            "takes_ratio": r.takes_ratio,
            "takes_point": r.takes_point,
            "needs_mask": r.takes_mask,  # mask_file
        }
        for r in RECIPES.values()
    ]


@_meta.get("/v1/styles", summary="Every style shipped (params.style takes the first field)")
def styles(_tenant: CurrentTenant) -> list[dict[str, str]]:
    return [{"style": value, "name": name, "source": source} for value, name, source in catalogue()]
