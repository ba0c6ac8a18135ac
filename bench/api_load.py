"""Load on the HTTP API: concurrent clients submitting small image jobs and polling them.

Starts its own stack (`frameq api` in embedded mode, with a temporary FRAMEQ_HOME, a tenant with
high limits and its key), or uses a running one on this machine (--url with --key). Each client
thread takes the next job, submits it (a 96x96 PNG, `cartoon`) with an Idempotency-Key, sends
every fourth submission twice as a client that lost the answer would, then polls the job until
it finishes, listing the tenant's jobs every few polls. The main thread scrapes /metrics now and
then. Prints requests/s and p50/p95/p99 latency per endpoint, then checks that no job was lost or
duplicated: every key made exactly one job, GET /v1/jobs lists exactly the jobs submitted, and all
of them are done. Exits 1 when a check fails.

Traffic stays on loopback; counts and times are bounded and it stops by itself. The clients and
the server share this machine's cores, so the figures are of both together.
Usage: python bench/api_load.py [--clients 4] [--jobs 40] [--duration-s 60] [--url URL --key KEY]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
RESEND_EVERY = 4  # every 4th job is submitted twice with the same key
LIST_EVERY = 5  # a list request after every 5th status poll
METRICS_EVERY_S = 2.0
ENDPOINTS = ("submit", "status", "list", "metrics")
FRAMEQ = [sys.executable, "-m", "frameq"]
HIGH_LIMITS = ["--max-active-jobs", "100000", "--max-queued-frames", "100000000"]


@dataclass
class Record:
    """What all clients saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # unexpected answers
    answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # key -> ids given
    problems: list[str] = field(default_factory=list)
    resent: int = 0
    throttled: int = 0  # 429s, waited out

    def timed(self, endpoint: str, call: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            answer: httpx.Response | None = call()
        except httpx.HTTPError as exc:
            answer = None
            self.problem(f"{endpoint}: {type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies[endpoint].append(elapsed)
            if answer is None or (answer.status_code >= 400 and answer.status_code != 429):
                self.failures[endpoint] += 1
        return answer

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 20:  # the first few say enough
                self.problems.append(text)


class Stack:
    """`frameq api` in embedded mode in a temporary home, and a tenant with high limits."""

    def __init__(self, local_workers: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="frameq-load-")
        home = Path(self._tmp.name)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEQ_")}
        self.env["FRAMEQ_HOME"] = str(home / "home")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(home / "api.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*FRAMEQ, "api", "--port", str(port), "--local-workers", str(local_workers)],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not _healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"frameq api did not start: {(home / 'api.log').read_text()[-2000:]}")
            time.sleep(0.2)
        self.key = self._new_key(f"load-{secrets.token_hex(3)}")
        self._warm_up(self._new_key(f"warmup-{secrets.token_hex(3)}"))

    def _new_key(self, tenant: str) -> str:
        created = subprocess.run(
            [*FRAMEQ, "keys", "create", "--tenant", tenant, *HIGH_LIMITS],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if created.returncode != 0:
            self.stop()
            raise SystemExit(f"frameq keys create failed: {created.stderr.strip()}")
        return created.stdout.strip()

    def _warm_up(self, key: str) -> None:
        """One job of another tenant first: the local worker imports torch and loads the style
        when its first task comes, which would otherwise count in the first jobs' times."""
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            files = {"file": ("warmup.png", _image())}
            answer = client.post("/v1/jobs", files=files, data={"recipe": "cartoon"})
            answer.raise_for_status()
            deadline = time.monotonic() + 120
            while client.get(f"/v1/jobs/{answer.json()['id']}").json()["finished_at"] is None:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("the warm-up job did not finish within 120 s")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._tmp.cleanup()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _image() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", pixels)
    assert ok
    return png.tobytes()


class Clients:
    """The client threads' shared plan: which job is next, and when to stop."""

    def __init__(self, args: argparse.Namespace, url: str, key: str, tag: str) -> None:
        self.args, self.url, self.key, self.tag = args, url, key, tag
        self.record = Record()
        self.image = _image()
        self.taken = 0  # jobs handed to a client so far
        self._lock = threading.Lock()
        self.submit_until = time.monotonic() + args.duration_s  # no new job after this
        self.finish_until = self.submit_until + args.drain_s  # nor any request

    def take(self) -> int | None:
        with self._lock:
            if self.taken >= self.args.jobs or time.monotonic() > self.submit_until:
                return None
            self.taken += 1
            return self.taken - 1

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        polls = 0  # this client's, so it lists every LIST_EVERY polls however short its jobs
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while (n := self.take()) is not None:
                job_id = self._submit(client, n)
                if job_id is not None and n % RESEND_EVERY == 0:
                    with self.record.lock:
                        self.record.resent += 1
                    self._submit(client, n)  # the same key again: must answer the same job
                if job_id is not None:
                    polls = self._follow(client, job_id, polls)

    def _submit(self, client: httpx.Client, n: int) -> str | None:
        key = f"{self.tag}-{n}"
        files = {"file": (f"{key}.png", self.image)}
        data = {"recipe": "cartoon"}
        while time.monotonic() < self.finish_until:
            answer = self.record.timed(
                "submit",
                lambda: client.post("/v1/jobs", files=files, data=data, headers={"Idempotency-Key": key}),
            )
            if answer is not None and answer.status_code in (200, 201):
                job_id = str(answer.json()["id"])
                with self.record.lock:
                    self.record.answers[key].append(job_id)
                return job_id
            if answer is not None and answer.status_code == 429:  # a tenant of --url at its limit
                with self.record.lock:
                    self.record.throttled += 1
                time.sleep(1.0)  # not its Retry-After (30 s): a bounded run would end waiting
                continue
            detail = answer.text[:200] if answer is not None else "no answer"
            status = answer.status_code if answer is not None else "-"
            self.record.problem(f"submit {key}: {status} {detail}")
            if answer is not None and answer.status_code < 500:
                return None  # refused for good: resending changes nothing
            time.sleep(0.5)  # a server error or a lost connection: the same key again
        return None

    def _follow(self, client: httpx.Client, job_id: str, polls: int) -> int:
        """Poll the job until it finishes; returns the client's polls so far."""
        while time.monotonic() < self.finish_until:
            time.sleep(self.args.poll_s)
            answer = self.record.timed("status", lambda: client.get(f"/v1/jobs/{job_id}"))
            polls += 1
            if polls % LIST_EVERY == 0:
                self.record.timed("list", lambda: client.get("/v1/jobs", params={"limit": 20}))
            if answer is not None and answer.status_code == 200 and answer.json()["finished_at"]:
                return polls
        self.record.problem(f"job {job_id} not finished within the run")
        return polls


def listing(client: httpx.Client) -> list[dict[str, Any]]:
    """Every job of the tenant, all pages."""
    jobs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):  # bounded: 2 million jobs at 200 a page
        params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params)
        page.raise_for_status()
        body = page.json()
        jobs += body["jobs"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    return jobs


def check(clients: Clients, listed: list[dict[str, Any]], own_tenant: bool) -> list[str]:
    """What went wrong with the jobs: lost, duplicated, unfinished. Empty when all is well."""
    record, wrong = clients.record, []
    taken = clients.taken
    for n in range(taken):
        ids = set(record.answers.get(f"{clients.tag}-{n}", []))
        if len(ids) != 1:
            wrong.append(f"key {clients.tag}-{n} answered {len(ids)} job ids: {sorted(ids)}")
    submitted = {ids[0] for ids in record.answers.values() if ids}
    ours = [j for j in listed if j["input_name"].startswith(f"{clients.tag}-")]
    by_name: dict[str, list[str]] = defaultdict(list)
    for job in ours:
        by_name[job["input_name"]].append(job["id"])
    for name, named in sorted(by_name.items()):
        if len(named) > 1:
            wrong.append(f"{name}: {len(named)} jobs listed ({', '.join(named)})")
    listed_ids = {j["id"] for j in ours}
    if listed_ids != submitted:
        wrong.append(
            f"GET /v1/jobs lists {len(listed_ids)} of this run's jobs, {len(submitted)} were submitted "
            f"(missing {sorted(submitted - listed_ids)[:5]}, extra {sorted(listed_ids - submitted)[:5]})"
        )
    if own_tenant and len(listed) != len(ours):
        wrong.append(f"the tenant has {len(listed) - len(ours)} jobs this run did not submit")
    if len(submitted) != taken:
        wrong.append(f"{taken - len(submitted)} of {taken} jobs got no id")
    unfinished = [f"{j['id']} {j['state']}" for j in ours if j["state"] != "done"]
    if unfinished:
        wrong.append(f"{len(unfinished)} jobs not done: {', '.join(unfinished[:5])}")
    return wrong


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    rank = max(1, int(np.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def report(record: Record, seconds: float) -> None:
    print(f"{'endpoint':<9} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}", end="")
    print(f" {'errors':>6}")
    every: list[float] = []
    for endpoint in ENDPOINTS:
        values = sorted(record.latencies.get(endpoint, []))
        every += values
        _row(endpoint, values, seconds, record.failures.get(endpoint, 0))
    _row("all", sorted(every), seconds, sum(record.failures.values()))


def _row(name: str, values: list[float], seconds: float, errors: int) -> None:
    if not values:
        print(f"{name:<9} {0:>8}")
        return
    p50, p95, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.95, 0.99))
    rate = len(values) / seconds
    print(f"{name:<9} {len(values):>8} {rate:>7.1f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {errors:>6}")


def job_times(jobs: list[dict[str, Any]]) -> str:
    """Created to finished, as the server recorded them (queueing included)."""
    spans = sorted(
        (datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["created_at"])).total_seconds()
        for j in jobs
        if j["finished_at"]
    )
    if not spans:
        return "none finished"
    return f"p50 {statistics.median(spans):.2f} s, p95 {percentile(spans, 0.95):.2f} s, max {spans[-1]:.2f} s"


def bounded(cast: type, low: float, high: float) -> Any:
    """An argparse type: a number within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low:g}..{high:g}, got {text}")
        return value

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=bounded(int, 1, 64), default=4, help="1..64 client threads")
    parser.add_argument("--jobs", type=bounded(int, 1, 1000), default=40, help="1..1000 jobs in all")
    parser.add_argument(
        "--duration-s", type=bounded(float, 1, 600), default=60.0, help="no job submitted after this (1..600)"
    )
    parser.add_argument(
        "--drain-s", type=bounded(float, 1, 600), default=60.0, help="then waits for jobs (1..600)"
    )
    parser.add_argument("--poll-s", type=bounded(float, 0.05, 5), default=0.25, help="poll gap (0.05..5)")
    parser.add_argument("--local-workers", type=bounded(int, 1, 8), default=1, help="own stack: 1..8 workers")
    parser.add_argument("--url", help="a running frameq api on this machine, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", help="an API key of a tenant of --url")
    args = parser.parse_args()
    if (args.url is None) != (args.key is None):
        parser.error("--url and --key go together")
    if args.url is not None and urlsplit(args.url).hostname not in LOOPBACK:
        parser.error(f"--url must be on this machine ({', '.join(LOOPBACK)}): only loopback traffic")

    stack = Stack(args.local_workers) if args.url is None else None
    url, key = (stack.url, stack.key) if stack else (args.url.rstrip("/"), args.key)
    try:
        return _load(args, url, key, own_tenant=stack is not None)
    finally:
        if stack is not None:
            stack.stop()


def _load(args: argparse.Namespace, url: str, key: str, own_tenant: bool) -> int:
    tag = f"load-{secrets.token_hex(4)}"
    where = f"embedded stack, {args.local_workers} local worker(s)" if own_tenant else "given server"
    print(f"api load: {args.clients} clients, {args.jobs} cartoon jobs on a 96x96 PNG, {where} at {url}")
    clients = Clients(args, url, key, tag)
    threads = [threading.Thread(target=clients.run, name=f"client-{i}") for i in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=url, timeout=30) as scraper:
        while any(t.is_alive() for t in threads):
            clients.record.timed("metrics", lambda: scraper.get("/metrics"))
            next_scrape = time.monotonic() + METRICS_EVERY_S
            for thread in threads:
                thread.join(max(0.0, next_scrape - time.monotonic()))
    seconds = time.perf_counter() - started
    record = clients.record
    print(
        f"{seconds:.1f} s: {clients.taken} jobs submitted ({record.resent} sent twice with their key, "
        f"{record.throttled} answers 429)"
    )
    report(record, seconds)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        listed = listing(client)
    ours = [j for j in listed if j["input_name"].startswith(f"{tag}-")]
    print(f"job time, created to finished: {job_times(ours)}")
    wrong = check(clients, listed, own_tenant) + record.problems
    for line in wrong:
        print(f"FAILED: {line}")
    if not wrong:
        print(f"checks: {len(ours)} keys, one job each; GET /v1/jobs lists exactly them; all done")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
