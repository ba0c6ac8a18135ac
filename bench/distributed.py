"""The same job embedded, on 1 worker and on 2 workers (PostgreSQL, Redis, S3 endpoint).

Prints frames/s of each, the scaling ratio (2 workers / 1 worker), what the workers downloaded
from the store (counted by a proxy in front of the S3 endpoint, so any version of frameq is
measured alike: in all, per task, and how many tasks fetched the whole input), and the
per-task overhead of distributed mode measured on the task rows: dispatch -> start (message
sent until a worker claimed it, on an idle worker) and end -> dependents started (a task's end
until a task that waited for it was claimed).

Needs PostgreSQL (FRAMEQ_BENCH_POSTGRES_URL, default the local server) and Redis
(FRAMEQ_BENCH_REDIS_URL, default redis://127.0.0.1:6379/14); starts its own S3 endpoint
(moto server). Each configuration gets the machine's cores split between its workers.
Usage: python bench/distributed.py [--frames N] [--segment-s S] [--recipe R] [--workers 1,2]
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
from pathlib import Path, PurePosixPath

import boto3
import redis
from clips import make_clip  # bench/ is on sys.path when this runs as a script
from s3_counter import S3Counter
from sqlalchemy import create_engine, text

from orchestrator.db import make_engine, make_sessions
from orchestrator.repository import Repository
from orchestrator.schema import Task

PG = os.environ.get("FRAMEQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("FRAMEQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FRAMEQ = str(Path(sys.executable).parent / "frameq")


def run(env: dict[str, str], *args: str) -> str:
    return subprocess.run([FRAMEQ, *args], env=env, check=True, capture_output=True, text=True).stdout.strip()


def embedded(clip: Path, tmp: Path, segment_s: float, recipe: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
    env.update(FRAMEQ_HOME=str(tmp / "embedded"), FRAMEQ_SEGMENT_S=str(segment_s))
    start = time.perf_counter()
    run(env, "run", str(clip), "-o", str(tmp / "embedded.mp4"), "-r", recipe)
    return time.perf_counter() - start


def distributed(
    clip: Path, env: dict[str, str], workers: int, recipe: str
) -> tuple[float, list[Task], Repository]:
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
        job_id = run(env, "submit", str(clip), "-r", recipe)
        while (job := repo.get_job(job_id)).finished_at is None:
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        if job.state != "done":
            raise RuntimeError(f"job {job_id} {job.state}: {job.error}")
        return elapsed, repo.tasks(job_id), repo
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def overheads(tasks: list[Task], repo: Repository) -> tuple[list[float], list[float]]:
    """(dispatch -> start, end of what it waited for -> start) in seconds.

    Pick-up is taken from plan and assemble only: the worker is idle when they are sent, so
    the time is overhead, not waiting behind other segments. Hand-off is taken for every task
    after plan, from the moment it could have started (its inputs done, and its worker done
    with the task it ran before) to its start: the gap between tasks that no work filled.
    """
    pickup = [
        (t.started_at - t.dispatched_at).total_seconds()
        for t in tasks
        if t.stage in ("plan", "assemble") and t.started_at and t.dispatched_at
    ]
    plans = {t.job_id: t for t in tasks if t.stage == "plan"}
    by_worker: dict[str | None, list[Task]] = {}
    for task in tasks:
        by_worker.setdefault(task.worker, []).append(task)
    handoff = []
    for task in tasks:
        if task.stage == "plan" or not task.started_at:
            continue
        needs = [n for stage in repo.inputs(task.id).values() for n in stage] or [plans[task.job_id]]
        ready = max(n.finished_at for n in needs if n.finished_at)
        before = [
            t.finished_at
            for t in by_worker[task.worker]
            if t.finished_at and t.started_at and t.started_at < task.started_at and t.id != task.id
        ]
        free = max([ready, *before])
        handoff.append((task.started_at - free).total_seconds())
    return pickup, handoff


def downloads(counter: S3Counter, tasks: list[Task]) -> str:
    total = sum(counter.downloaded.values())
    whole = sum(n for path, n in counter.gets.items() if PurePosixPath(path).stem == "source")
    line = (
        f"downloaded {total / 2**20:8.1f} MiB in {sum(counter.gets.values())} GETs, "
        f"{total / 2**20 / max(1, len(tasks)):.2f} MiB a task over {len(tasks)} tasks; "
        f"the whole input fetched {whole} times"
    )
    by_stage: dict[str, list[int]] = {}
    for task in tasks:
        if hasattr(task, "read_bytes"):  # recorded by each task since frameq records it
            by_stage.setdefault(task.stage, []).append(task.read_bytes)
    if by_stage:
        medians = ", ".join(f"{stage} {statistics.median(n) / 2**20:.2f}" for stage, n in by_stage.items())
        line += f"\n           read per task, median MiB by stage (task rows): {medians}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--segment-s", type=float, default=1.0)
    parser.add_argument("--recipe", default="cartoon")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded run")
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
        with tempfile.TemporaryDirectory() as tmp_dir, S3Counter(f"http://127.0.0.1:{port}") as counter:
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
                "AWS_ENDPOINT_URL": counter.url,
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
                f"clip: 1920x1080, {args.frames} frames ({clip.stat().st_size / 2**20:.1f} MiB), recipe "
                f"{args.recipe}, segments of ~{args.segment_s} s, {os.cpu_count()} cores split between "
                "the workers of each run"
            )
            seconds = (
                {} if args.no_embedded else {"embedded": embedded(clip, tmp, args.segment_s, args.recipe)}
            )
            tasks: list[Task] = []
            repo = None
            for workers in (int(n) for n in args.workers.split(",")):
                name = f"{workers} worker{'s' if workers > 1 else ''}"
                counter.reset()
                seconds[name], rows, repo = distributed(clip, env, workers, args.recipe)
                tasks += rows
                print(f"{name:<10} {downloads(counter, rows)}")
            for name, s in seconds.items():
                print(f"{name:<10} {args.frames / s:6.2f} frames/s  ({s:.1f} s)")
            if "1 worker" in seconds and "2 workers" in seconds:
                print(f"scaling 2 workers / 1 worker: {seconds['1 worker'] / seconds['2 workers']:.2f}x")
            assert repo is not None
            pickup, handoff = overheads(tasks, repo)
            print(
                f"dispatch -> start   median {statistics.median(pickup) * 1000:.0f} ms, "
                f"max {max(pickup) * 1000:.0f} ms over {len(pickup)} tasks (idle worker)"
            )
            print(
                f"end -> next start   median {statistics.median(handoff) * 1000:.0f} ms, "
                f"max {max(handoff) * 1000:.0f} ms over {len(handoff)} tasks"
            )
    finally:
        moto.terminate()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
