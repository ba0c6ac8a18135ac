"""`frameq api` as a real server process for the tests, and clients holding a tenant's key."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port, run_cli


class ApiServer:
    def __init__(self, env: dict[str, str], log: Path, local_workers: int = 1) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_secrets: dict[str, str] = {}  # tenant -> whsec_..., as `keys create` printed it
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
        """A new key for a tenant (a fresh one unless named): (tenant, key). The tenant's
        webhook secret, printed on stderr, is kept in `webhook_secrets`."""
        tenant = tenant or f"t-{secrets.token_hex(4)}"
        result = run_cli(self.env, "keys", "create", "--tenant", tenant, *options)
        assert result.returncode == 0, result.stderr
        found = re.search(r"webhook secret: (whsec_[A-Za-z0-9+/=]+)", result.stderr)
        assert found, result.stderr
        self.webhook_secrets[tenant] = found.group(1)
        return tenant, result.stdout.strip()

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
