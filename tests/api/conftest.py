from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.api.server import ApiServer


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`frameq api` in embedded mode (SQLite, the local store, one local worker) for a module;
    webhooks to the tests' loopback receivers allowed."""
    home = tmp_path_factory.mktemp("api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {
        "FRAMEQ_HOME": str(home / "home"),
        "FRAMEQ_WEBHOOK_ALLOW_PRIVATE": "1",
        "FRAMEQ_MAX_UPLOAD_MB": "64",
    }
    server = ApiServer(env, home / "api.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idle_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server with no worker: what is submitted stays queued."""
    home = tmp_path_factory.mktemp("idle")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env["FRAMEQ_HOME"] = str(home / "home")
    server = ApiServer(env, home / "api.log", local_workers=0)
    yield server
    server.stop()
