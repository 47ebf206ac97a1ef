"""A stage: one thread, one inbox, one job at a time; failures become codes on the job, never lost jobs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Optional

from ..errors import PilotError
from ..job import Job

log = logging.getLogger(__name__)

STOP = object()  # sentinel: no more jobs will arrive


class Stage(threading.Thread):
    """Subclasses implement `process(job)`; the pipeline routes the job on when it returns."""

    name_ = "stage"
    # key in job.timing that this stage's duration is added to (None: not timed)
    timing_key: Optional[str] = None
    # stages that still run for a failed job (stage-out of the log, finalize)
    runs_for_failed_jobs = False

    def __init__(self, ctx, pipeline):
        super().__init__(name=self.name_, daemon=True)
        self.ctx = ctx
        self.pipeline = pipeline
        self.inbox: "queue.Queue" = queue.Queue()

    def run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is STOP:
                self.pipeline.stage_stopped(self)
                return
            self.handle(item)

    def handle(self, job: Job) -> None:
        started = time.monotonic()
        try:
            if not self.runs_for_failed_jobs and not job.failed:
                for stop in (job.kill, self.ctx.abort):
                    if stop.is_set():
                        job.fail(stop.code, stop.reason)
            if not job.failed or self.runs_for_failed_jobs:
                self.process(job)
        except PilotError as exc:
            log.error("job %s: %s", job.jobid, exc)
            job.fail(exc.code, exc.diag)
        except Exception as exc:  # a bug must fail this job with a code, not stall the whole pipeline
            log.exception("job %s: internal error in stage %s", job.jobid, self.name_)
            job.fail(1319, f"internal pilot error in {self.name_}: {type(exc).__name__}: {exc}")
        finally:
            if self.timing_key:
                job.timing[self.timing_key] = job.timing.get(self.timing_key, 0.0) + time.monotonic() - started
        self.pipeline.route(self, job)

    def process(self, job: Job) -> None:
        raise NotImplementedError
