"""The monitor of one running payload: samples the process tree and runs the checks, each at its interval.

It sleeps until the next sample or check is due (an Event wait, so stopping it is immediate), and when a check
fails it records nothing itself: it fires the job's kill trigger with the check's code, and the execute stage
turns that into the job's failure once the payload is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Optional

from ..threads import GuardedThread
from .checks import Check, MonitorState, WorkdirScan, default_checks
from .sampler import TreeSampler, mean_cores, update_fields

log = logging.getLogger(__name__)

SUSPEND_GAP = 600.0  # a tick this much later than planned means the node (or pilot) was stopped


class JobMonitor(GuardedThread):
    """A monitor that fails (a bug, psutil unusable) kills its payload with 1319: never a payload unwatched."""

    def __init__(self, ctx, job, payload, checks=None, on_usage=None):
        super().__init__(f"monitor-{job.jobid}", job.kill.fire)
        self.ctx = ctx
        self.job = job
        # acting for the execute stage, which owns the job and waits for the payload: after putting the usage so
        # far on the job, hand it to the reporter (its snapshot is what the heartbeat sends)
        self.on_usage = on_usage
        self.sampler = TreeSampler(payload, job.workdir)
        self.checks = default_checks() if checks is None else checks
        self.state = MonitorState(ctx=ctx, job=job, started=time.time())
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def work(self) -> None:
        sample_every = self.ctx.config.pilot.memory_usage_verification_time
        due: Dict[object, float] = {"sample": time.monotonic() + min(sample_every, 5.0)}
        for check in self.checks:
            due[check] = time.monotonic() + check.interval(self.ctx)
        planned = min(due.values())
        while not self._halt.wait(max(0.0, planned - time.monotonic())):
            now = time.monotonic()
            late = now - planned
            if late > SUSPEND_GAP:
                self.state.suspended += late
                log.warning("job %s: monitor woke %.0f s late: node was suspended?", self.job.jobid, late)
            if self.tick(now, due, sample_every):
                return
            planned = min(due.values())

    def tick(self, now: float, due: Dict[object, float], sample_every: float) -> bool:
        """Run what is due; True when a check fired (the payload is being killed)."""
        if due["sample"] <= now:
            due["sample"] = now + sample_every
            try:
                row = self.sampler.sample()
            except OSError as exc:
                log.warning("job %s: memory sample failed: %s", self.job.jobid, exc)
                row = None
            if row:
                self.state.sample = row
                self.publish(row)
        todo = [check for check in self.checks if due[check] <= now]
        if not todo:
            return False
        self.state.scan = WorkdirScan.of(self.job.workdir)
        for check in todo:
            due[check] = now + check.interval(self.ctx)
            result = self._run(check)
            if result:
                code, diag = result
                log.error("job %s: %s check failed: %s", self.job.jobid, check.name, diag)
                self.job.kill.fire(code, diag)
                return True
        return False

    def publish(self, row: Dict[str, float]) -> None:
        """Put the usage so far on the job, for the next running update (Pilot 3 sends it with every heartbeat).

        The monitor does this for the execute stage, which owns the job and is blocked waiting for the payload; the
        heartbeat never reads the job, only the snapshot `on_usage` (the reporter's publish) makes of it. The
        execute stage overwrites the figures with the final ones once the payload is gone.
        """
        job = self.job
        wall = max(time.time() - job.started_at, 1.0) if job.started_at else row["wtime"]
        job.memory = update_fields(self.sampler.summary(), wall)
        job.cpu_seconds = self.sampler.cpu_seconds
        job.mean_cores = mean_cores(job.cpu_seconds, wall)
        if self.on_usage is not None:
            self.on_usage(job)

    def _run(self, check: Check) -> Optional[tuple]:
        try:
            return check.run(self.state)
        except OSError as exc:
            log.warning("job %s: %s check could not run: %s", self.job.jobid, check.name, exc)
            return None

    def finish(self) -> Dict[str, Dict[str, float]]:
        """After the payload ended: the prmon-style summary (also written to the work dir)."""
        self.join()
        return self.sampler.write_summary()
