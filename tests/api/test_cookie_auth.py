"""The dashboard's cookie as a credential, against a real `frameq api` (no worker: jobs stay
queued): changes it carries must come from the server's own pages (cross-site request forgery),
a blank explicit key is refused rather than passed over for the cookie, and the cookie is
Secure whenever the browser is on HTTPS, even behind a proxy that speaks plain HTTP to it."""

from __future__ import annotations

import http.client
import io
import json
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from tests.api.server import ApiServer


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 140, 200)).save(out, "PNG")
    return out.getvalue()


def queued_job(server: ApiServer) -> tuple[str, str]:
    """A new tenant's key and a job of its, which stays queued (no worker)."""
    _, key = server.key()
    with server.client(key) as client:
        made = client.post("/v1/jobs", files={"file": ("p.png", picture())}, data={"recipe": "cartoon"})
    assert made.status_code == 201, made.text
    return key, str(made.json()["id"])


Answer = tuple[int, dict[str, object]]


def raw(server: ApiServer, method: str, path: str, headers: dict[str, bytes]) -> Answer:
    """A request with its headers sent byte for byte (httpx refuses values ending in spaces)."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def state(server: ApiServer, key: str, job_id: str) -> str:
    with server.client(key) as client:
        return str(client.get(f"/v1/jobs/{job_id}").json()["state"])


def test_changes_with_the_cookie_from_another_origin_are_refused(idle_api: ApiServer) -> None:
    """SameSite=Strict keeps other sites from sending the cookie; this is what stops other
    origins of the same site (or a browser ignoring SameSite)."""
    key, job_id = queued_job(idle_api)
    evil = {"Origin": "http://127.0.0.1:9", "Cookie": f"frameq_key={key}"}
    with httpx.Client(base_url=idle_api.url, timeout=30) as browser_like:
        refused = [
            browser_like.post(f"/jobs/{job_id}/cancel", headers=evil),
            browser_like.delete(f"/v1/jobs/{job_id}", headers=evil),
            browser_like.post(
                "/v1/jobs", headers=evil, files={"file": ("p.png", picture())}, data={"recipe": "cartoon"}
            ),
            browser_like.post("/login", headers=evil, data={"key": key}),
            browser_like.post(f"/jobs/{job_id}/cancel", headers={"Cookie": f"frameq_key={key}"}),  # no Origin
            browser_like.delete(f"/v1/jobs/{job_id}", headers={"Cookie": f"frameq_key={key}"}),
        ]
        assert [r.status_code for r in refused] == [403] * 6
        assert refused[1].json()["detail"].startswith("cookie-authenticated changes must come from")
        assert "set-cookie" not in refused[3].headers
        assert browser_like.get(f"/v1/jobs/{job_id}", headers=evil).json()["state"] == "queued"
        # The same cancel from the dashboard's own page goes through.
        own = {"Origin": idle_api.url, "Cookie": f"frameq_key={key}"}
        done = browser_like.post(f"/jobs/{job_id}/cancel", headers=own)
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
        assert browser_like.get(f"/v1/jobs/{job_id}", headers=own).json()["state"] == "cancelled"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", b"Bearer   "),
        ("Authorization", b"Bearer \t "),
        ("Authorization", b"Bearer"),
        ("Authorization", b"Bearer \xa0"),  # no-break space (Latin-1): whitespace to str.strip()
        ("X-API-Key", b"\xa0\xa0"),
    ],
)
def test_a_blank_explicit_key_is_refused_even_with_the_cookie(
    idle_api: ApiServer, header: str, value: bytes
) -> None:
    key, job_id = queued_job(idle_api)
    cookie, evil = f"frameq_key={key}".encode(), b"http://evil.example"
    sent = {header: value, "Cookie": cookie, "Origin": evil}
    status, body = raw(idle_api, "DELETE", f"/v1/jobs/{job_id}", sent)
    assert status == 401 and "key" in str(body["detail"]), body
    status, _ = raw(idle_api, "GET", f"/v1/jobs/{job_id}", {header: value, "Cookie": cookie})
    assert status == 401
    status, _ = raw(idle_api, "GET", f"/v1/jobs/{job_id}", {header: value})
    assert status == 401
    assert state(idle_api, key, job_id) == "queued"


def test_another_authorization_scheme_leaves_the_cookie_its_origin_check(idle_api: ApiServer) -> None:
    """A proxy's Basic authentication in front of the dashboard: the browser sends that header
    with every request, the cookie is still what names the tenant, and still checked."""
    key, job_id = queued_job(idle_api)
    basic, cookie = b"Basic dXNlcjpwYXNz", f"frameq_key={key}".encode()
    status, body = raw(idle_api, "GET", f"/v1/jobs/{job_id}", {"Authorization": basic, "Cookie": cookie})
    assert status == 200 and body["state"] == "queued"
    evil = {"Authorization": basic, "Cookie": cookie, "Origin": b"http://evil.example"}
    status, _ = raw(idle_api, "DELETE", f"/v1/jobs/{job_id}", evil)
    assert status == 403 and state(idle_api, key, job_id) == "queued"
    own = {"Authorization": basic, "Cookie": cookie, "Origin": idle_api.url.encode()}
    status, _ = raw(idle_api, "DELETE", f"/v1/jobs/{job_id}", own)
    assert status in (200, 202, 204) and state(idle_api, key, job_id) == "cancelled"


def test_the_cookie_is_secure_when_the_browser_is_on_https(idle_api: ApiServer) -> None:
    _, key = idle_api.key()
    host = urlsplit(idle_api.url).netloc
    with httpx.Client(base_url=idle_api.url, timeout=30) as browser:
        plain = browser.post("/login", headers={"Origin": f"http://{host}"}, data={"key": key})
        # A TLS proxy in front: this server is spoken to in plain HTTP, the browser's page is HTTPS.
        proxied = browser.post("/login", headers={"Origin": f"https://{host}"}, data={"key": key})
        out = browser.post("/logout", headers={"Origin": f"https://{host}"})
    assert plain.status_code == proxied.status_code == out.status_code == 303
    attributes = [
        {part.strip().split("=")[0].lower() for part in answer.headers["set-cookie"].split(";")}
        for answer in (plain, proxied, out)
    ]
    assert "secure" not in attributes[0]
    assert {"secure", "httponly", "samesite"} <= attributes[1] and "secure" in attributes[2]
