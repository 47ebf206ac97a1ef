"""A stage: one thread, an inbox and an outbox, one job at a time; failures become codes on the job, never
lost jobs.

A stage knows nothing of the pipeline around it: it takes jobs from its inbox, puts each one in its outbox
when done (the outbox knows where a failed job goes), and reports through a small Reporter interface. So a
stage can be run and tested alone with two queues and a fake reporter.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any, Optional, Protocol

from ..errors import PilotError
from ..job import Job
from ..threads import GuardedThread, internal_diag

log = logging.getLogger(__name__)

STOP = object()  # sentinel: no more jobs will arrive


class Reporter(Protocol):
    """What a stage may ask of the reporting side (pilot/reporter.py); `channel` is there for the stages that talk
    to the job's source beyond updates (event ranges, what a channel refuses to run)."""

    channel: Any

    def report(self, job: Job, final: bool = False, metadata: Optional[str] = None) -> Any: ...

    def publish(self, job: Job) -> None: ...

    def running(self, job: Job) -> None: ...


class Outbox:
    """Where a stage puts the jobs it is done with: the next stage, or `failed` for a job that failed
    (stage-out of the log), and STOP to the next stage when it ends. Anything with put() can be a target."""

    def __init__(self, following: Any, failed: Any = None):
        self.following = following
        self.failed = failed

    def put(self, job: Job) -> None:
        target = self.failed if self.failed is not None and job.failed else self.following
        target.put(job)

    def close(self) -> None:
        self.following.put(STOP)


class Stage(GuardedThread):
    """Subclasses implement `process(job)`; the job goes to the outbox when it returns.

    A failure inside `process` fails that job with its code; a failure of the stage itself (routing) aborts the
    pilot with 1319 (GuardedThread), and the next stage is still told that no more jobs will come.
    """

    name_ = "stage"
    # key in job.timing that this stage's duration is added to (None: not timed)
    timing_key: Optional[str] = None
    # stages that still run for a failed job (stage-out of the log, finalize)
    runs_for_failed_jobs = False

    def __init__(self, ctx, reporter: Reporter, outbox: Optional[Outbox] = None):
        super().__init__(self.name_, ctx.request_abort)
        self.ctx = ctx
        self.reporter = reporter
        self.inbox: "queue.Queue" = queue.Queue()
        self.outbox = outbox  # set before start (the pipeline connects the stages)

    def work(self) -> None:
        while True:
            item = self.inbox.get()
            if item is STOP:
                return
            self.handle(item)

    def wrap_up(self) -> None:
        if self.outbox is not None:
            self.outbox.close()

    def handle(self, job: Job) -> None:
        started = time.monotonic()
        try:
            job.apply_commands()  # what the server asked of this job meanwhile (the stage owns it now)
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
        self.reporter.publish(job)  # what the heartbeat sends from now on
        assert self.outbox is not None, f"stage {self.name_} was never connected"
        self.outbox.put(job)

    def process(self, job: Job) -> None:
        raise NotImplementedError
