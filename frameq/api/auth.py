"""Who is asking: every request but health, metrics and the dashboard's login carries a key.

The key comes as `Authorization: Bearer KEY`, else `X-API-Key: KEY`, else the dashboard's
cookie. The three are FastAPI security schemes, so the OpenAPI document says which operations
need a key and how it may be given.

Which of them a request used is kept in `request.state.credential` ("bearer", "x-api-key",
"cookie"). A change made with the cookie must come from this server's own pages (its Origin or
Referer: same_origin), since a browser sends the cookie by itself. A Bearer or X-API-Key header
that is there but blank is refused (401), never passed over for the cookie.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from frameq.api.services import Services
from orchestrator.schema import Tenant

COOKIE = "frameq_key"  # the dashboard keeps the key in an HttpOnly, SameSite=Strict cookie
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# auto_error=False: a request without a key gets this API's own 401 (below), not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer fq_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The key itself")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="The dashboard's session")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this server: its Origin (else
    its Referer) names the Host it was sent to. SameSite=Strict keeps the cookie from other
    sites, but not from other origins of the same site (another port, a sibling subdomain)."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(source).netloc.lower() == host.lower()


def _credential(request: Request, cookie: str | None) -> tuple[str, str]:
    """(which credential, the key): the first one the request carries. An Authorization header
    of the Bearer scheme, or an X-API-Key header, is the credential even when blank (a 401): a
    blank one is never passed over for the cookie, which would then go unchecked as an explicit
    key. Another Authorization scheme (a proxy's Basic authentication) is not this API's."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return "bearer", _nonblank(token, "Authorization: Bearer")
    if "x-api-key" in request.headers:
        return "x-api-key", _nonblank(request.headers["x-api-key"], "X-API-Key")
    if cookie:
        return "cookie", cookie
    raise HTTPException(401, "an API key is needed: Authorization: Bearer KEY", CHALLENGE)


def _nonblank(value: str, where: str) -> str:
    key = value.strip()  # str.strip: any Unicode space, as a Latin-1 header may hold (\xa0)
    if not key:
        raise HTTPException(401, f"an empty API key in {where}", CHALLENGE)
    return key


def tenant(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    # The three schemes declare, for the OpenAPI document, how a key may be given; which one a
    # request used is decided from its headers (_credential).
    _bearer_scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _api_key_scheme: Annotated[str | None, Depends(_api_key)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Tenant:
    credential, key = _credential(request, cookie)
    request.state.credential = credential
    found = svc.tenants.authenticate(key)
    if found is None:
        raise HTTPException(401, "unknown or revoked API key", CHALLENGE)
    # A browser sends the cookie by itself: a change it carries must come from the dashboard.
    if request.method not in SAFE_METHODS and credential == "cookie" and not same_origin(request):
        raise HTTPException(403, "cookie-authenticated changes must come from this server's own pages")
    return found


CurrentTenant = Annotated[Tenant, Depends(tenant)]
CurrentServices = Annotated[Services, Depends(services)]
