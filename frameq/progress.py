"""Live progress of running jobs, read from the database like any other observer would."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tqdm import tqdm

from orchestrator.repository import JobView, Repository

POLL_S = 0.25


class ProgressBar:
    """A bar on a terminal: frames done of total, frames/s, ETA and the current stage."""

    def __init__(self, repo: Repository, job_ids: Sequence[str], enabled: bool) -> None:
        self.repo = repo
        self.job_ids = list(job_ids)
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._bar = tqdm(total=0, unit="frame", dynamic_ncols=True, desc="plan")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._stop.set()
            self._thread.join()
            self._refresh()
            self._bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._refresh()

    def _refresh(self) -> None:
        assert self._bar is not None
        views = [self.repo.view(job_id) for job_id in self.job_ids]
        total = sum(v.job.frames_total for v in views)
        done = sum(v.frames_done for v in views)
        finished = sum(1 for v in views if v.job.finished_at is not None)
        stage = next((v.current_stage for v in views if v.current_stage), None)
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
        self._bar.set_description(stage or ("done" if finished == len(views) else "plan"), refresh=False)
        if len(views) > 1:
            self._bar.set_postfix_str(f"jobs {finished}/{len(views)}", refresh=False)
        self._bar.refresh()


def summary_line(view: JobView, output: str | None) -> str:
    job = view.job
    elapsed = (
        (job.finished_at - (job.started_at or job.created_at)).total_seconds() if job.finished_at else 0.0
    )
    if job.state == "done":
        rate = f", {job.frames_total / elapsed:.1f} frames/s" if elapsed > 0 and job.kind == "video" else ""
        return (
            f"done {job.id} {job.input_name} -> {output}: {job.frames_total} frames in {elapsed:.1f}s{rate}"
        )
    return f"{job.state} {job.id}: {job.error}"
