"""`frameq api` as a real server process for the tests, and clients holding a tenant's key."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

from frameq.api.commands import keys_create
from orchestrator.db import make_engine, make_sessions
from orchestrator.settings import Settings
from orchestrator.tenants import Tenants
from tests.conftest import ROOT, free_port


class ApiServer:
    def __init__(self, env: dict[str, str], log: Path, local_workers: int = 1) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_secrets: dict[str, str] = {}  # tenant -> whsec_..., as `keys create` prints it
        self._engine: Engine | None = None  # on the server's database, for `key`
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "frameq", "api", "--port", str(self.port)]
            + (["--local-workers", str(local_workers)] if "FRAMEQ_BROKER_URL" not in env else []),
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"frameq api did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def key(self, tenant: str | None = None, *options: str) -> tuple[str, str]:
        """A new key for a tenant (a fresh one unless named): (tenant, key). Made as `frameq keys
        create --tenant TENANT OPTIONS...` makes it, options checked by that command's own
        definitions, but here, on the server's database (a process per key would cost a second
        of imports each). The tenant's webhook secret is kept in `webhook_secrets`."""
        tenant = tenant or f"t-{secrets.token_hex(4)}"
        asked = keys_create.make_context("keys create", ["--tenant", tenant, *options]).params
        if self._engine is None:
            self._engine = make_engine(Settings.from_env(self.env).database_url)
        tenants = Tenants(make_sessions(self._engine))
        found = tenants.ensure(
            tenant,
            max_active_jobs=asked["max_active_jobs"],
            max_queued_frames=asked["max_queued_frames"],
            prefixes=list(asked["prefixes"]) or None,
        )
        self.webhook_secrets[tenant] = found.webhook_secret
        return tenant, tenants.create_key(found.name).key

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_finished(self, client: httpx.Client, job_id: str, timeout_s: float = 180) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["finished_at"] is not None:
                return job  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._engine is not None:
            self._engine.dispose()
