"""Security of the HTTP API against a real `frameq api` process: tenants kept apart, keys
required, upload limits held, no path of the client's or the server's ever opened, and bad
input answered 4xx in one line.

Two servers: the module's `api` (one local worker, webhooks to loopback allowed, 64 MiB
uploads), where jobs run; and `strict` (no worker, so jobs stay queued as long as a test needs
them to, 1 MiB uploads, and webhooks to private addresses refused as in production).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from frameq.api.uploads import FEED_BYTES
from tests.api.server import ApiServer
from tests.conftest import ROOT, run_cli

BOUNDARY = "sec-5a1e-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def png(size: tuple[int, int] = (100, 100)) -> bytes:
    rng = np.random.default_rng(1)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def part(name: bytes | str, data: bytes | str, filename: bytes | str | None = None) -> bytes:
    """One form part, written byte for byte: a client may send what httpx would escape."""
    raw = lambda v: v if isinstance(v, bytes) else v.encode()  # noqa: E731
    disposition = b'form-data; name="' + raw(name) + b'"'
    if filename is not None:
        disposition += b'; filename="' + raw(filename) + b'"'
    return (
        b"--"
        + BOUNDARY.encode()
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\n\r\n"
        + raw(data)
        + b"\r\n"
    )


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_form(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/v1/jobs", content=body, headers={"content-type": MULTIPART})


def one_line_problem(answer: httpx.Response) -> str:
    """The answer's detail, checked to be this API's error form: JSON, one line."""
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, answer.text
    return detail


@dataclass
class Tenant:
    name: str
    key: str
    server: ApiServer

    def client(self) -> httpx.Client:
        return self.server.client(self.key)

    def jobs(self) -> list[str]:
        with self.client() as client:
            return [j["id"] for j in client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]]


def tenant(server: ApiServer, *prefixes: str) -> Tenant:
    options = ["--max-active-jobs", "1000"]
    for prefix in prefixes:
        options += ["--prefix", prefix]
    name, key = server.key(None, *options)
    return Tenant(name, key, server)


def home_of(server: ApiServer) -> Path:
    return Path(server.env["FRAMEQ_HOME"])


def spool_files(server: ApiServer) -> list[str]:
    spool = home_of(server) / "uploads"
    return sorted(p.name for p in spool.iterdir()) if spool.is_dir() else []


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("strict")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env |= {"FRAMEQ_HOME": str(home / "home"), "FRAMEQ_MAX_UPLOAD_MB": "1"}
    server = ApiServer(env, home / "api.log", local_workers=0)
    yield server
    server.stop()


# -- tenants apart ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def queued(strict: ApiServer) -> tuple[Tenant, Tenant, str]:
    """Tenants A and B on the strict server; A's job stays queued (no worker)."""
    a, b = tenant(strict, "uploads/a/"), tenant(strict, "uploads/b/")
    with a.client() as client:
        made = post_form(client, form(part("recipe", "cartoon"), part("file", png(), "holiday-a.png")))
    assert made.status_code == 201, made.text
    return a, b, made.json()["id"]


def job_endpoints(job_id: str) -> list[tuple[str, str]]:
    """Every operation on one job: another tenant must get 404 from each."""
    return [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result"),
        ("GET", f"/v1/jobs/{job_id}/result?output=matte"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/webhooks"),
        ("POST", f"/v1/jobs/{job_id}/webhooks/replay"),
    ]


def test_another_tenants_queued_job_is_not_found_and_not_cancelled(
    queued: tuple[Tenant, Tenant, str],
) -> None:
    a, b, job_id = queued
    with a.client() as client:
        before = client.get(f"/v1/jobs/{job_id}").json()
    assert before["state"] == "queued"
    with b.client() as client:
        for method, path in job_endpoints(job_id):
            answer = client.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert one_line_problem(answer) == f"no job {job_id!r}"
    with a.client() as client:
        after = client.get(f"/v1/jobs/{job_id}").json()
        assert after == before  # nothing of it changed: not cancelled, no webhook replayed
        # A's own requests get past the lookup: its job answers for itself.
        assert client.get(f"/v1/jobs/{job_id}/result").status_code == 409  # not done
        assert client.post(f"/v1/jobs/{job_id}/webhooks/replay").status_code == 409  # no webhook
        assert client.get(f"/v1/jobs/{job_id}/webhooks").json() == []
        other = post_form(client, form(part("recipe", "cartoon"), part("file", png(), "other.png")))
        assert other.status_code == 201, other.text
    with b.client() as client:
        assert client.delete(f"/v1/jobs/{other.json()['id']}").status_code == 404
    with a.client() as client:  # the DELETE B was refused cancels the job when A sends it
        assert client.get(f"/v1/jobs/{other.json()['id']}").json()["state"] == "queued"
        cancelled = client.delete(f"/v1/jobs/{other.json()['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


def test_another_tenants_finished_job_gives_nothing(api: ApiServer) -> None:
    """A done job with a webhook log: B gets neither its result, its log, nor a replay."""
    a, b = tenant(api), tenant(api)
    with a.client() as client:
        made = client.post(
            "/v1/jobs",
            files={"file": ("holiday-b.png", png())},
            data={"recipe": "cartoon", "webhook_url": "http://127.0.0.1:9/closed"},
        )
        assert made.status_code == 201, made.text
        job = api.wait_finished(client, made.json()["id"])
        assert job["state"] == "done", job["error"]
        result = client.get(f"/v1/jobs/{job['id']}/result")
        assert result.status_code == 200
    with b.client() as client:
        for method, path in job_endpoints(job["id"]):
            answer = client.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            for secret in ("holiday-b", "cartoon", "closed", "done"):
                assert secret not in answer.text, (method, path, answer.text)
            assert result.content not in answer.content
    with a.client() as client:
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "done"
        assert client.post(f"/v1/jobs/{job['id']}/webhooks/replay").status_code == 202


def test_listings_show_only_the_tenants_own_jobs(queued: tuple[Tenant, Tenant, str]) -> None:
    a, b, job_id = queued
    with a.client() as client:
        second = post_form(client, form(part("recipe", "matte"), part("file", png(), "second.png")))
        assert second.status_code == 201, second.text
        page = client.get("/v1/jobs", params={"limit": 1}).json()
        assert page["next_cursor"], page
    with b.client() as client:
        own = post_form(client, form(part("recipe", "cartoon"), part("file", png(), "own.png"))).json()["id"]
    theirs = {job_id, second.json()["id"]}
    with b.client() as client:
        queries: list[dict[str, str | int]] = [
            {},
            {"state": "queued"},
            {"recipe": "cartoon"},
            {"recipe": "matte"},
            {"limit": 200},
            {"batch": "x"},
            {"cursor": page["next_cursor"]},
        ]
        for query in queries:
            answer = client.get("/v1/jobs", params=query)
            assert answer.status_code == 200, answer.text
            assert not theirs & {j["id"] for j in answer.json()["jobs"]}, query
        # B does see its own: the listings above were not empty for want of jobs.
        assert [j["id"] for j in client.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]] == [own]


# -- keys -------------------------------------------------------------------------------


def _operations(server: ApiServer, job_id: str) -> list[tuple[str, str]]:
    """Every /v1 operation of the served document, its path parameters filled in."""
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = []
    for path, methods in document["paths"].items():
        if path.startswith("/v1"):
            filled = path.replace("{job_id}", job_id).replace("{batch_id}", "0123456789ab")
            operations += [(method.upper(), filled) for method in methods]
    assert ("POST", "/v1/jobs") in operations and ("GET", f"/v1/jobs/{job_id}") in operations
    return operations


def _refused_everywhere(
    server: ApiServer,
    operations: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30, headers=headers, cookies=cookies) as client:
        for method, path in operations:
            job = {"source": "uploads/a/x.png", "recipe": "cartoon"}
            answer = client.request(method, path, json=job if method == "POST" else None)
            assert answer.status_code == 401, (method, path, headers, cookies, answer.text)
            assert one_line_problem(answer)
            assert answer.headers["www-authenticate"] == "Bearer"


def test_every_operation_needs_a_live_key(strict: ApiServer, queued: tuple[Tenant, Tenant, str]) -> None:
    a, _, job_id = queued
    operations = _operations(strict, job_id)
    key_id = a.key.split("_")[1]
    before = a.jobs()
    for request in [
        {},
        {"headers": {"Authorization": "Bearer"}},
        {"headers": {"Authorization": "Bearer not-a-key"}},
        {"headers": {"Authorization": f"Basic {a.key}"}},  # the right key under another scheme
        {"headers": {"Authorization": f"Bearer fq_{key_id}_" + "A" * 43}},  # a real id, a wrong secret
        {"headers": {"Authorization": f"Bearer {a.key}x"}},
        {"headers": {"Authorization": f"Bearer {a.key[:-1]}"}},
        {"headers": {"X-API-Key": f"fq_{key_id}_" + "B" * 43}},
        {"cookies": {"frameq_key": "fq_000000000000_" + "C" * 43}},
    ]:
        _refused_everywhere(strict, operations, **request)
    with httpx.Client(base_url=strict.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}  # health needs no key
        assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {a.key}"}).status_code == 200
        assert client.get("/v1/jobs", headers={"X-API-Key": a.key}).status_code == 200
    assert a.jobs() == before  # none of the refused POSTs made a job


def test_a_revoked_key_opens_nothing(strict: ApiServer, queued: tuple[Tenant, Tenant, str]) -> None:
    """With the real `frameq keys` commands: made, listed, revoked."""
    _, _, job_id = queued
    name = f"doomed-{secrets.token_hex(4)}"
    made = run_cli(strict.env, "keys", "create", "--tenant", name)
    assert made.returncode == 0, made.stderr
    doomed = Tenant(name, made.stdout.strip(), strict)
    key_id = doomed.key.split("_")[1]
    assert f"tenant {name}: key {key_id} (webhook secret: whsec_" in made.stderr
    with doomed.client() as client:
        assert client.get("/v1/jobs").status_code == 200
    listed = run_cli(strict.env, "keys", "list", "--tenant", name)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"{key_id}  {name}") and line.endswith("live") and doomed.key not in line
    revoked = run_cli(strict.env, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run_cli(strict.env, "keys", "list", "--tenant", name).stdout.split()
    again = run_cli(strict.env, "keys", "revoke", key_id)
    assert again.returncode != 0 and "no live key" in again.stderr
    operations = _operations(strict, job_id)
    _refused_everywhere(strict, operations, headers={"Authorization": f"Bearer {doomed.key}"})
    _refused_everywhere(strict, operations, headers={"X-API-Key": doomed.key})
    _refused_everywhere(strict, operations, cookies={"frameq_key": doomed.key})


# -- upload limits ----------------------------------------------------------------------


def _still_serving(server: ApiServer, key: str) -> None:
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    with server.client(key) as client:
        assert client.get("/v1/jobs").status_code == 200


def _file_form_head() -> bytes:
    """A form up to the first byte of its file part's content."""
    return part("recipe", "cartoon") + (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'.encode()
    )


def _raw_request(server: ApiServer, key: str, length: int, body: bytes) -> socket.socket:
    """A POST /v1/jobs sent over a plain socket: its Content-Length says what the test wants."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {MULTIPART}\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(strict: ApiServer) -> None:
    owner = tenant(strict)
    limit = 1024 * 1024
    before = owner.jobs()
    with owner.client() as client:
        # Declared honestly: the length passes the early check (it allows for the form's own
        # parts), the file is stopped as it streams in.
        honest = post_form(
            client, form(part("recipe", "cartoon"), part("file", b"x" * (limit + 4096), "a.png"))
        )
        assert honest.status_code == 413, honest.text
        assert "1 MiB" in one_line_problem(honest)
        assert spool_files(strict) == []

        def chunked() -> Iterator[bytes]:  # no Content-Length at all: 3 MiB in 64 KiB chunks
            yield _file_form_head()
            for _ in range(48):
                yield b"x" * 65536

        streamed = client.post("/v1/jobs", content=chunked(), headers={"content-type": MULTIPART})
        assert streamed.status_code == 413, streamed.text
        assert spool_files(strict) == []

        # Two files each under the limit, together over it.
        both = post_form(
            client,
            form(
                part("recipe", "style"),
                part("file", b"x" * (limit // 2 + 1000), "a.png"),
                part("style_file", b"y" * (limit // 2 + 1000), "s.png"),
            ),
        )
        assert both.status_code == 413, both.text
        assert spool_files(strict) == []

        # A JSON body is small by nature: past 64 KiB it is refused unread.
        huge = client.post("/v1/jobs", json={"source": "x" * 100_000, "recipe": "cartoon"})
        assert huge.status_code == 413, huge.text
    _still_serving(strict, owner.key)
    assert owner.jobs() == before


def test_a_lying_content_length(strict: ApiServer) -> None:
    owner = tenant(strict)
    # It claims 10 GiB: refused at once, before a byte of the body is waited for.
    started = time.monotonic()
    status, _ = _answer(_raw_request(strict, owner.key, 10 * 1024**3, _file_form_head() + b"x" * 1000))
    assert status == 413 and time.monotonic() - started < 10
    # It claims 1.2 MB, sends one piece the parser is fed (1 MiB), and hangs up: what was
    # spooled of it goes.
    sock = _raw_request(strict, owner.key, 1_200_000, _file_form_head() + b"x" * FEED_BYTES)
    deadline = time.monotonic() + 10
    while not spool_files(strict) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(spool_files(strict)) == 1  # the upload is being spooled...
    sock.close()
    while spool_files(strict) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(strict) == []  # ...and is gone with the client
    _still_serving(strict, owner.key)
    assert owner.jobs() == []


# -- names and paths ----------------------------------------------------------------------


def _names_found(roots: list[Path], token: str) -> list[Path]:
    found = []
    for root in roots:
        if root.is_dir():
            found += [p for p in root.rglob("*") if token in p.name]
    return found


def test_upload_names_never_become_paths(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    token = secrets.token_hex(4)
    owner = tenant(api)
    names: list[tuple[bytes, str]] = [
        (f"../../../../{token}-up.png".encode(), f"{token}-up.png"),
        (f"/tmp/{token}-abs.png".encode(), f"{token}-abs.png"),
        (f"..\\..\\..\\{token}-win.png".encode(), f"{token}-win.png"),
        (f"C:\\x\\..\\{token}-drive.png".encode(), f"{token}-drive.png"),
        (f"{token}\x00-nul.png".encode(), f"{token}-nul.png"),
        (f"{token}\x1b[2J\x07\x7f-esc.png".encode(), f"{token}[2J-esc.png"),
        (f"{token}-\u202egnp.exe.png".encode(), f"{token}-gnp.exe.png"),  # no right-to-left override
        (f"{token}-{'n' * 1000}.png".encode(), f"{token}-{'n' * (200 - len(token) - 5)}.png"),
    ]
    made = {}
    with owner.client() as client:
        for raw, shown in names:
            answer = post_form(client, form(part("recipe", "cartoon"), part("file", png(), raw)))
            assert answer.status_code == 201, (raw, answer.text)
            assert answer.json()["input_name"] == shown, raw
            made[shown] = answer.json()["id"]
        for shown, job_id in made.items():
            job = api.wait_finished(client, job_id)
            # The suffix survived every cut (the long name's too): each was decoded as a PNG.
            assert job["state"] == "done", (shown, job["error"])
        download = client.get(f"/v1/jobs/{made[f'{token}-up.png']}/result")
        assert download.status_code == 200
        disposition = download.headers["content-disposition"]
        assert "/" not in disposition.replace("utf-8''", "") and ".." not in disposition
    # Nothing named after the client's names anywhere: not in the spool, the store, the tests'
    # temporary folders, the server's working directory or the top of /tmp.
    roots = [home_of(api), tmp_path_factory.getbasetemp()]
    assert _names_found(roots, token) == []
    for top in (Path("/tmp"), ROOT, ROOT.parent, Path("/")):
        assert not [p for p in top.iterdir() if token in p.name], top
    assert spool_files(api) == []


def test_a_pickled_checkpoint_runs_no_code(api: ApiServer, tmp_path: Path) -> None:
    """A style checkpoint is a pickle: one that would run code when loaded fails its job, and
    the code does not run (torch.load with weights_only)."""

    marker = tmp_path / "the-pickle-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))  # loading it would create the marker

    checkpoint = io.BytesIO()
    torch.save({"conv1.conv2d.weight": Payload()}, checkpoint)
    owner = tenant(api)
    with owner.client() as client:
        made = client.post(
            "/v1/jobs",
            files={"file": ("in.png", png()), "style_file": ("mosaic.pth", checkpoint.getvalue())},
            data={"recipe": "style"},
        )
        assert made.status_code == 201, made.text
        job = api.wait_finished(client, made.json()["id"])
    assert job["state"] == "failed"
    error = str(job["error"])
    assert error.startswith("mosaic.pth: ") and "weights_only" in error, error
    assert str(home_of(api)) not in error  # named as sent, not as spooled
    assert not marker.exists()


def test_a_decompression_bomb_fails_its_own_job(api: ApiServer) -> None:
    """A PNG of a few hundred bytes that claims 100000 x 100000 pixels: its job fails, and the
    server answers the next one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
    bomb += chunk(b"IEND", b"")
    owner = tenant(api)
    with owner.client() as client:
        made = client.post("/v1/jobs", files={"file": ("bomb.png", bomb)}, data={"recipe": "cartoon"})
        assert made.status_code == 201, made.text
        job = api.wait_finished(client, made.json()["id"])
        assert job["state"] == "failed" and str(job["error"]).startswith("bomb.png: "), job["error"]
        after = client.post("/v1/jobs", files={"file": ("in.png", png())}, data={"recipe": "cartoon"})
        assert api.wait_finished(client, after.json()["id"])["state"] == "done"


def test_refused_uploads_are_named_as_sent(strict: ApiServer) -> None:
    """A 422 about an uploaded file names the client's file, never its spool file (which
    would tell the server's folders)."""
    owner = tenant(strict)
    with owner.client() as client:
        for recipe, field, name, data in [
            ("style", "style_file", "notes.txt", b"not a picture"),
            ("bg-replace", "background_file", "notes.txt", b"not a picture"),
            ("bg-replace", "background_file", "empty.png", b""),
        ]:
            answer = client.post(
                "/v1/jobs", files={"file": ("in.png", png()), field: (name, data)}, data={"recipe": recipe}
            )
            assert answer.status_code == 422, answer.text
            detail = one_line_problem(answer)
            assert detail.startswith(f"{field} {name!r}: ") and str(home_of(strict)) not in detail, detail
    assert spool_files(strict) == []


@pytest.fixture(scope="module")
def stored(strict: ApiServer, queued: tuple[Tenant, Tenant, str]) -> tuple[Tenant, str]:
    """Objects in the strict server's store: A's own, B's, and A's queued job's source."""
    a, _, job_id = queued
    store = home_of(strict) / "store"
    for key in ("uploads/a/in.png", "uploads/a/style.png", "uploads/b/secret.png"):
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(png((64, 48)))
    assert (store / f"jobs/{job_id}/source.png").is_file()
    return a, job_id


def _outside_keys(job_id: str) -> list[str]:
    return [
        "uploads/b/secret.png",  # the other tenant's prefix
        "uploads/a/../b/secret.png",
        "uploads/a/./in.png",
        "uploads/a//in.png",
        "/uploads/a/in.png",
        "/etc/hosts",
        "uploads\\a\\in.png",
        "uploads/a\\..\\b/secret.png",
        f"jobs/{job_id}/source.png",  # another job's objects
        "jobs/../uploads/a/in.png",
        "uploads/a/in.png\x00",
        "uploads/a/in\ud800.png",
        "uploads/a/missing.png",
        "uploads/a/",
        "../../../../etc/passwd",
        "~/in.png",
        "uploads/a/" + "d/" * 600 + "in.png",
    ]


def test_store_references_outside_the_tenants_prefixes(stored: tuple[Tenant, str]) -> None:
    a, job_id = stored
    before = a.jobs()
    with a.client() as client:
        for key in _outside_keys(job_id):
            as_json = client.post(
                "/v1/jobs",
                content=json.dumps({"source": key, "recipe": "cartoon"}),
                headers={"content-type": "application/json"},
            )
            assert as_json.status_code == 422, (key, as_json.text)
            one_line_problem(as_json)
            if "\ud800" not in key:  # a lone surrogate cannot be written as UTF-8 form data
                as_form = post_form(client, form(part("recipe", "cartoon"), part("source", key)))
                assert as_form.status_code == 422, (key, as_form.text)
            style = client.post(
                "/v1/jobs",
                content=json.dumps(
                    {"source": "uploads/a/in.png", "recipe": "style", "params": {"style": f"store:{key}"}}
                ),
                headers={"content-type": "application/json"},
            )
            assert style.status_code == 422, (key, style.text)
        assert a.jobs() == before
        # Inside its prefix, the same requests make jobs.
        assert (
            client.post("/v1/jobs", json={"source": "uploads/a/in.png", "recipe": "cartoon"}).status_code
            == 201
        )
        form_made = post_form(client, form(part("recipe", "cartoon"), part("source", "uploads/a/in.png")))
        assert form_made.status_code == 201, form_made.text
        styled = client.post(
            "/v1/jobs",
            json={
                "source": "uploads/a/in.png",
                "recipe": "style",
                "params": {"style": "store:uploads/a/style.png"},
            },
        )
        assert styled.status_code == 201, styled.text
        assert styled.json()["input_name"] == "uploads/a/in.png"


def test_server_side_paths_in_params_are_never_opened(
    stored: tuple[Tenant, str], tmp_path: Path, strict: ApiServer
) -> None:
    """A style or a background naming a file on the server: refused, even a real picture."""
    a, _ = stored
    picture = tmp_path / "on-the-server.png"
    picture.write_bytes(png((64, 48)))
    store_copy = home_of(strict) / "store" / "uploads" / "a" / "style.png"
    before = a.jobs()
    with a.client() as client:
        for style in [
            "/etc/hosts.png",
            str(picture),
            str(store_copy),
            "~/style.png",
            "../style.png",
            "style.png",
            "file:///etc/hosts.png",
            "C:\\style.png",
            "\\\\server\\share\\style.png",
            "mosaic.pth",
        ]:
            for body in (
                {"source": "uploads/a/in.png", "recipe": "style", "params": {"style": style}},
                None,
            ):
                if body is None:
                    answer = post_form(
                        client,
                        form(
                            part("recipe", "style"),
                            part("params", json.dumps({"style": style})),
                            part("file", png(), "in.png"),
                        ),
                    )
                else:
                    answer = client.post("/v1/jobs", json=body)
                assert answer.status_code == 422, (style, answer.text)
                assert "style" in one_line_problem(answer)
        for background in [str(picture), "/etc/hosts", "../bg.png", "bg.png", "store:uploads/a/in.png"]:
            answer = client.post(
                "/v1/jobs",
                json={
                    "source": "uploads/a/in.png",
                    "recipe": "bg-replace",
                    "params": {"background": background},
                },
            )
            assert answer.status_code == 422, (background, answer.text)
            assert "background" in one_line_problem(answer)
        # A colour is a background, and a picture comes as a file part.
        assert (
            client.post(
                "/v1/jobs",
                json={
                    "source": "uploads/a/in.png",
                    "recipe": "bg-replace",
                    "params": {"background": "#00ff00"},
                },
            ).status_code
            == 201
        )
    assert len(a.jobs()) == len(before) + 1


# -- parameters and bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"recipe": "style", "params": {"strength": 2}}, "strength"),
        ({"recipe": "style", "params": {"strength": -0.1}}, "strength"),
        ({"recipe": "style", "params": {"strength": "strong"}}, "strength"),
        ({"recipe": "style", "params": {"style_size": 10}}, "style_size"),
        ({"recipe": "style", "params": {"style_size": 100_000}}, "style_size"),
        ({"recipe": "style", "params": {"style_size": 1.5}}, "style_size"),
        ({"recipe": "style", "params": {"preserve_colour": "maybe"}}, "preserve_colour"),
        ({"recipe": "style", "params": {"bogus": 1}}, "bogus"),
        ({"recipe": "style", "params": {"style": "99"}}, "style"),
        ({"recipe": "style", "params": {"style": 19}}, "style"),
        ({"recipe": "style", "params": {"format": "exe"}}, "format"),
        ({"recipe": "style", "params": {"format": "mp4"}}, "mp4"),  # an image input cannot become one
        ({"recipe": "style", "params": []}, "params"),
        ({"recipe": "cartoon", "params": {"with_matte": True}}, "matte"),  # cartoon has no matte stage
        ({"recipe": "matte", "params": {"style": "cartoon"}}, "style"),  # matte does not paint
        ({"recipe": "stencil", "params": {"background": "not-a-colour"}}, "background"),
        ({"recipe": "crop", "params": {"ratio": "wide"}}, "ratio"),
        ({"recipe": "crop", "params": {"ratio": "1:0"}}, "ratio"),
        ({"recipe": "cartoon", "params": {"ratio": "1:1"}}, "ratio"),  # cartoon does not crop
        ({"recipe": "inpaint", "params": {"at": "here"}}, "point"),
        ({"recipe": "cartoon", "params": {"at": "1,1"}}, "point"),  # cartoon removes nothing
        ({"recipe": "no-such-recipe"}, "recipe"),
        ({"recipe": ""}, "recipe"),
        ({"recipe": "cartoon", "priority": "urgent"}, "priority"),
        ({"recipe": "cartoon", "webhook_url": "ftp://example.com/x"}, "webhook"),
    ],
)
def test_parameters_out_of_range(
    stored: tuple[Tenant, str], request_fields: dict[str, Any], field: str
) -> None:
    a, _ = stored
    with a.client() as client:
        as_json = client.post("/v1/jobs", json={"source": "uploads/a/in.png", **request_fields})
        assert as_json.status_code == 422, as_json.text
        assert field in one_line_problem(as_json)
        parts = [part("file", png(), "in.png")]
        for name, value in request_fields.items():
            parts.append(part(name, value if isinstance(value, str) else json.dumps(value)))
        as_form = post_form(client, form(*parts))
        assert as_form.status_code == 422, as_form.text
        assert field in one_line_problem(as_form)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{bad"),
        ("application/json", b""),
        ("application/json", b"[]"),
        ("application/json", b'"cartoon"'),
        ("application/json", b"null"),
        ("application/json", b'{"source": "uploads/a/in.png", "recipe": "cartoon"'),
        (
            "application/json",
            b'{"source": "uploads/a/in.png", "recipe": "cartoon", "params": {"strength": NaN}}',
        ),
        ("application/json", b'{"source": "\xff\xfe", "recipe": "cartoon"}'),
        ("application/json", b"[" * 30_000 + b"]" * 30_000),
        ("application/json; charset=latin-1", b'{"source": 1}'),
        ("text/plain", b"recipe=cartoon"),
        ("application/x-www-form-urlencoded", b"recipe=cartoon&source=uploads/a/in.png"),
        ("application/xml", b"<job/>"),
        (None, b"anything"),
        ("multipart/form-data", form(part("recipe", "cartoon"))),  # no boundary
        ("multipart/form-data; boundary=other", form(part("recipe", "cartoon"))),  # not the one used
        (MULTIPART, form(part("recipe", "cartoon"), part("file", png(), "a.png"))[:-30]),  # cut off
        (MULTIPART, form(part("recipe", "cartoon"))[:40]),
        (
            MULTIPART,
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode(),
        ),
        (MULTIPART, f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode()),
        (MULTIPART, form(part("recipe", "cartoon"), part("recipe", "matte"), part("file", png(), "a.png"))),
        (
            MULTIPART,
            form(part("recipe", "cartoon"), part("file", png(), "a.png"), part("file", png(), "b.png")),
        ),
        (MULTIPART, form(*(part(f"extra{n}", "v") for n in range(20)))),  # too many parts
        (MULTIPART, form(part("recipe", "cartoon", "recipe.txt"), part("file", png(), "a.png"))),
        (MULTIPART, form(part("recipe", "cartoon"), part("params", "{bad"), part("file", png(), "a.png"))),
        (MULTIPART, form(part("recipe", "cartoon"))),  # neither a file nor a source
        (
            MULTIPART,
            form(part("recipe", "cartoon"), part("source", "uploads/a/in.png"), part("file", png(), "a.png")),
        ),
        (MULTIPART, b"\r\n\r\n--" * 1000),
        (MULTIPART, b""),
    ],
)
def test_malformed_bodies_are_4xx(stored: tuple[Tenant, str], content_type: str | None, body: bytes) -> None:
    a, _ = stored
    before = a.jobs()
    headers = {"content-type": content_type} if content_type is not None else {}
    with a.client() as client:
        answer = client.post("/v1/jobs", content=body, headers=headers)
    assert answer.status_code in (400, 413, 415, 422), answer.text
    one_line_problem(answer)
    assert a.jobs() == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/%00",
        "/v1/jobs/abc%0A",
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/" + "a" * 5000,
        "/v1/jobs?recipe=%00",
        "/v1/jobs?cursor=%00",
        "/v1/jobs?limit=0",
        "/v1/jobs?limit=abc",
        "/v1/jobs?state=lost",
        "/v1/jobs?cursor=bm90LWEtY3Vyc29y",
        "/v1/jobs/0123456789ab/result?output=../../etc/passwd",
    ],
)
def test_odd_urls_are_4xx(stored: tuple[Tenant, str], path: str) -> None:
    a, _ = stored
    with a.client() as client:
        answer = client.get(path)
    assert 400 <= answer.status_code < 500, answer.text
    one_line_problem(answer)


# -- webhooks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://[fe80::1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0x7f.1/hook",
        "http://user:secret@93.184.215.14/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http://[::1/hook",
        "http://a b.example/hook",
        "http://example.invalid\x00.com/",
        "javascript:alert(1)",
    ],
)
def test_webhooks_to_private_addresses_are_refused(stored: tuple[Tenant, str], url: str) -> None:
    a, _ = stored
    before = a.jobs()
    with a.client() as client:
        as_json = client.post(
            "/v1/jobs", json={"source": "uploads/a/in.png", "recipe": "cartoon", "webhook_url": url}
        )
        assert as_json.status_code == 422, as_json.text
        assert "webhook" in one_line_problem(as_json).lower()
        as_form = post_form(
            client,
            form(part("recipe", "cartoon"), part("source", "uploads/a/in.png"), part("webhook_url", url)),
        )
        assert as_form.status_code == 422, as_form.text
    assert a.jobs() == before


def test_a_public_webhook_is_taken(stored: tuple[Tenant, str]) -> None:
    """The refusals above are about the address: a public one is recorded (the job is never
    run here, so nothing is sent to it)."""
    a, _ = stored
    with a.client() as client:
        made = client.post(
            "/v1/jobs",
            json={
                "source": "uploads/a/in.png",
                "recipe": "cartoon",
                "webhook_url": "http://93.184.215.14/hook",
            },
        )
    assert made.status_code == 201, made.text
    assert made.json()["webhook_url"] == "http://93.184.215.14/hook"
