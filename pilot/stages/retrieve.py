"""Retrieve: ask the channel for jobs while the pilot may still take one, and hand them to validate.

May another job be taken? Only while no abort is under way, answered job requests are fewer than -v and
failed ones fewer than -x, (on a multi-job queue, whose server channel may find work later) "no jobs" replies
fewer than -x, enough of the pilot's lifetime is left, and -- after the first job -- the queue's
time floor has not passed. With a time floor the next job is fetched while the current one runs (one job
ahead, `slots`), so its stage-in overlaps the current payload.
"""

from __future__ import annotations

import logging
import queue
import time

from ..backoff import backoff_delays
from ..errors import PilotError
from ..threads import GuardedThread

log = logging.getLogger(__name__)


class RetrieveThread(GuardedThread):
    """Any failure other than a PilotError from the channel is a pilot bug: it aborts the pilot with 1319."""

    def __init__(self, ctx, channel, downstream: "queue.Queue"):
        super().__init__("retrieve", ctx.request_abort)
        self.ctx = ctx
        self.channel = channel
        self.downstream = downstream
        self.slots: "queue.Queue" = queue.Queue()
        self.requests = 0
        self.failures = 0
        self.jobs = 0
        self.empty = 0  # "no jobs" replies (they end the pilot unless a time floor keeps it asking)
        self.error_code = 0  # a pilot-level failure to get work (all getJob attempts failed)
        cfg = ctx.config.pilot
        self._backoff = backoff_delays(cfg.getjob_retry_initial, cfg.getjob_retry_max)

    def release_slot(self) -> None:
        self.slots.put(True)

    def work(self) -> None:
        self._loop()

    def wrap_up(self) -> None:
        from .base import STOP

        self.downstream.put(STOP)

    def _may_fetch(self) -> bool:
        ctx, settings = self.ctx, self.ctx.settings
        if ctx.abort.is_set():
            return False
        if self.requests >= settings.getjob_requests:
            log.info("no more jobs: %d getJob request(s) made (-v %d)", self.requests, settings.getjob_requests)
            return False
        if self.failures >= settings.getjob_failures:
            log.error("no more jobs: %d failed getJob attempt(s) (-x %d)", self.failures, settings.getjob_failures)
            return False
        if ctx.drain.is_set():
            log.info("no more jobs: %s", ctx.drain.reason)
            return False
        if self.jobs and ctx.elapsed() >= ctx.queuedata.timefloor:
            log.info("no more jobs: time floor of %d s reached", ctx.queuedata.timefloor)
            return False
        if ctx.remaining() < ctx.config.pilot.min_job_time:
            log.info("no more jobs: %.0f s of lifetime left (< min_job_time %d s)", ctx.remaining(),
                     ctx.config.pilot.min_job_time)
            return False
        return True

    def _ask_again(self) -> bool:
        """After a "no jobs" reply on a multi-job queue: wait (backing off) and ask again while the time floor
        lasts and fewer than -x empty replies came, as Pilot 3 does; False: stop asking."""
        ctx = self.ctx
        self.empty += 1
        left = ctx.queuedata.timefloor - ctx.elapsed()
        if not self.channel.retry_when_empty or left <= 0:
            return False
        if self.empty >= ctx.settings.getjob_failures:
            log.info("no more jobs: %d empty job request(s) (-x %d)", self.empty, ctx.settings.getjob_failures)
            return False
        pause = min(next(self._backoff), left)
        log.info("asking again in %.1f s (time floor: %.0f s left)", pause, left)
        return not ctx.abort.wait(pause)

    def _preplaced(self):
        """pandaJobData.out in the launch dir, whatever the channel (the Harvester channel reads it itself)."""
        from ..channels.preplaced import take_preplaced_jobs

        return [] if self.channel.name == "harvester" else take_preplaced_jobs(self.ctx)

    def _loop(self) -> None:
        # one job running + one prefetched when multi-job, else exactly one
        for _ in range(2 if self.ctx.queuedata.timefloor > 0 else 1):
            self.release_slot()
        with self.ctx.on_abort(self.release_slot):
            while True:
                self.slots.get()
                if not self._may_fetch():
                    return
                started = time.monotonic()
                try:
                    jobs = self._preplaced() if not self.requests and not self.failures else []
                    jobs = jobs or self.channel.fetch(1)
                    self.requests += 1  # answered requests count against -v; failed ones against -x
                    self.error_code = 0  # the server answered: earlier failures no longer define the exit code
                except PilotError as exc:
                    self.failures += 1
                    self.error_code = exc.code
                    if not exc.retry:
                        log.error("getJob failed: %s (not retried)", exc)
                        return
                    log.error("getJob failed (%d/%d): %s", self.failures, self.ctx.settings.getjob_failures, exc)
                    if self.failures < self.ctx.settings.getjob_failures:
                        pause = next(self._backoff)
                        log.info("next job request in %.1f s", pause)
                        self.ctx.abort.wait(pause)
                    self.release_slot()
                    continue
                if not jobs:
                    log.info("no job available from the %s channel", self.channel.name)
                    if not self._ask_again():
                        return
                    self.release_slot()
                    continue
                for job in jobs:
                    job.timing["getjob"] = time.monotonic() - started
                    self.jobs += 1
                    self.error_code = 0
                    log.info("job %s received (%d job(s) so far)", job.jobid, self.jobs)
                    self.downstream.put(job)
