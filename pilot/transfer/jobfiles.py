"""Moving one job's files for an activity: the queue's copytools for it in order, each taking what the one
before it failed, then the Rucio traces of the transfers (used by stage-in and stage-out alike)."""

from __future__ import annotations

import time

from ..job import Job
from .base import copytool_names, get_copytool


def transfer_files(ctx, job: Job, files, activities, direction: str) -> None:
    """Move `files` with the activity's copytools in order, each one taking what the previous one failed."""
    qd = ctx.queuedata
    kind = ctx.config.file.checksum_type
    for name in copytool_names(qd.acopytools, activities):
        todo = [spec for spec in files if spec.status not in ("transferred", "remote_io")]
        if not todo:
            break
        tool = get_copytool(name, qd.copytools.get(name))
        if direction == "in":
            tool.copy_in(todo, job.workdir, ctx, kind, job)
        else:
            tool.copy_out(todo, job.workdir, ctx, kind, job)
    from . import traces

    if traces.enabled(ctx):
        ended = time.time()
        traces.send([traces.build(spec, job, ctx, direction, ended) for spec in files], ctx)
