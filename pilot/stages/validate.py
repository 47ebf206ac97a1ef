"""Validate: the job's definition was parsed on arrival; here the node is checked for it and its work dir made."""

from __future__ import annotations

import logging
import os
import shutil

from ..errors import PilotError
from ..eventservice.kinds import refusal
from ..job import Job
from .base import Stage

log = logging.getLogger(__name__)


class ValidateStage(Stage):
    name_ = "validate"
    timing_key = "initial_setup"

    def process(self, job: Job) -> None:
        refused = refusal(job, getattr(self.reporter, "channel", None))
        if refused:
            raise PilotError(*refused)
        self._check_sizes(job)
        workdir = os.path.join(self.ctx.paths.main, f"PanDA_Pilot-{job.jobid}")
        try:
            os.mkdir(workdir, 0o770)
        except FileExistsError:
            raise PilotError(1199, f"job work dir {workdir} already exists (job {job.jobid} received twice?)") \
                from None
        except OSError as exc:
            raise PilotError(1199, f"cannot create job work dir {workdir}: {exc}") from None
        job.workdir = workdir
        if job.secrets:
            name = self.ctx.config.pilot.pandasecrets
            fd = os.open(os.path.join(workdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(job.secrets)
        log.info("job %s validated: %d input(s), %d output(s), work dir %s", job.jobid, len(job.inputs),
                 len(job.outputs), workdir)

    def _check_sizes(self, job: Job) -> None:
        total = sum(spec.filesize for spec in job.inputs)
        qd = self.ctx.queuedata
        limit_mb = qd.maxinputsize or qd.maxwdir or self.ctx.config.pilot.maximum_input_file_sizes_mb
        if total > limit_mb * 1024 * 1024:
            raise PilotError(1168, f"total input size {total} B exceeds the queue limit of {limit_mb} MB")
        free = shutil.disk_usage(self.ctx.paths.main).free
        if total > free:
            raise PilotError(1098, f"total input size {total} B exceeds free space {free} B in {self.ctx.paths.main}")
