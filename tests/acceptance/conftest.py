from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.cluster import Cluster


@pytest.fixture
def cluster(
    postgres_url: str, redis_url: str, s3_env: dict[str, str], frameq_env: dict[str, str], tmp_path: Path
) -> Iterator[Cluster]:
    env = {
        **frameq_env,
        **s3_env,
        "FRAMEQ_DATABASE_URL": postgres_url,
        "FRAMEQ_BROKER_URL": redis_url,
        "FRAMEQ_STORE_URL": f"s3://{s3_env['FRAMEQ_TEST_BUCKET']}/frameq",
        "FRAMEQ_SEGMENT_S": "0.5",
        "FRAMEQ_LEASE_S": "4",  # short, so a killed worker's task is taken over quickly
        "FRAMEQ_RESEND_S": "30",
    }
    c = Cluster(env, tmp_path)
    c.cli("db", "upgrade")
    yield c
    for proc in c.workers:
        if proc.poll() is None:
            c.kill(proc)
