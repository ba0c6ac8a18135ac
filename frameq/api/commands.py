"""`frameq api` and `frameq keys`: serving the HTTP API, and the tenants' keys."""

from __future__ import annotations

import os

import click

from orchestrator.db import make_engine, make_sessions, upgrade
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings
from orchestrator.tenants import Tenants


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--local-workers",
    type=click.IntRange(0, 64),
    help="Embedded mode: worker processes running the tasks here; default half the cores (at least 1).",
)
def api(host: str, port: int, local_workers: int | None) -> None:
    """Serve the HTTP API and the dashboard. Without FRAMEQ_BROKER_URL it also runs the jobs
    (a local pool of workers); with it, it records and queues them for the Celery workers."""
    import uvicorn

    from frameq.api.app import create_app

    settings = Settings.from_env()
    workers = 0 if not settings.embedded else local_workers
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) // 2)
    mode = "embedded" if settings.embedded else "distributed"
    click.echo(
        f"frameq api on http://{host}:{port} ({mode}, {workers} local workers); dashboard at /", err=True
    )
    uvicorn.run(create_app(settings, workers), host=host, port=port, log_level="warning")


def _tenants() -> Tenants:
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    if settings.embedded:
        upgrade(engine)
    return Tenants(make_sessions(engine))


@click.group()
def keys() -> None:
    """API keys of the HTTP API's tenants."""


@keys.command("create")
@click.option("--tenant", required=True, help="Its name (made if new).")
@click.option("--max-active-jobs", type=click.IntRange(1), help="Jobs queued or running at once; default 8.")
@click.option(
    "--max-queued-frames", type=click.IntRange(1), help="Frames of unfinished jobs; default 100000."
)
@click.option(
    "--prefix", "prefixes", multiple=True, help="A store folder (e.g. uploads/acme/) it may submit from."
)
def keys_create(
    tenant: str, max_active_jobs: int | None, max_queued_frames: int | None, prefixes: tuple[str, ...]
) -> None:
    """Make a key for TENANT and print it (it is shown only this once)."""
    tenants = _tenants()
    found = tenants.ensure(
        tenant,
        max_active_jobs=max_active_jobs,
        max_queued_frames=max_queued_frames,
        prefixes=list(prefixes) if prefixes else None,
    )
    new = tenants.create_key(found.name)
    click.echo(f"tenant {found.name}: key {new.id} (webhook secret: {found.webhook_secret})", err=True)
    click.echo(new.key)


@keys.command("list")
@click.option("--tenant", help="Only this tenant's.")
def keys_list(tenant: str | None) -> None:
    """Keys by id (the keys themselves are not kept)."""
    for key in _tenants().keys(tenant):
        revoked = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "live"
        click.echo(f"{key.id}  {key.tenant:<20} {key.created_at:%Y-%m-%d %H:%M}  {revoked}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id: requests with it are refused from now on."""
    if not _tenants().revoke_key(key_id):
        raise ConfigError(f"no live key {key_id!r} (frameq keys list shows them)")
    click.echo(f"revoked {key_id}")
