"""Finalize: the job's final state goes to the channel, its timing to pilot_timing.json, its work dir away."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

from ..job import Job, JobState
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
        reply = self.reporter.report(job, final=True, metadata=self._job_report(job))
        self._write_timing(job)
        log.info("job %s %s: pilotErrorCode=%d transExitCode=%s diag=%r; final report %s", job.jobid,
                 job.state.value, job.error_code, job.trans_exit_code, job.error_diag, reply.where if reply else "-")
        if job.workdir and self.ctx.settings.cleanup and not job.keep_workdir and os.path.isdir(job.workdir):
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
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(timing, handle, indent=1, sort_keys=True)
        os.replace(temp, path)


def _log_rm_error(func, path, exc_info) -> None:
    log.warning("cleanup: %s(%s) failed: %s", getattr(func, "__name__", func), path, exc_info[1])
