"""`GET /metrics`: Prometheus' text format, computed from the database when scraped.

Nothing is counted in this process: every number is read from the tables (and, in distributed
mode, from the broker) at scrape time, so every API replica reports the same values, and a restart
loses nothing nor resets a counter (rows are never deleted, so counts of done or failed tasks
only grow). A scrape costs the few grouped statements of `Repository.metrics`, whatever the
number of jobs, and one passive queue declaration per broker queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString
from sqlalchemy.exc import SQLAlchemyError

from frameq.api.auth import CurrentServices
from frameq.api.schemas import Problem
from orchestrator.dispatch import PRIORITIES, CeleryDispatcher, priority_name
from orchestrator.repository import Repository
from orchestrator.schema import JobState, TaskState, WebhookState
from orchestrator.tasktypes import QUEUES, TASK_TYPES

log = logging.getLogger("frameq.api")
router = APIRouter(tags=["service"])

# Task run times: a histogram rather than a summary. A summary computed from the rows could only
# carry _count and _sum (the mean); cumulative buckets are counters too, so Prometheus gives
# windowed quantiles from them (histogram_quantile over rate()), summed across task types if
# wanted. The bounds span a built-in filter on one image (tens of ms) to a 2 s segment through
# the heavy matte network on a CPU (minutes); each bound is one more SUM(CASE) in the same pass.
BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class FrameqCollector:
    """Collects at scrape time; a `prometheus_client` Collector (its `collect` protocol)."""

    def __init__(self, repo: Repository, dispatcher: CeleryDispatcher | None) -> None:
        self.repo = repo
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        snap = self.repo.metrics(BUCKETS_S)  # first: a database down fails the scrape as a whole
        # Every known task type, state and priority appears, at 0 when it has nothing: a series
        # that comes and goes breaks rate() and alerts on its absence.
        types = sorted(set(TASK_TYPES) | {name for name, _ in snap.tasks})

        depth = GaugeMetricFamily(
            "frameq_queue_depth",
            "Tasks ready to run and waiting for a worker, by task type and job priority",
            labels=["task_type", "priority"],
        )
        waiting: dict[tuple[str, str], int] = {(t, p): 0 for t in types for p in PRIORITIES}
        for (name, level), n in snap.ready.items():
            waiting[(name, priority_name(level))] += n
        for (name, priority), n in sorted(waiting.items()):
            depth.add_metric([name, priority], n)
        yield depth

        running = GaugeMetricFamily(
            "frameq_tasks_running", "Tasks claimed by a worker and running", labels=["task_type"]
        )
        failures = CounterMetricFamily(
            "frameq_task_failures_total",
            "Tasks failed for good, failing their job (not those given back and run again)",
            labels=["task_type"],
        )
        frames = CounterMetricFamily(
            "frameq_frames_processed_total",
            "Frames of done tasks (rate() of it: frames per second)",
            labels=["task_type"],
        )
        durations = HistogramMetricFamily(
            "frameq_task_duration_seconds",
            "Run time of done tasks, from their last claim to completion",
            labels=["task_type"],
        )
        for name in types:
            running.add_metric([name], snap.tasks.get((name, TaskState.RUNNING), 0))
            failures.add_metric([name], snap.tasks.get((name, TaskState.FAILED), 0))
            done = snap.done.get(name)
            frames.add_metric([name], done.frames if done else 0)
            within = done.within if done else [0] * len(BUCKETS_S)
            buckets = [(floatToGoString(b), n) for b, n in zip(BUCKETS_S, within, strict=True)]
            count = done.count if done else 0
            durations.add_metric([name], [*buckets, ("+Inf", count)], done.sum_s if done else 0.0)
        yield from (running, failures, frames, durations)

        jobs = GaugeMetricFamily("frameq_jobs", "Jobs by state", labels=["state"])
        for job_state in JobState:
            jobs.add_metric([job_state.value], snap.jobs.get(job_state, 0))
        yield jobs

        webhooks = GaugeMetricFamily(
            "frameq_webhook_deliveries", "Webhook deliveries (the outbox) by state", labels=["state"]
        )
        for delivery_state in WebhookState:
            webhooks.add_metric([delivery_state.value], snap.webhooks.get(delivery_state, 0))
        yield webhooks

        if self.dispatcher is not None:
            yield from self._broker(self.dispatcher)

    def _broker(self, dispatcher: CeleryDispatcher) -> Iterator[Metric]:
        up = GaugeMetricFamily("frameq_broker_up", "1 when the broker answered this scrape")
        try:
            depths = dispatcher.queue_depths(QUEUES)
        except Exception as exc:  # kombu and redis raise their own kinds; the database's figures still count
            log.warning("metrics: the broker did not answer: %s: %s", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        messages = GaugeMetricFamily(
            "frameq_broker_messages",
            "Messages waiting in each broker queue, all priority levels",
            labels=["queue"],
        )
        for queue, n in depths.items():
            messages.add_metric([queue], n)
        yield messages


# No API key here, unlike every /v1 route: a scrape endpoint is read by the monitoring system,
# which holds no tenant's key, and what it shows is totals over all tenants (no job, input name or
# tenant). Where those totals are private, keep /metrics off the public listener at the proxy.
@router.get(
    "/metrics",
    summary="Prometheus metrics (text format, no key)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The text exposition format"},
        503: {"model": Problem, "description": "The database does not answer"},
    },
)
async def metrics(svc: CurrentServices) -> Response:
    collector = FrameqCollector(svc.repo, svc.dispatcher)
    try:
        body = await run_in_threadpool(generate_latest, collector)  # blocking SQL and broker calls
    except SQLAlchemyError as exc:
        raise HTTPException(503, f"metrics: the database does not answer ({type(exc).__name__})") from None
    return Response(body, media_type=CONTENT_TYPE_LATEST)
