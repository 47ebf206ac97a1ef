"""Stage-in: tell the server the job is starting, then fetch the inputs with the queue's read copytools."""

from __future__ import annotations

import logging

from ..job import Job, JobState
from ..eventservice.kinds import ESMERGE_STAGEIN_ACTIVITIES
from ..transfer import directaccess
from ..transfer.base import STAGEIN_ACTIVITIES
from ..transfer.jobfiles import transfer_files
from .base import Stage

log = logging.getLogger(__name__)


class StageInStage(Stage):
    name_ = "stagein"
    timing_key = "stagein"

    def process(self, job: Job) -> None:
        job.state = JobState.STAGEIN
        self.reporter.report(job)
        if job.sandbox:
            from ..payload.sandbox import install_sandbox

            job.environment.update(install_sandbox(job.sandbox, job.workdir, self.ctx, job.sandbox_fields))
        if not job.inputs:
            return
        directaccess.apply(self.ctx, job)
        activities = ESMERGE_STAGEIN_ACTIVITIES if job.es_kind == "esmerge" else STAGEIN_ACTIVITIES
        transfer_files(self.ctx, job, job.inputs, activities, "in")
        failed = [spec for spec in job.inputs if spec.status not in ("transferred", "remote_io")]
        if failed:
            job.fail(failed[0].status_code, failed[0].diag)
        elif any(spec.status == "remote_io" for spec in job.inputs):
            directaccess.write_catalogues(job)
