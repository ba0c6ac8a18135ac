"""`/v1/batches`: jobs submitted together (`batch` in POST /v1/jobs), watched and cancelled as one.

A batch is its id on the jobs, nothing more: `POST /v1/batches` hands out a fresh id, the jobs
that carry it are the batch, and a tenant only ever sees its own jobs of it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from frameq.api.auth import CurrentServices, CurrentTenant
from orchestrator.submit import new_id

router = APIRouter(prefix="/v1/batches", tags=["batches"])


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


@router.post("", status_code=201, response_model=NewBatch, summary="A new batch id")
def create_batch(_tenant: CurrentTenant) -> NewBatch:
    return NewBatch(id=new_id())


@router.get("/{batch_id}", response_model=BatchOut, summary="A batch's jobs by state and its progress")
def get_batch(batch_id: str, svc: CurrentServices, tenant: CurrentTenant) -> BatchOut:
    """Summed in the database, however many jobs the batch has."""
    summary = svc.repo.batch_summary(tenant.name, batch_id)
    if summary is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    done, total = summary.frames_done, summary.frames_total
    return BatchOut(
        id=batch_id,
        jobs=summary.jobs,
        jobs_by_state=summary.jobs_by_state,
        frames_done=done,
        frames_total=total,
        progress=round(done / total, 4) if total else 0.0,
        finished=summary.finished,
    )


@router.delete("/{batch_id}", summary="Cancel every unfinished job of the batch")
def cancel_batch(batch_id: str, svc: CurrentServices, tenant: CurrentTenant) -> dict[str, int]:
    """In one transaction: how many jobs it cancelled (those already finished stay as they are)."""
    cancelled = svc.repo.cancel_batch(tenant.name, batch_id)
    if cancelled is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return {"cancelled": cancelled}
