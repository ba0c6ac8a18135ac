"""The same cartoon job embedded, on 1 worker and on 2 workers (PostgreSQL, Redis, S3 endpoint).

Prints frames/s of each, the scaling ratio (2 workers / 1 worker), and the per-task overhead
of distributed mode measured on the task rows: dispatch -> start (message sent until a worker
claimed it, on an idle worker) and end -> dependents ready (a task's end until the message of
a task that waited for it was sent).

Needs PostgreSQL (FRAMEQ_BENCH_POSTGRES_URL, default the local server) and Redis
(FRAMEQ_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14); starts its own S3 endpoint
(moto server). Each configuration gets the machine's cores split between its workers.
Usage: python bench/distributed.py [--frames N] [--segment-s S]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import redis
from clips import make_clip  # bench/ is on sys.path when this runs as a script
from sqlalchemy import create_engine, text

from orchestrator.db import make_engine, make_sessions
from orchestrator.repository import Repository
from orchestrator.schema import Task

PG = os.environ.get("FRAMEQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FRAMEQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FRAMEQ = str(Path(sys.executable).parent / "frameq")


def run(env: dict[str, str], *args: str) -> str:
    return subprocess.run([FRAMEQ, *args], env=env, check=True, capture_output=True, text=True).stdout.strip()


def embedded(clip: Path, tmp: Path, segment_s: float) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env.update(FRAMEQ_HOME=str(tmp / "embedded"), FRAMEQ_SEGMENT_S=str(segment_s))
    start = time.perf_counter()
    run(env, "run", str(clip), "-o", str(tmp / "embedded.mp4"))
    return time.perf_counter() - start


def distributed(clip: Path, env: dict[str, str], workers: int) -> tuple[float, list[Task]]:
    """Wall time from submit to done with `workers` single-process workers, and the task rows."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [
        subprocess.Popen(
            [FRAMEQ, "worker", "-c", "1", "--loglevel", "WARNING"],
            env={**env, "OMP_NUM_THREADS": str(threads)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    repo = Repository(make_sessions(make_engine(env["FRAMEQ_DATABASE_URL"])))
    try:
        time.sleep(6)  # workers up and waiting, so the job measures work, not start-up
        start = time.perf_counter()
        job_id = run(env, "submit", str(clip))
        while (job := repo.get_job(job_id)).finished_at is None:
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        if job.state != "done":
            raise RuntimeError(f"job {job_id} {job.state}: {job.error}")
        return elapsed, repo.tasks(job_id)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def overheads(tasks: list[Task]) -> tuple[list[float], list[float]]:
    """(dispatch -> start, end of what it waited for -> dispatch) in seconds.

    Pick-up is taken from plan and assemble only: the worker is idle when they are sent, so
    the time is overhead, not waiting behind other segments.
    """
    by_stage: dict[tuple[str, str], list[Task]] = {}
    for task in tasks:
        by_stage.setdefault((task.job_id, task.stage), []).append(task)
    pickup = [
        (t.started_at - t.dispatched_at).total_seconds()
        for t in tasks
        if t.stage in ("plan", "assemble") and t.started_at and t.dispatched_at
    ]
    handoff = []
    for task in tasks:
        stage = {"plan": None, "assemble": "style"}.get(task.stage, "plan")
        needs = by_stage.get((task.job_id, stage), []) if stage else []
        if needs and task.dispatched_at:
            handoff.append(
                (task.dispatched_at - max(n.finished_at for n in needs if n.finished_at)).total_seconds()
            )
    return pickup, handoff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--segment-s", type=float, default=1.0)
    args = parser.parse_args()
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    database = f"frameq_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    port = 5600 + secrets.randbelow(300)
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            clip = tmp / "clip-1080p.mp4"
            make_clip(clip, args.frames)
            time.sleep(2)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")},
                "FRAMEQ_HOME": str(tmp / "home"),
                "FRAMEQ_DATABASE_URL": admin.url.set(database=database).render_as_string(False),
                "FRAMEQ_BROKER_URL": REDIS,
                "FRAMEQ_STORE_URL": "s3://frameq-bench/jobs",
                "FRAMEQ_SEGMENT_S": str(args.segment_s),
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            boto3.client(
                "s3",
                endpoint_url=env["AWS_ENDPOINT_URL"],
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            ).create_bucket(Bucket="frameq-bench")
            redis.Redis.from_url(REDIS).flushdb()
            run(env, "db", "upgrade")
            print(
                f"clip: 1920x1080, {args.frames} frames, segments of ~{args.segment_s} s, "
                f"{os.cpu_count()} cores split between the workers of each run"
            )
            seconds = {"embedded": embedded(clip, tmp, args.segment_s)}
            tasks: list[Task] = []
            for workers in (1, 2):
                name = f"{workers} worker{'s' if workers > 1 else ''}"
                seconds[name], rows = distributed(clip, env, workers)
                tasks += rows
            for name, s in seconds.items():
                print(f"{name:<10} {args.frames / s:6.2f} frames/s  ({s:.1f} s)")
            print(f"scaling 2 workers / 1 worker: {seconds['1 worker'] / seconds['2 workers']:.2f}x")
            pickup, handoff = overheads(tasks)
            print(
                f"dispatch -> start   median {statistics.median(pickup) * 1000:.0f} ms, "
                f"max {max(pickup) * 1000:.0f} ms over {len(pickup)} tasks (idle worker)"
            )
            print(
                f"end -> next sent    median {statistics.median(handoff) * 1000:.0f} ms, "
                f"max {max(handoff) * 1000:.0f} ms over {len(handoff)} tasks"
            )
    finally:
        moto.terminate()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
