"""`/v1/batches`: jobs submitted together (`batch` in POST /v1/jobs), watched and cancelled as one.

A batch is its id on the jobs, nothing more: `POST /v1/batches` hands out a fresh id, the jobs
that carry it are the batch, and a tenant only ever sees its own jobs of it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from frameq.api.auth import CurrentServices, CurrentTenant
from frameq.api.services import Services
from orchestrator.repository import JobFilter, JobView
from orchestrator.schema import FINISHED_JOB_STATES, JobState, Tenant
from orchestrator.submit import new_id

router = APIRouter(prefix="/v1/batches", tags=["batches"])
BATCH_MAX = 100_000  # jobs read for one summary


class NewBatch(BaseModel):
    id: str = Field(description="Pass as the batch field of POST /v1/jobs")


class BatchOut(BaseModel):
    id: str
    jobs: int
    jobs_by_state: dict[str, int]
    frames_done: int
    frames_total: int
    progress: float = Field(description="0..1: frames done of the batch's frames")
    finished: bool


def _views(svc: Services, tenant: Tenant, batch_id: str) -> list[JobView]:
    views = svc.repo.list_jobs(BATCH_MAX, JobFilter(tenant=tenant.name, batch_id=batch_id))
    if not views:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return views


@router.post("", status_code=201, response_model=NewBatch, summary="A new batch id")
def create_batch(_tenant: CurrentTenant) -> NewBatch:
    return NewBatch(id=new_id())


@router.get("/{batch_id}", response_model=BatchOut, summary="A batch's jobs by state and its progress")
def get_batch(batch_id: str, svc: CurrentServices, tenant: CurrentTenant) -> BatchOut:
    views = _views(svc, tenant, batch_id)
    by_state: dict[str, int] = {}
    done = total = 0
    for view in views:
        job = view.job
        by_state[job.state] = by_state.get(job.state, 0) + 1
        total += job.frames_total
        done += job.frames_total if job.state == JobState.DONE else view.frames_done
    return BatchOut(
        id=batch_id,
        jobs=len(views),
        jobs_by_state=by_state,
        frames_done=done,
        frames_total=total,
        progress=round(done / total, 4) if total else 0.0,
        finished=all(v.job.state in FINISHED_JOB_STATES for v in views),
    )


@router.delete("/{batch_id}", summary="Cancel every unfinished job of the batch")
def cancel_batch(batch_id: str, svc: CurrentServices, tenant: CurrentTenant) -> dict[str, int]:
    views = _views(svc, tenant, batch_id)
    cancelled = sum(svc.repo.cancel_job(v.job.id) for v in views if v.job.state not in FINISHED_JOB_STATES)
    return {"cancelled": cancelled}
