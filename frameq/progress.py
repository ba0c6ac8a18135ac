"""Live progress of running jobs, read from the database like any other observer would."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import IO

from tqdm import tqdm

from orchestrator.repository import JobView, Repository

POLL_S = 0.25


class ProgressBar:
    """A bar on a terminal: frames done of total, frames/s, ETA and the current stage.

    Each refresh is one aggregate query over all the jobs, so a directory of thousands of
    files costs the database the same as one file.
    """

    def __init__(
        self, repo: Repository, job_ids: Sequence[str], enabled: bool, file: IO[str] | None = None
    ) -> None:
        self.repo = repo
        self.job_ids = list(job_ids)
        self.enabled = enabled
        self.file = file  # tqdm's default (stderr) when None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._bar = tqdm(total=0, unit="frame", dynamic_ncols=True, desc="plan", file=self.file)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._stop.set()
            self._thread.join()
            self.refresh()
            self._bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self.refresh()

    def refresh(self) -> None:
        """Read the jobs' totals and redraw the bar."""
        assert self._bar is not None
        totals = self.repo.progress(self.job_ids)
        jobs = len(self.job_ids)
        if totals.frames_total != self._bar.total:
            self._bar.total = totals.frames_total
        self._bar.update(totals.frames_done - self._bar.n)
        idle = "done" if totals.jobs_finished == jobs else "plan"
        self._bar.set_description(totals.current_stage or idle, refresh=False)
        if jobs > 1:
            self._bar.set_postfix_str(f"jobs {totals.jobs_finished}/{jobs}", refresh=False)
        self._bar.refresh()


def summary_line(view: JobView, output: str | None) -> str:
    job = view.job
    elapsed = (
        (job.finished_at - (job.started_at or job.created_at)).total_seconds() if job.finished_at else 0.0
    )
    if job.state == "done":
        rate = f", {job.frames_total / elapsed:.1f} frames/s" if elapsed > 0 and job.kind == "video" else ""
        return (
            f"done {job.id} {job.input_name} -> {output}: {job.frames_total} "
            f"frame{'' if job.frames_total == 1 else 's'} in {elapsed:.1f}s{rate}"
        )
    return f"{job.state} {job.id}: {job.error}"
