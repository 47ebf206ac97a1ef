"""Build the payload command and its environment from the job definition and the queue data.

jobPars is a shell fragment by PanDA convention (Pilot 3 runs `<trf> <jobPars>` through bash), so it is passed
as such; the transformation name and every value the pilot adds are quoted. File names never enter the command.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from typing import Dict, List, Optional, Tuple

from ..errors import PilotError
from ..job import Job
from ..experiments.hooks import wrap_payload
from ..net import Trust, download, trust_from
from ..masking import mask
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
    env.update(job.environment)
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


def allowed_base_urls(ctx) -> List[str]:
    """-g/--baseurls, $PANDA_BASE_URLS and [Payload] trf_base_urls: where a transformation may come from."""
    urls = []
    for source in (ctx.settings.baseurls, os.environ.get("PANDA_BASE_URLS", ""), ctx.config.payload.trf_base_urls):
        urls += [url.strip() for url in (source or "").split(",") if url.strip()]
    return urls


def fetch_transformation(url: str, workdir: str, allowed: List[str], trust: Optional[Trust] = None) -> str:
    """Download an analysis transformation into the work dir; returns its file name. 1149 on any failure.

    Only URLs under an allowed base URL are fetched: a job definition must not make a worker node download
    and run code from anywhere. With $HARVESTER_WORKDIR holding a file of that name, it is used instead
    (Harvester pre-places transformations on nodes without outbound network).
    """
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if not name or name in (".", "..") or not all(ch.isalnum() or ch in "._-+" for ch in name):
        raise PilotError(1149, f"transformation URL {url[:120]} does not end in a usable file name")
    dest = os.path.join(workdir, name)
    preplaced = os.path.join(os.environ.get("HARVESTER_WORKDIR", ""), name)
    if os.environ.get("HARVESTER_WORKDIR") and os.path.isfile(preplaced):
        shutil.copyfile(preplaced, dest)
    else:
        if not any(url.startswith(base if base.endswith("/") else base + "/") for base in allowed):
            raise PilotError(1149, f"transformation URL {url[:120]} is not under an allowed base URL "
                                   f"(-g/--baseurls, PANDA_BASE_URLS, [Payload] trf_base_urls)")
        download(url, dest, 1149, "transformation", timeout=(30, 300), attempts=3, trust_=trust,
                 shown=mask(url)[:120])
    try:
        os.chmod(dest, 0o755)
    except OSError as exc:
        raise PilotError(1143, f"cannot make {name} executable: {exc}") from None
    log.info("transformation %s ready as %s", url, dest)
    return name


def payload_command(job: Job, ctx) -> Tuple[List[str], Dict[str, str]]:
    """(argv, env) for the payload: `bash -c '<trf> <jobPars>'` in the job work dir, or that in a container."""
    plan = plan_container(job, ctx.queuedata)
    trf = job.transformation
    if trf.startswith(("http://", "https://")):
        trf = "./" + fetch_transformation(trf, job.workdir, allowed_base_urls(ctx), trust_from(ctx))
    if "/" in trf and plan is None:
        path = trf if os.path.isabs(trf) else os.path.join(job.workdir, trf)
        if not os.path.isfile(path):
            raise PilotError(1346, f"transformation {trf[:80]} not found")
    command = shlex.quote(trf) + (" " + job.jobpars if job.jobpars else "")
    env = payload_environment(job, ctx)
    experiment = ctx.experiment
    env.update(experiment.environment(job, ctx))
    command = wrap_payload(command, experiment, job, ctx)
    if plan is None:
        return ["/bin/bash", "-c", command], env
    plan.binds = [path for path in experiment.container_binds(job, ctx) if os.path.exists(path)]
    log.info("job %s runs in %s container %s", job.jobid, plan.runtime, plan.image)
    return wrap_command(plan, command, job.workdir, env), env
