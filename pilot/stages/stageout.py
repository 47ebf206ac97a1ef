"""Stage-out: the outputs (unless the job failed earlier), then the log tarball of the job work dir.

The log is made and shipped for every job that has a work dir, failed or not: it is how a failure is debugged.
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import PilotError
from ..job import Job, JobState
from ..jobparser import check_lfn
from ..transfer import destinations
from ..transfer.base import LOG_ACTIVITIES, STAGEOUT_ACTIVITIES
from ..transfer.jobfiles import transfer_files
from .base import Stage

log = logging.getLogger(__name__)


class StageOutStage(Stage):
    name_ = "stageout"
    timing_key = "stageout"
    runs_for_failed_jobs = True

    def process(self, job: Job) -> None:
        if job.failed:
            job.stageout_mode = "log"
        if not job.workdir or not os.path.isdir(job.workdir):
            log.warning("job %s has no work dir: nothing to stage out", job.jobid)
            return
        job.state = JobState.STAGEOUT
        if job.stageout_mode == "all" and job.outputs:
            self._stage(job, job.outputs, STAGEOUT_ACTIVITIES)
        if job.logfile is not None and check_lfn(job.logfile.lfn) is None:
            if time.monotonic() > self.ctx.log_tarball_deadline():
                log.error("job %s: no time left in the abort grace for the log tarball", job.jobid)
                job.fail(self.ctx.abort.code, self.ctx.abort.reason)
                return
            # imported here, not at start-up: tarfile and its compressors cost every pilot start ~3 ms
            import tarfile

            from .logtarball import make_log_tarball

            try:
                _path, cut = make_log_tarball(job, self.ctx, self.ctx.log_tarball_deadline)
            except (OSError, tarfile.TarError) as exc:
                job.fail(1320, f"cannot create log tarball {job.logfile.lfn}: {exc}")
                return
            if cut and self.ctx.abort.is_set():  # the signal cut the log short: the job's record is incomplete
                job.fail(self.ctx.abort.code, f"{self.ctx.abort.reason}; log tarball cut at the abort grace")
            self._stage(job, [job.logfile], LOG_ACTIVITIES)

    def _stage(self, job: Job, files, activities) -> None:
        destinations.prepare(self.ctx, files, activities)
        self._transfer(job, files, activities)
        if destinations.allow(self.ctx, job):
            again = destinations.retry_candidates(self.ctx, job, files)
            if again:
                self._transfer(job, again, activities)
                log.info("job %s: alternative stage-out: %d of %d file(s) stored", job.jobid,
                         sum(spec.status == "transferred" for spec in again), len(again))
        failed = [spec for spec in files if spec.status != "transferred"]
        if failed:
            job.fail(failed[0].status_code, failed[0].diag)

    def _transfer(self, job: Job, files, activities) -> None:
        try:
            transfer_files(self.ctx, job, files, activities, "out")
        except PilotError as exc:
            for spec in files:
                spec.status, spec.status_code, spec.diag = "failed", exc.code, exc.diag
