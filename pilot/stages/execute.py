"""Execute: run the payload, wait for it (no polling), and turn how it ended into codes on the job."""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

from .. import recovery
from ..errors import PilotError
from ..eventservice.kinds import RANGE_KINDS
from ..job import Job, JobState
from ..monitor.checks import MemoryCheck, disk_full, free_bytes
from ..monitor.jobmonitor import JobMonitor
from ..monitor.sampler import leak_fit, mean_cores, update_fields
from ..experiments.hooks import hook_failure
from ..payload.command import payload_command
from ..payload.diagnose import apply_reports, failure, tail
from ..payload.cgroup import JobCgroup, own_cgroup_dir
from ..payload.process import PayloadProcess
from .base import Stage

log = logging.getLogger(__name__)

# memory.max of the job's cgroup, as a multiple of the memory check's limit: the check (1235, with a diagnosis)
# acts first; the cgroup only stops a spike faster than the check's period
CGROUP_MEMORY_FACTOR = 2


class ExecuteStage(Stage):
    name_ = "execute"
    timing_key = "payload"

    def process(self, job: Job) -> None:
        cfg = self.ctx.config
        driver = None
        if job.es_kind in RANGE_KINDS:  # event service: ranges through FIFOs in the work dir (eventservice/)
            from ..eventservice.driver import EventServiceDriver

            driver = EventServiceDriver(self.ctx, job, self.reporter.channel)
            job.environment.update(driver.prepare())
            job.stageout_mode = "log"  # outputs leave per range; the job's own outFiles are made by merge jobs
        argv, env = payload_command(job, self.ctx)
        proc = PayloadProcess(argv, job.workdir, env, os.path.join(job.workdir, cfg.payload.payloadstdout),
                              os.path.join(job.workdir, cfg.payload.payloadstderr), self._cgroup(job))
        job.state = JobState.RUNNING
        job.started_at = time.time()
        try:
            job.pid = proc.start()
        except OSError as exc:
            if proc.cgroup is not None:
                proc.cgroup.remove(0.0)
            raise PilotError(1305, f"cannot start payload: {exc}") from None
        record = recovery.record_payload(self.ctx.paths.main, job.jobid, proc)  # for a sweep if we get SIGKILLed
        if driver is not None:
            driver.start()
        monitor = JobMonitor(self.ctx, job, proc, on_usage=self.reporter.publish)
        monitor.start()
        # the "running" update goes from the heartbeat thread: a slow server must not delay noticing the
        # payload's end or a kill
        self.reporter.running(job)
        grace = cfg.pilot.kill_grace
        def kill() -> None:
            proc.terminate(grace)

        with self.ctx.on_abort(kill), job.kill.on_fire(kill):
            exit_code = proc.wait()
        monitor.stop()
        leftovers = proc.cleanup(grace)
        recovery.forget(record)
        if driver is not None:
            driver.finish(exit_code)
        self._record_usage(job, monitor)
        if leftovers:
            log.info("job %s: killed %d process(es) the payload left behind", job.jobid, leftovers)
        job.cpu_seconds = max(proc.cpu_seconds, job.cpu_seconds)  # rusage misses what escaped the wait
        job.mean_cores = mean_cores(job.cpu_seconds, time.time() - job.started_at)
        job.trans_exit_code = exit_code
        log.info("job %s: payload exited with %d after %.3f s", job.jobid, exit_code, time.time() - job.started_at)
        apply_reports(job, job.workdir, cfg.payload.error_report, cfg.payload.jobreport)
        stop = job.kill if job.kill.is_set() else self.ctx.abort
        # the stop explains the end if the pilot killed the payload, or if the payload died first of the same
        # signal (a batch system signals every process of the job: scancel)
        if stop.is_set() and (proc.killed_by_pilot or exit_code != 0):
            job.fail(stop.code, f"{stop.reason}; payload killed (exit {exit_code})")
            return
        hook = hook_failure(job.workdir)  # an experiment pre/post-process command failed (pilot/experiments/)
        if hook:
            job.fail(*hook)
            return
        if disk_full(job.workdir):  # whatever the payload's exit code says, its results cannot be trusted
            job.fail(1098, f"disk full when the payload ended: {free_bytes(job.workdir) >> 20} MB free in the "
                           f"work dir")
            return
        problem = failure(exit_code, tail(job.workdir, cfg.payload.payloadstderr), job.workdir,
                          bool(job.container))
        if problem:
            job.fail(*problem)

    def _cgroup(self, job: Job) -> Optional[JobCgroup]:
        """The job's own cgroup v2 where the node allows one ([Payload] cgroup = auto), else None."""
        if self.ctx.config.payload.cgroup != "auto":
            return None
        name = "pilot.%d.job.%s" % (os.getpid(), "".join(ch for ch in job.jobid if ch.isalnum())[:64])
        memory = MemoryCheck.limit_kb(self.ctx, job) * 1024 * CGROUP_MEMORY_FACTOR
        return JobCgroup.create(own_cgroup_dir(), name, memory)

    def _record_usage(self, job: Job, monitor: JobMonitor) -> None:
        summary = monitor.finish()
        job.memory = update_fields(summary, time.time() - job.started_at)
        fit = leak_fit(monitor.sampler.samples)
        if fit:
            job.metrics.update({"leak": fit["slope"], "chi2": fit["chi2"]})
        if summary.get("Max"):
            job.metrics["maxProcs"] = int(summary["Max"]["nprocs"])
            log.info("job %s: max PSS %d kB, max RSS %d kB, %d process(es) at most, %d sample(s)", job.jobid,
                     summary["Max"]["pss"], summary["Max"]["rss"], summary["Max"]["nprocs"],
                     len(monitor.sampler.samples))
