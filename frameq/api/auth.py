"""Who is asking: every request but health, metrics and the dashboard's login carries a key.

The key comes as `Authorization: Bearer KEY`, else `X-API-Key: KEY`, else the dashboard's
cookie. The three are FastAPI security schemes, so the OpenAPI document says which operations
need a key and how it may be given.
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


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def key_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key") or request.cookies.get(COOKIE)


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this server: its Origin (else
    its Referer) names the Host it was sent to. SameSite=Strict keeps the cookie from other
    sites, but not from other origins of the same site (another port, a sibling subdomain)."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(source).netloc.lower() == host.lower()


def _by_cookie(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    explicit = (scheme.lower() == "bearer" and token) or request.headers.get("x-api-key")
    return not explicit and COOKIE in request.cookies


def tenant(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Tenant:
    key = (bearer.credentials.strip() if bearer is not None else "") or api_key or cookie
    if not key:
        raise HTTPException(
            401, "an API key is needed: Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
        )
    found = svc.tenants.authenticate(key)
    if found is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    # A browser sends the cookie by itself: a change it carries must come from the dashboard.
    if request.method not in SAFE_METHODS and _by_cookie(request) and not same_origin(request):
        raise HTTPException(403, "cookie-authenticated changes must come from this server's own pages")
    return found


CurrentTenant = Annotated[Tenant, Depends(tenant)]
CurrentServices = Annotated[Services, Depends(services)]
