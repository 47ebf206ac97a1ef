"""Build the payload command and its environment from the job definition and the queue data.

jobPars is a shell fragment by PanDA convention (Pilot 3 runs `<trf> <jobPars>` through bash), so it is passed
as such; the transformation name and every value the pilot adds are quoted. File names never enter the command.
"""

from __future__ import annotations

import logging
import os
import shlex
from typing import Dict, List, Tuple

from ..errors import PilotError
from ..job import Job
from .containers import plan_container, wrap_command

log = logging.getLogger(__name__)


def _queue_environ(environ: str) -> Dict[str, str]:
    """KEY=VALUE words of the queue's `environ` field (export prefixes allowed)."""
    result: Dict[str, str] = {}
    try:
        words = shlex.split(environ.replace(";", " "))
    except ValueError as exc:
        raise PilotError(1341, f"queue data environ cannot be parsed: {exc}") from None
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            result[key] = value
    return result


def payload_environment(job: Job, ctx) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(_queue_environ(ctx.queuedata.environ))
    env.update({
        "PandaID": job.jobid,
        "PanDA_TaskID": job.taskid,
        "PILOT_HOME": ctx.paths.main,
        "PILOT_WORK_DIR": job.workdir,
        "PILOT_JOB_STATE": "running",
    })
    env.setdefault("ATHENA_PROC_NUMBER", str(job.corecount))
    env.setdefault("ATHENA_CORE_NUMBER", str(job.corecount))
    return env


def payload_command(job: Job, ctx) -> Tuple[List[str], Dict[str, str]]:
    """(argv, env) for the payload: `bash -c '<trf> <jobPars>'` in the job work dir, or that in a container."""
    plan = plan_container(job, ctx.queuedata)
    trf = job.transformation
    if trf.startswith(("http://", "https://")):
        raise PilotError(1149, "downloading transformations from a URL is not supported by this pilot version "
                               f"(transformation {trf[:80]})")
    if "/" in trf and plan is None:
        path = trf if os.path.isabs(trf) else os.path.join(job.workdir, trf)
        if not os.path.isfile(path):
            raise PilotError(1346, f"transformation {trf[:80]} not found")
    command = shlex.quote(trf) + (" " + job.jobpars if job.jobpars else "")
    env = payload_environment(job, ctx)
    if plan is None:
        return ["/bin/bash", "-c", command], env
    log.info("job %s runs in %s container %s", job.jobid, plan.runtime, plan.image)
    return wrap_command(plan, command, job.workdir, env), env
