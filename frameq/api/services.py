"""What the API process holds for its whole life, and the work it does in the background."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import kombu.pools
from sqlalchemy import Engine

from orchestrator.db import RECONCILER_LOCK_KEY, ClusterLock, make_engine, make_sessions, upgrade
from orchestrator.dispatch import CeleryDispatcher
from orchestrator.reconcile import every_s
from orchestrator.repository import Repository
from orchestrator.retention import gc
from orchestrator.retry import RetryPolicy
from orchestrator.settings import Settings
from orchestrator.store import Store, open_store
from orchestrator.tenants import Tenants
from orchestrator.webhooks import Sender, Webhooks

log = logging.getLogger("frameq.api")

WEBHOOK_EVERY_S = 1.0
HOUSEKEEPING_EVERY_S = 10.0  # at most; a short lease makes it more often (reconcile.every_s)
POOL_CHECK_S = 1.0  # how soon a local worker that died is replaced
RESTART_WINDOW_S = 60.0  # restarts of local workers are counted over this
SPOOL_MAX_AGE_S = 86400.0  # an upload spool file untouched this long is a dead process's
SPOOL_SWEEP_EVERY_S = 3600.0


@dataclass
class Services:
    settings: Settings
    repo: Repository
    tenants: Tenants
    webhooks: Webhooks
    store: Store
    dispatcher: CeleryDispatcher | None  # distributed mode: where ready tasks are sent
    engine: Engine
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pool: LocalPool | None = None

    @classmethod
    def open(cls, settings: Settings) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        if settings.embedded:
            upgrade(engine)  # as `frameq run` does; a cluster's database is migrated by `frameq db upgrade`
        sessions = make_sessions(engine)
        repo = Repository(sessions)
        dispatcher = None if settings.embedded else CeleryDispatcher.from_settings(settings, repo)
        store = open_store(settings.store_url, settings.home / "scratch")
        sweep_spool(spool_folder(settings))
        return cls(settings, repo, Tenants(sessions), Webhooks(sessions), store, dispatcher, engine)

    def start(self, local_workers: int) -> None:
        """Background work: webhooks and the sweeping of old upload spool files always; in
        embedded mode a pool of `local_workers` processes running tasks, kept at that number,
        and the housekeeping a cluster's reconciler does."""
        self._spawn(self._deliver_webhooks, "frameq-webhooks")
        self._spawn(self._housekeeping, "frameq-housekeeping")
        if self.settings.embedded and local_workers > 0:
            self._pool = LocalPool(self.settings, local_workers)
            self._pool.start()
            self._spawn(self._supervise, "frameq-pool")

    def workers(self) -> tuple[int, int] | None:
        """Embedded mode: (local workers alive, how many there should be); None in a cluster,
        whose workers are processes of their own."""
        if not self.settings.embedded:
            return None
        pool = self._pool
        return (pool.alive(), pool.size) if pool is not None else (0, 0)

    def stop(self) -> None:
        self._stop.set()
        pool = self._pool
        if pool is not None:
            pool.signal_stop()  # workers stop after their current task
        for thread in self._threads:
            thread.join(15)
        if pool is not None:
            pool.stop()
        # The pool's event holds semaphores, released with the last reference to it; one still
        # held at exit is reported by multiprocessing's resource tracker as leaked.
        self._pool = None
        if self.dispatcher is not None:
            # The broker connections of its pool (the producers' are the same ones). The pools
            # are kombu's, shared by every Celery app of the process on the same broker: the
            # closed ones are dropped from its registry, so another app opens new ones rather
            # than meeting "Acquire on closed pool".
            app = self.dispatcher.app
            broker = app.connection_for_write()
            app.pool.force_close_all()
            app.close()
            for group in (kombu.pools.connections, kombu.pools.producers):
                with contextlib.suppress(KeyError):
                    del group[broker]
        self.engine.dispose()

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _deliver_webhooks(self) -> None:
        sender = Sender(self.webhooks, self.settings.webhook_allow_private)
        try:
            while not self._stop.wait(WEBHOOK_EVERY_S):
                try:
                    sender.round()
                except Exception as exc:  # a database blip: the next round tries again
                    log.warning("webhook round failed: %s: %s", type(exc).__name__, exc)
        finally:
            sender.close()

    def _supervise(self) -> None:
        pool = self._pool
        while pool is not None and not self._stop.wait(POOL_CHECK_S):
            try:
                pool.supervise()
            except Exception as exc:  # a process that cannot be started now may be next time
                log.error("local workers not restarted: %s: %s", type(exc).__name__, exc)

    def _housekeeping(self) -> None:
        """Spool files of uploads that a dead process left are deleted; and in embedded mode,
        what the reconciler does in a cluster: tasks of a local worker that died are given back
        (their lease ran out), and finished jobs' leftovers are deleted. Those rounds are made
        only while this process holds the reconciler's lock, so that of several `frameq api`
        processes on one database one does them (a killed holder's lock passes on)."""
        every = min(HOUSEKEEPING_EVERY_S, every_s(self.settings))
        next_sweep = time.monotonic() + SPOOL_SWEEP_EVERY_S
        embedded = self.settings.embedded
        lock = ClusterLock(self.settings.database_url, RECONCILER_LOCK_KEY) if embedded else None
        leading = False
        try:
            while not self._stop.wait(every):
                if lock is not None:
                    leading = self._reconcile(lock, leading, every)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SPOOL_SWEEP_EVERY_S
                    sweep_spool(spool_folder(self.settings))
        finally:
            if lock is not None:
                lock.release()

    def _reconcile(self, lock: ClusterLock, leading: bool, every: float) -> bool:
        """One round if this process holds the lock; returns whether it does."""
        try:
            if not lock.held():
                if leading:
                    log.info("another process does the housekeeping now")
                return False
            if not leading:
                log.info("this process does the housekeeping now (every %gs)", every)
            self.repo.reap_expired(RetryPolicy().max_attempts)
            gc(
                self.repo,
                self.store,
                older_than_s=self.settings.outputs_ttl_s,
                grace_s=self.settings.lease_s,
            )
            return True
        except Exception as exc:
            log.warning("housekeeping failed: %s: %s", type(exc).__name__, exc)
            return leading


@dataclass
class _Slot:
    name: str
    process: SpawnProcess
    reported: bool = False  # its end was logged


class LocalPool:
    """Embedded mode's worker processes, kept at their number: one that dies (killed for its
    memory, a decoder's crash on a crafted file) is replaced at the next `supervise`, at most
    `restarts_per_minute` times a minute in all, so that workers dying as they start (a broken
    install) do not have the API spawn them without end."""

    def __init__(self, settings: Settings, size: int, restarts_per_minute: int | None = None) -> None:
        self.settings = settings
        self.size = size
        self.restarts_per_minute = restarts_per_minute or max(6, size)
        self._context = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._stop: Any = self._context.Event()
        self._slots: list[_Slot] = []
        self._restarts: deque[float] = deque()  # time.monotonic() of each, within the window
        self._held_back = False
        self._lock = threading.Lock()  # the request threads ask `alive` while `supervise` runs

    def start(self) -> None:
        with self._lock:
            for n in range(self.size):
                name = f"frameq-worker-{n}"
                self._slots.append(_Slot(name, self._process(name)))

    def alive(self) -> int:
        with self._lock:
            return sum(slot.process.is_alive() for slot in self._slots)

    def supervise(self) -> int:
        """Replace the workers that ended since the last call, logging how each ended.
        Returns how many were started."""
        started = 0
        with self._lock:
            if self._stop.is_set():
                return 0
            now = time.monotonic()
            while self._restarts and self._restarts[0] <= now - RESTART_WINDOW_S:
                self._restarts.popleft()
            for slot in self._slots:
                if slot.process.is_alive():
                    continue
                if not slot.reported:
                    slot.reported = True
                    process = slot.process
                    log.error("local worker %s (pid %s) %s", slot.name, process.pid, ended(process.exitcode))
                if len(self._restarts) >= self.restarts_per_minute:
                    if not self._held_back:
                        self._held_back = True
                        log.error(
                            "local workers restarted %s times in %gs: no more restarts until that slows",
                            len(self._restarts),
                            RESTART_WINDOW_S,
                        )
                    continue
                slot.process.close()
                slot.process, slot.reported = self._process(slot.name), False
                self._restarts.append(now)
                self._held_back = False
                started += 1
        if started:
            log.warning("started %s local worker(s) in place of those that ended", started)
        return started

    def signal_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Stop every worker after its current task (30 s each at most, then terminated)."""
        self._stop.set()
        with self._lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            slot.process.join(30)
            if slot.process.is_alive():
                slot.process.terminate()  # its task's lease runs out and the next start runs it again
                slot.process.join(5)

    def _process(self, name: str) -> SpawnProcess:
        process = self._context.Process(target=_local_worker, args=(self.settings, self._stop), name=name)
        process.start()
        return process


def ended(exitcode: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name} (exit code {exitcode})"
    return f"exited with code {exitcode}"


def spool_folder(settings: Settings) -> Path:
    """Where POST /v1/jobs spools uploads (frameq/api/jobs.py)."""
    return settings.home / "uploads"


def sweep_spool(folder: Path, older_than_s: float = SPOOL_MAX_AGE_S) -> int:
    """Delete upload spool files (upload-*) not written to for `older_than_s`: a process that
    died mid-upload left them. A younger one may be an upload under way in another API process
    on the same home, so it stays. Returns how many were deleted."""
    cutoff = time.time() - older_than_s
    deleted = 0
    try:
        found = sorted(folder.glob("upload-*"))
    except OSError:
        return 0
    for path in found:
        try:
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:  # its upload ended meanwhile
            continue
        except OSError as exc:
            log.warning("upload spool file %s not deleted: %s", path, exc)
    if deleted:
        log.warning("deleted %s upload spool file(s) older than %gs from %s", deleted, older_than_s, folder)
    return deleted


def _local_worker(settings: Settings, stop: Any) -> None:
    from workers.local import serve
    from workers.runtime import Runtime

    serve(Runtime.open(settings), stop)
