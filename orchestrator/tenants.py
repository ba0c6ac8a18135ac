"""Tenants of the HTTP API and their keys: the one owner of their SQL.

A key reads `fq_<id>_<secret>`: the id finds nothing by itself (it is shown in listings so a
key can be named and revoked), the secret is 32 random bytes. Only the SHA-256 of the whole key
is stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.clock import db_now
from orchestrator.errors import ConfigError
from orchestrator.schema import ApiKey, Tenant
from orchestrator.store import check_key

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
KEY_FORM = re.compile(r"fq_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")

# Defaults for a new tenant: a handful of jobs under way, about an hour of 30 f/s video queued.
ACTIVE_JOBS = 8
QUEUED_FRAMES = 100_000


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_prefix(prefix: str) -> str:
    """A store folder a tenant may submit by reference: a key as `check_key` takes one, and
    ending in `/`."""
    problem = (
        "store prefix must be a relative folder ending in '/', without backslashes, control "
        f"characters or empty, . or .. parts: {prefix!r}"
    )
    if not prefix.endswith("/"):
        raise ConfigError(problem)
    try:
        check_key(prefix[:-1])
    except ConfigError:
        raise ConfigError(problem) from None
    if prefix.startswith("jobs/"):
        raise ConfigError(f"store prefix {prefix!r}: jobs/ holds frameq's own objects")
    return prefix


@dataclass(frozen=True)
class NewKey:
    id: str
    tenant: str
    key: str  # shown once, never stored


class Tenants:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def ensure(
        self,
        name: str,
        *,
        max_active_jobs: int | None = None,
        max_queued_frames: int | None = None,
        prefixes: Sequence[str] | None = None,
    ) -> Tenant:
        """The tenant, created if new; the limits and prefixes given replace its own."""
        if not TENANT_NAME.fullmatch(name):
            raise ConfigError(f"tenant name must be lower-case letters, digits, - or _ (1-64), got {name!r}")
        for limit in (max_active_jobs, max_queued_frames):
            if limit is not None and limit < 1:
                raise ConfigError(f"tenant limits must be at least 1, got {limit}")
        checked = [check_prefix(p) for p in prefixes] if prefixes is not None else None
        with self.sessions.begin() as s:
            if checked:
                self._refuse_overlaps(s, name, checked)
            tenant = s.get(Tenant, name)
            if tenant is None:
                tenant = Tenant(
                    name=name,
                    webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
                    max_active_jobs=ACTIVE_JOBS,
                    max_queued_frames=QUEUED_FRAMES,
                    prefixes=[],
                    created_at=db_now(),
                )
                s.add(tenant)
            if max_active_jobs is not None:
                tenant.max_active_jobs = max_active_jobs
            if max_queued_frames is not None:
                tenant.max_queued_frames = max_queued_frames
            if checked is not None:
                tenant.prefixes = checked
            s.flush()
            return tenant

    @staticmethod
    def _refuse_overlaps(s: Session, name: str, prefixes: Sequence[str]) -> None:
        """A folder of one tenant may not hold or lie in another's: each would read the other's."""
        for other in s.scalars(select(Tenant).where(Tenant.name != name)):
            for mine in prefixes:
                for theirs in other.prefixes:
                    if mine.startswith(theirs) or theirs.startswith(mine):
                        raise ConfigError(f"store prefix {mine!r} overlaps tenant {other.name}'s {theirs!r}")

    def get(self, name: str) -> Tenant | None:
        with self.sessions() as s:
            return s.get(Tenant, name)

    def create_key(self, tenant: str) -> NewKey:
        if self.get(tenant) is None:
            raise ConfigError(f"no tenant {tenant!r}")
        key_id = secrets.token_hex(6)
        key = f"fq_{key_id}_{secrets.token_urlsafe(32)}"
        with self.sessions.begin() as s:
            s.add(ApiKey(id=key_id, tenant=tenant, key_hash=key_hash(key), created_at=db_now()))
        return NewKey(key_id, tenant, key)

    def revoke_key(self, key_id: str) -> bool:
        with self.sessions.begin() as s:
            changed = s.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=db_now())
                .returning(ApiKey.id)
            ).all()
            return bool(changed)

    def keys(self, tenant: str | None = None) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        with self.sessions() as s:
            return list(s.scalars(query).all())

    def authenticate(self, key: str) -> Tenant | None:
        """The tenant whose live key this is, or None (malformed, unknown or revoked)."""
        if not KEY_FORM.fullmatch(key):
            return None
        with self.sessions() as s:
            return s.scalar(
                select(Tenant)
                .join(ApiKey, ApiKey.tenant == Tenant.name)
                .where(ApiKey.key_hash == key_hash(key), ApiKey.revoked_at.is_(None))
            )
