"""Finalize: the job's final state goes to the channel, its timing to pilot_timing.json, its work dir away."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

from ..job import Job, JobState
from ..monitor.checks import disk_full
from ..payload.untrusted import read_inside
from .base import Stage

log = logging.getLogger(__name__)

MAX_METADATA = 1 << 20


class FinalizeStage(Stage):
    name_ = "finalize"
    runs_for_failed_jobs = True

    def process(self, job: Job) -> None:
        job.state = JobState.FAILED if job.failed else JobState.FINISHED
        job.ended_at = time.time()
        self._make_room(job)
        reply = self.reporter.report(job, final=True, metadata=self._job_report(job))
        self._write_timing(job)
        log.info("job %s %s: pilotErrorCode=%d transExitCode=%s diag=%r; final report %s", job.jobid,
                 job.state.value, job.error_code, job.trans_exit_code, job.error_diag, reply.where if reply else "-")
        if job.workdir and self.ctx.settings.cleanup and not job.keep_workdir and os.path.isdir(job.workdir):
            shutil.rmtree(job.workdir, ignore_errors=False, onerror=_log_rm_error)

    def _make_room(self, job: Job) -> None:
        """On a full disk the final report (a local report file, a spool copy) needs room: the job's work dir
        goes first (its log tarball has been made and shipped already), whatever --cleanup says."""
        if not job.workdir or not os.path.isdir(job.workdir) or not disk_full(self.ctx.paths.main):
            return
        log.error("job %s: the disk of %s is full: removing the work dir %s before the final report", job.jobid,
                  self.ctx.paths.main, job.workdir)
        shutil.rmtree(job.workdir, ignore_errors=False, onerror=_log_rm_error)

    def _job_report(self, job: Job):
        if not job.workdir:
            return None
        name = self.ctx.config.payload.jobreport
        try:  # the payload wrote it: no symlink out of the work dir, no FIFO, bounded (payload/untrusted.py)
            raw = read_inside(job.workdir, name, MAX_METADATA)
            if raw is None:
                return None
            text = raw.decode("utf-8")
            json.loads(text)
            return text
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            log.warning("job %s: %s not sent: %s", job.jobid, name, str(exc)[:200])
            return None

    def _write_timing(self, job: Job) -> None:
        path = os.path.join(self.ctx.paths.main, self.ctx.config.pilot.timing_file)
        try:
            with open(path, encoding="utf-8") as handle:
                timing = json.load(handle)
        except (OSError, ValueError):
            timing = {}
        timing[job.jobid] = {key: round(value, 3) for key, value in job.timing.items()}
        temp = path + ".tmp"
        try:
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump(timing, handle, indent=1, sort_keys=True)
            os.replace(temp, path)
        except OSError as exc:  # a full disk costs the timing file, never the job or the pilot
            log.warning("cannot write %s: %s", path, exc)
            if os.path.lexists(temp):
                os.unlink(temp)


def _log_rm_error(func, path, exc_info) -> None:
    log.warning("cleanup: %s(%s) failed: %s", getattr(func, "__name__", func), path, exc_info[1])
