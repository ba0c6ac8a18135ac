"""Settings read once from the environment, cast and validated, then passed down.

Nothing reads the environment at import time: call `Settings.from_env()` at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.params import PRESETS, check_encoding, check_work

__all__ = ["PRESETS", "Settings"]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    store_url: str
    broker_url: str | None
    segment_s: float = 2.0
    batch_frames: int = 8
    crf: int = 20
    preset: str = "fast"
    max_pixels: int = 4096 * 4096
    device: str = "auto"
    matte_model: str = "heavy"  # pose-landmark network of the matte stage: heavy or full (faster)
    lease_s: float = 120.0  # a running task not heard from for this long is given to another worker
    resend_s: float = 300.0  # a ready task whose message is this old is sent again (broker lost it)
    keep_intermediates: bool = False  # keep every stage's segments of a finished job (debugging)
    outputs_ttl_days: float | None = None  # outputs and inputs of jobs finished longer ago go (gc)
    max_upload_mb: float = 4096.0  # the largest file `POST /v1/jobs` takes
    # Webhooks to loopback, link-local and private addresses are refused unless this is set
    # (a receiver on the operator's own network; the tests' local receiver).
    webhook_allow_private: bool = False

    @property
    def outputs_ttl_s(self) -> float | None:
        """How long outputs of finished jobs are kept (None: for ever)."""
        return self.outputs_ttl_days * 86400 if self.outputs_ttl_days else None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def embedded(self) -> bool:
        """No broker configured: tasks run in the calling process."""
        return self.broker_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("FRAMEQ_HOME") or Path.home() / ".frameq").expanduser()
        settings = cls(
            home=home,
            database_url=env.get("FRAMEQ_DATABASE_URL") or f"sqlite:///{home / 'frameq.db'}",
            store_url=env.get("FRAMEQ_STORE_URL") or f"file://{home / 'store'}",
            broker_url=env.get("FRAMEQ_BROKER_URL") or None,
            segment_s=_number(env, "FRAMEQ_SEGMENT_S", float, 2.0),
            batch_frames=_number(env, "FRAMEQ_BATCH_FRAMES", int, 8),
            crf=_number(env, "FRAMEQ_CRF", int, 20),
            preset=env.get("FRAMEQ_PRESET", "fast"),
            max_pixels=_number(env, "FRAMEQ_MAX_PIXELS", int, 4096 * 4096),
            device=env.get("FRAMEQ_DEVICE", "auto"),
            matte_model=env.get("FRAMEQ_MATTE_MODEL", "heavy"),
            lease_s=_number(env, "FRAMEQ_LEASE_S", float, 120.0),
            resend_s=_number(env, "FRAMEQ_RESEND_S", float, 300.0),
            keep_intermediates=_flag(env, "FRAMEQ_KEEP_INTERMEDIATES"),
            outputs_ttl_days=_number(env, "FRAMEQ_OUTPUTS_TTL_DAYS", float, 0.0) or None,
            max_upload_mb=_number(env, "FRAMEQ_MAX_UPLOAD_MB", float, 4096.0),
            webhook_allow_private=_flag(env, "FRAMEQ_WEBHOOK_ALLOW_PRIVATE"),
        )
        return settings.with_changes(**{k: v for k, v in overrides.items() if v is not None})

    def with_changes(self, **changes: Any) -> Settings:
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.outputs_ttl_days is not None and self.outputs_ttl_days < 0:
            raise ConfigError(
                f"FRAMEQ_OUTPUTS_TTL_DAYS must be >= 0 (0: keep for ever), got {self.outputs_ttl_days}"
            )
        if self.max_upload_mb <= 0:
            raise ConfigError(f"FRAMEQ_MAX_UPLOAD_MB must be > 0, got {self.max_upload_mb}")
        check_encoding(self.crf, self.preset)
        check_work(self.segment_s, self.batch_frames, self.max_pixels, self.matte_model)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.lease_s < 1 or self.resend_s < 1:
            raise ConfigError(
                f"FRAMEQ_LEASE_S and FRAMEQ_RESEND_S must be at least 1, got {self.lease_s}, {self.resend_s}"
            )
        if not self.database_url.startswith(("sqlite:", "postgresql")):
            raise ConfigError(
                f"FRAMEQ_DATABASE_URL must be sqlite:///… or postgresql+psycopg://…, "
                f"got {self.database_url!r}"
            )
        if not self.store_url.startswith(("file://", "s3://")):
            raise ConfigError(f"FRAMEQ_STORE_URL must be file://… or s3://…, got {self.store_url!r}")


def _number(env: Mapping[str, str], name: str, cast: type, default: float) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no), got {raw!r}")
