"""The FastAPI application: routers, error answers, health, and the process's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text

from frameq.api import batches, jobs, metrics
from frameq.api.auth import CurrentServices, CurrentTenant
from frameq.api.services import Services
from orchestrator.recipes import RECIPES
from orchestrator.settings import Settings
from orchestrator.styles import catalogue


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

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _plain(exc.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


def _plain(errors: Any) -> Any:
    """Validation errors as JSON: pydantic may put the offending object itself in `ctx`."""
    return [{k: (str(v) if k == "ctx" else v) for k, v in e.items() if k != "url"} for e in errors]


_meta = APIRouter(tags=["service"])


@_meta.get("/healthz", summary="The process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@_meta.get("/readyz", summary="The database, the store and the broker answer")
def readyz(svc: CurrentServices) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with svc.repo.sessions() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"{type(exc).__name__}: {exc}"
    try:
        svc.store.exists("readyz-probe")
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"{type(exc).__name__}: {exc}"
    if svc.dispatcher is not None:
        try:
            svc.dispatcher.queue_depths()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"{type(exc).__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


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
        }
        for r in RECIPES.values()
    ]


@_meta.get("/v1/styles", summary="Every style shipped (params.style takes the first field)")
def styles(_tenant: CurrentTenant) -> list[dict[str, str]]:
    return [{"style": value, "name": name, "source": source} for value, name, source in catalogue()]
