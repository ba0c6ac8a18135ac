"""Store retention, driven by the artifacts table (every object a job put in the store).

- A job's intermediates (source slices, its audio, every stage's segments) are deleted when it
  finishes, unless it was submitted with `FRAMEQ_KEEP_INTERMEDIATES=1` (for debugging).
- Its outputs and inputs (the uploaded source, a background) stay until they expire:
  `FRAMEQ_OUTPUTS_TTL_DAYS`, or `frameq gc --older-than`.

Nothing a running job needs is deleted: only finished jobs are collected, and failed or
cancelled ones only after a lease has passed (their workers stop at their next batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.outputs import output_keys
from orchestrator.params import JobParams
from orchestrator.repository import Repository
from orchestrator.schema import Job, JobState
from orchestrator.store import Store, job_prefix

# A job whose input is still not in the store this long after it was recorded lost its
# submitter (kill -9 mid-upload); generous, since a large upload over a slow link takes a while.
SUBMIT_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Freed:
    objects: int = 0
    bytes: int = 0

    def __add__(self, other: Freed) -> Freed:
        return Freed(self.objects + other.objects, self.bytes + other.bytes)


def kept_keys(job: Job) -> set[str]:
    """What a finished job keeps until it expires: its outputs and its inputs."""
    keys = {job.source_key}
    if job.output_key:
        keys |= set(output_keys(job))
    params = JobParams.from_json(job.params)
    for attached in (params.background or {}, params.style or {}, params.mask or {}):  # uploaded with it
        if "key" in attached:
            keys.add(attached["key"])
    return keys


def collect(repo: Repository, store: Store, job: Job, *, expired: bool = False) -> Freed:
    """Delete the job's intermediates (with `expired`, everything it stored) and their rows.

    What to delete is what the artifacts table lists and, as a safety net, whatever else lies
    under the job's folder (a task whose completion was refused, its job cancelled meanwhile,
    had written its object without a row)."""
    if not expired and JobParams.from_json(job.params).keep_intermediates:
        repo.mark_collected(job.id)  # nothing to do until the outputs expire
        return Freed()
    keep = set() if expired else kept_keys(job)
    sizes = {a.key: a.size_bytes for a in repo.artifacts(job.id)}
    doomed = sorted((set(sizes) | set(store.keys(job_prefix(job.id)))) - keep)
    for key in doomed:
        store.delete(key)
    repo.forget_artifacts(doomed)
    repo.mark_collected(job.id)
    return Freed(len(doomed), sum(sizes.get(key, 0) for key in doomed))


def collect_finished(repo: Repository, store: Store, job_id: str) -> Freed:
    """Right after a job is done (its last task finished): its intermediates go."""
    job = repo.get_job(job_id)
    return collect(repo, store, job) if job.state == JobState.DONE else Freed()


def gc(repo: Repository, store: Store, *, older_than_s: float | None, grace_s: float) -> Freed:
    """Intermediates of every job finished `grace_s` ago or more, and all the objects of jobs
    finished more than `older_than_s` ago (None: outputs never expire)."""
    freed = Freed()
    repo.fail_abandoned_submissions(SUBMIT_TIMEOUT_S)  # their uploads, if any, are collected below
    for job in repo.finished_jobs(grace_s, collected=False):
        freed += collect(repo, store, job)
    if older_than_s is not None:
        for job in repo.finished_jobs(older_than_s, collected=True):
            freed += collect(repo, store, job, expired=True)
    return freed
