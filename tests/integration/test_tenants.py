"""Tenants and their keys on SQLite and PostgreSQL: only live keys open, prefixes never overlap."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import ConfigError
from orchestrator.schema import ApiKey
from orchestrator.tenants import ACTIVE_JOBS, QUEUED_FRAMES, Tenants, key_hash


def name() -> str:
    return f"t-{secrets.token_hex(4)}"


def test_a_key_opens_its_tenant_until_revoked(sessions: sessionmaker[Session]) -> None:
    tenants = Tenants(sessions)
    tenant = tenants.ensure(name())
    assert (tenant.max_active_jobs, tenant.max_queued_frames) == (ACTIVE_JOBS, QUEUED_FRAMES)
    assert tenant.webhook_secret.startswith("whsec_")
    new = tenants.create_key(tenant.name)
    found = tenants.authenticate(new.key)
    assert found is not None and found.name == tenant.name
    with sessions() as s:  # only the hash is kept
        row = s.get_one(ApiKey, new.id)
        assert row.key_hash == key_hash(new.key) and new.key not in row.key_hash
    assert tenants.authenticate(new.key[:-1] + ("A" if new.key[-1] != "A" else "B")) is None
    assert tenants.authenticate("not a key") is None
    assert tenants.revoke_key(new.id)
    assert not tenants.revoke_key(new.id)  # once
    assert tenants.authenticate(new.key) is None
    assert [k.id for k in tenants.keys(tenant.name)] == [new.id]


def test_ensure_changes_the_limits_it_is_given_only(sessions: sessionmaker[Session]) -> None:
    tenants = Tenants(sessions)
    tenant = name()
    tenants.ensure(tenant, max_active_jobs=2, prefixes=[f"uploads/{tenant}/"])
    again = tenants.ensure(tenant, max_queued_frames=50)
    assert (again.max_active_jobs, again.max_queued_frames) == (2, 50)
    assert again.prefixes == [f"uploads/{tenant}/"]


@pytest.mark.parametrize(
    "prefix",
    ["uploads", "/abs/", "/", "a/../b/", "a//b/", "jobs/x/", "./a/", "up\\loads/", "a\\..\\b/", "a\x00/"],
)
def test_bad_prefixes_are_refused(sessions: sessionmaker[Session], prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        Tenants(sessions).ensure(name(), prefixes=[prefix])


def test_prefixes_of_two_tenants_never_overlap(sessions: sessionmaker[Session]) -> None:
    tenants = Tenants(sessions)
    first, second = name(), name()
    tenants.ensure(first, prefixes=[f"shared-{first}/a/"])
    for overlapping in (f"shared-{first}/", f"shared-{first}/a/b/", f"shared-{first}/a/"):
        with pytest.raises(ConfigError, match="overlaps"):
            tenants.ensure(second, prefixes=[overlapping])
    tenants.ensure(second, prefixes=[f"shared-{first}/b/"])  # a sibling folder is fine
    tenants.ensure(first, prefixes=[f"shared-{first}/a/", f"shared-{first}/c/"])  # its own again


def test_names_and_limits_are_checked(sessions: sessionmaker[Session]) -> None:
    tenants = Tenants(sessions)
    for bad in ("", "Upper", "a b", "x" * 65, "../x"):
        with pytest.raises(ConfigError, match="tenant name"):
            tenants.ensure(bad)
    with pytest.raises(ConfigError, match="at least 1"):
        tenants.ensure(name(), max_active_jobs=0)
    with pytest.raises(ConfigError, match="no tenant"):
        tenants.create_key(name())
