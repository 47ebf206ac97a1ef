"""Execute: run the payload, wait for it (no polling), and turn how it ended into codes on the job."""

from __future__ import annotations

import json
import logging
import os
import time

from ..errors import PilotError
from ..job import Job, JobState
from ..payload.command import payload_command
from ..payload.containers import failure_code
from ..monitor.jobmonitor import JobMonitor
from ..monitor.sampler import leak_fit, update_fields
from ..payload.process import PayloadProcess
from .base import Stage

log = logging.getLogger(__name__)


class ExecuteStage(Stage):
    name_ = "execute"
    timing_key = "payload"

    def process(self, job: Job) -> None:
        cfg = self.ctx.config
        argv, env = payload_command(job, self.ctx)
        proc = PayloadProcess(argv, job.workdir, env, os.path.join(job.workdir, cfg.payload.payloadstdout),
                              os.path.join(job.workdir, cfg.payload.payloadstderr))
        job.state = JobState.RUNNING
        job.started_at = time.time()
        try:
            job.pid = proc.start()
        except OSError as exc:
            raise PilotError(1305, f"cannot start payload: {exc}") from None
        monitor = JobMonitor(self.ctx, job, proc)
        monitor.start()
        self.pipeline.report(job)
        grace = cfg.pilot.kill_grace
        def kill() -> None:
            proc.terminate(grace)

        with self.ctx.on_abort(kill), job.kill.on_fire(kill):
            exit_code = proc.wait()
        monitor.stop()
        leftovers = proc.cleanup(grace)
        self._record_usage(job, monitor)
        if leftovers:
            log.info("job %s: killed %d process(es) the payload left behind", job.jobid, leftovers)
        job.cpu_seconds = proc.cpu_seconds
        job.trans_exit_code = exit_code
        log.info("job %s: payload exited with %d after %.3f s", job.jobid, exit_code, time.time() - job.started_at)
        self._read_error_report(job)
        stop = job.kill if job.kill.is_set() else self.ctx.abort
        if proc.killed_by_pilot and stop.is_set():
            job.fail(stop.code, f"{stop.reason}; payload killed (exit {exit_code})")
        elif exit_code != 0:
            stderr = _tail(os.path.join(job.workdir, cfg.payload.payloadstderr))
            runtime = failure_code(stderr) if job.container else None
            if runtime:
                job.fail(runtime[0], f"container failure (exit {exit_code}): {runtime[1]}")
            else:
                lines = [line.strip() for line in stderr.splitlines() if line.strip()]
                job.fail(1305, f"payload exited with code {exit_code}" + (f": {lines[-1][:160]}" if lines else ""))

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

    def _read_error_report(self, job: Job) -> None:
        """payload_error_report.json, if the payload wrote one: {"error_code": N, "error_diag": "..."}."""
        path = os.path.join(job.workdir, self.ctx.config.payload.error_report)
        if not os.path.isfile(path):
            return
        try:
            with open(path, "rb") as handle:
                report = json.loads(handle.read(1 << 20).decode("utf-8"))
            job.exe_error_code = int(report.get("error_code", 0))
            job.exe_error_diag = str(report.get("error_diag", ""))[:256]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("job %s: unreadable %s: %s", job.jobid, path, exc)



def _tail(path: str, limit: int = 8192) -> str:
    """The last `limit` bytes of a text file ('' if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
