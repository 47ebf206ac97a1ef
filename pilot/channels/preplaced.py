"""pandaJobData.out in the launch dir: a job handed over by the wrapper (or a site), taken first in any mode.

Pilot 3 looks for this file whatever the job source and, when it is there, runs that job instead of asking for
one; its updates still go to the channel (the PanDA server, Harvester files, ...). As Pilot 3, the file is
copied to job_definition.json in the main work dir and removed, so a second pilot in the same dir does not run
the job again. Its format is Harvester's JSON {"<PandaID>": {...}} (or one definition), or a URL-encoded getJob
reply.
"""

from __future__ import annotations

import logging
import os
from typing import List

from ..errors import PilotError
from ..job import Job
from ..jobparser import parse_jobs

log = logging.getLogger(__name__)


def take_preplaced_jobs(ctx) -> List[Job]:
    """The jobs of <launch dir>/[Pilot] pandajobdata, taken (moved away); [] when there is none."""
    from .harvester import parse_job_file

    path = os.path.join(ctx.paths.source, ctx.config.pilot.pandajobdata)
    try:
        with open(path, "rb") as handle:
            text = handle.read(16 << 20).decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise PilotError(1008, f"cannot read job file {path}: {exc}") from None
    keep = os.path.join(ctx.paths.main, "job_definition.json")
    try:
        with open(keep + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(keep + ".tmp", keep)
        os.unlink(path)
    except OSError as exc:  # not taken means it would run again in the next pilot: do not run it now
        raise PilotError(1008, f"cannot take job file {path}: {exc}") from None
    try:
        definitions = parse_job_file(text)
    except ValueError as exc:
        raise PilotError(1008, f"job file {path} is not valid JSON: {exc}") from None
    jobs = parse_jobs(definitions[:1], ctx.config.file.max_field_length, path)  # Pilot 3 keeps the first
    log.info("job(s) %s taken from %s", ", ".join(job.jobid for job in jobs) or "none", path)
    return jobs
