"""A stage: one thread, one inbox, one job at a time; failures become codes on the job, never lost jobs."""

from __future__ import annotations

import logging
import queue
import time
from typing import Optional

from ..errors import PilotError
from ..job import Job
from ..threads import GuardedThread, internal_diag

log = logging.getLogger(__name__)

STOP = object()  # sentinel: no more jobs will arrive


class Stage(GuardedThread):
    """Subclasses implement `process(job)`; the pipeline routes the job on when it returns.

    A failure inside `process` fails that job with its code; a failure of the stage itself (routing) aborts the
    pilot with 1319 (GuardedThread), and the next stage is still told that no more jobs will come.
    """

    name_ = "stage"
    # key in job.timing that this stage's duration is added to (None: not timed)
    timing_key: Optional[str] = None
    # stages that still run for a failed job (stage-out of the log, finalize)
    runs_for_failed_jobs = False

    def __init__(self, ctx, pipeline):
        super().__init__(self.name_, ctx.request_abort)
        self.ctx = ctx
        self.pipeline = pipeline
        self.inbox: "queue.Queue" = queue.Queue()

    def work(self) -> None:
        while True:
            item = self.inbox.get()
            if item is STOP:
                return
            self.handle(item)

    def wrap_up(self) -> None:
        self.pipeline.stage_stopped(self)

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
            job.fail(1319, internal_diag(self.name_, exc))
        finally:
            if self.timing_key:
                job.timing[self.timing_key] = job.timing.get(self.timing_key, 0.0) + time.monotonic() - started
        self.pipeline.route(self, job)

    def process(self, job: Job) -> None:
        raise NotImplementedError
