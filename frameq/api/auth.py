"""Who is asking: every request but health, metrics and the dashboard's login carries a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from frameq.api.services import Services
from orchestrator.schema import Tenant

COOKIE = "frameq_key"  # the dashboard keeps the key in an HttpOnly, SameSite=Strict cookie


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def key_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key") or request.cookies.get(COOKIE)


def tenant(request: Request, svc: Annotated[Services, Depends(services)]) -> Tenant:
    key = key_of(request)
    if not key:
        raise HTTPException(
            401, "an API key is needed: Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
        )
    found = svc.tenants.authenticate(key)
    if found is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    return found


CurrentTenant = Annotated[Tenant, Depends(tenant)]
CurrentServices = Annotated[Services, Depends(services)]
