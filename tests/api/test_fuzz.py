"""Property-based fuzzing of every operation the API serves in /openapi.json (schemathesis).

The server is a real `frameq api` process on a PostgreSQL database of its own, as a deployment
runs it: PostgreSQL refuses strings SQLite takes (a NUL), so it finds more. Requests carry a
real tenant's key, and a path's job id is now and then one of that tenant's real jobs, so the
operations on a job run past their 404. Every answer goes through CHECKS: no server error; a
status code, content type, headers and body the document declares; 4xx for a request the
schema does not admit; 401 once the key is left out; 405 for a method an operation lacks.

Schemathesis' own engine runs the phases (examples, coverage, fuzzing; not stateful: the
document has no links), as its CLI would: its pytest plugin does not run under pytest 9. No
local worker: jobs the fuzzer makes stay queued, nothing is decoded or styled. The run is
bounded (MAX_EXAMPLES per operation) and derandomized (SEED), so CI sends the same requests.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
import schemathesis.engine
from hypothesis import strategies as st
from PIL import Image
from schemathesis.engine import Status, StopReason, events

from tests.api.server import ApiServer
from tests.conftest import fresh_postgres_database

MAX_EXAMPLES = 30
SEED = 20261201
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "unsupported_method",
)
PREFIX = "uploads/fuzz/"
SOURCE = PREFIX + "in.png"  # a real object in the store, inside the tenant's prefix


@dataclass(frozen=True)
class Tenant:
    key: str
    job_id: str  # a queued job of its own, with a webhook


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of this module's own: the jobs fuzzing leaves queued meet no other test."""
    with fresh_postgres_database("frameq_fuzz") as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {
        "FRAMEQ_HOME": str(home),
        "FRAMEQ_DATABASE_URL": database,
        "FRAMEQ_MAX_UPLOAD_MB": "1",
        "FRAMEQ_WEBHOOK_ALLOW_PRIVATE": "1",  # generated host names are not looked up in DNS
    }
    server = ApiServer(env, home.parent / "api.log", local_workers=0)
    (home / "store" / PREFIX).mkdir(parents=True, exist_ok=True)
    (home / "store" / SOURCE).write_bytes(_png())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tenant(server: ApiServer) -> Tenant:
    _, key = server.key(None, "--max-active-jobs", "1000000", "--prefix", PREFIX)
    with server.client(key) as client:
        made = client.post(
            "/v1/jobs",
            files={"file": ("in.png", _png())},
            data={"recipe": "cartoon", "webhook_url": "http://127.0.0.1:9/hook"},
        )
    assert made.status_code == 201, made.text
    return Tenant(key, made.json()["id"])


def _png() -> bytes:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def _schema(server: ApiServer, tenant: Tenant, mode: str, checks: tuple[str, ...]) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {tenant.key}"},
            "generation": {
                "mode": mode,  # positive, negative or all
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",  # nothing carried over from an earlier run: the same every time
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in checks}},
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


def _spool_files(server: ApiServer) -> list[str]:
    """What the server's upload spool holds: nothing once every request has been answered,
    whether its upload was malformed, refused, oversized or made a job."""
    spool = Path(server.env["FRAMEQ_HOME"]) / "uploads"
    return sorted(p.name for p in spool.iterdir()) if spool.is_dir() else []


def _run(schema: Any) -> tuple[int, list[str]]:
    """Run the engine over `schema`: (requests sent, one entry per distinct failure)."""
    failures: set[str] = set()
    requests = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.add(
                            f"{event.recorder.label} [{check.name}] {failure.title}: {failure.message}\n"
                            f"    {check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            failures.add(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished) and event.stop_reason != StopReason.COMPLETED:
            failures.add(f"the run stopped early: {event.stop_reason}")
    return requests, sorted(failures)


def test_every_operation(server: ApiServer, tenant: Tenant) -> None:
    schema = _schema(server, tenant, "all", CHECKS)

    @schema.hook
    def before_generate_path_parameters(_context: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
        # Only a dict holding job_id is changed (an operation without one gets None here).
        real = strategy.map(
            lambda p: {**p, "job_id": tenant.job_id} if isinstance(p, dict) and "job_id" in p else p
        )
        return st.one_of(strategy, real)

    operations = sum(1 for _ in schema.get_all_operations())
    requests, failures = _run(schema)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    assert not _spool_files(server), "an upload's spool file was left behind"
    assert requests > 10 * operations, f"only {requests} requests for {operations} operations"


def test_job_submissions_that_name_a_real_source(server: ApiServer, tenant: Tenant) -> None:
    """POST /v1/jobs past the checks of its source and recipe: a random source or recipe is
    refused at once, so here every generated body names the real object and a real recipe,
    and its params, priority and webhook reach the parsing of styles and backgrounds, the
    recipe's rules and the recording of the job. Positive data only: a body made valid here
    must not count as a negative one that was accepted."""
    with server.client(tenant.key) as client:
        recipes = [r["name"] for r in client.get("/v1/recipes").json()]
    checks = tuple(c for c in CHECKS if c not in ("negative_data_rejection", "unsupported_method"))
    schema = _schema(server, tenant, "positive", checks).include(method="POST", path="/v1/jobs")

    def real(pair: tuple[Any, str]) -> Any:
        body, recipe = pair
        if not isinstance(body, dict):
            return body
        body = {**body, "recipe": recipe}
        if "file" not in body:  # multipart takes a file or a source: this one names the source
            body["source"] = SOURCE
        return body

    @schema.hook
    def before_generate_body(_context: Any, strategy: st.SearchStrategy) -> st.SearchStrategy:
        return st.tuples(strategy, st.sampled_from(recipes)).map(real)

    requests, failures = _run(schema)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    assert not _spool_files(server), "an upload's spool file was left behind"
    assert requests >= MAX_EXAMPLES, f"only {requests} requests"


def test_every_error_is_declared_as_a_problem(server: ApiServer) -> None:
    """Each 4xx of each operation has the Problem body: the fuzzer checks an answer's body only
    against what the document declares for its status."""
    document = server.client().get("/openapi.json").json()
    assert document["paths"], "no operations"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    declared = response.get("content", {}).get("application/json", {}).get("schema")
                    assert declared == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
