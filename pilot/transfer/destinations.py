"""Where outputs go: primary and alternative storage per file, and the alternative stage-out rule (Pilot 3).

Pilot 3's prepare_destinations: the queue's astorages for the activity decide. A file whose job-given endpoint is
in that list keeps it; otherwise the list's first entry becomes the primary and the job's endpoint the alternative.
The alternative of a file already on the list is the next entry of the list. So a queue whose ``pl`` storage is an
object store (CRIC type OS_LOGS, copytool s3) gets its log tarballs there whatever the job says, with the job's
disk as the fallback.

Alternative stage-out (`allow`): the job's ``altStageOut`` (on/force: yes, off: no), else the queue's
``params.allow_altstageout``. Files that failed on their primary storage -- for a storage reason, not because the
file is missing or the pilot is stopping -- are tried once more on their alternative.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Sequence

from ..job import FileSpec
from .base import fired_stop, queue_storages

log = logging.getLogger(__name__)

# failures another storage cannot fix: the local file is missing / empty / too large, the job or pilot stops
NOT_STORAGE_FAILURES = frozenset({1165, 1191, 1124})
_TRUE = ("true", "1", "yes", "on", "force")


def allow(ctx, job) -> bool:
    choice = (getattr(job, "alt_stageout", "") or "").lower()
    if choice in ("on", "force"):
        return True
    if choice == "off":
        return False
    return str(ctx.queuedata.params.get("allow_altstageout", "")).lower() in _TRUE


def prepare(ctx, files: Iterable[FileSpec], activities: Sequence[str]) -> None:
    """Set each file's primary (`ddmendpoint`) and alternative (`ddmendpoint_alt`) storage."""
    ddms = queue_storages(ctx, activities)
    if not ddms:
        return
    for spec in files:
        if not spec.ddmendpoint or spec.ddmendpoint in ddms:
            spec.ddmendpoint = spec.ddmendpoint or ddms[0]
            later = [name for name in ddms if name != spec.ddmendpoint]
            spec.ddmendpoint_alt = later[0] if later else ""
        else:
            spec.ddmendpoint_alt = spec.ddmendpoint if spec.ddmendpoint != ddms[0] else ""
            spec.ddmendpoint = ddms[0]


def retry_candidates(ctx, job, files: Iterable[FileSpec]) -> List[FileSpec]:
    """The failed files that alternative stage-out may move to their alternative storage (switched already)."""
    if fired_stop(ctx, job) is not None:
        return []
    chosen = []
    for spec in files:
        if spec.status == "transferred" or spec.status_code in NOT_STORAGE_FAILURES:
            continue
        if not spec.ddmendpoint_alt or spec.ddmendpoint_alt == spec.ddmendpoint:
            continue
        log.warning("alternative stage-out: %s failed on %s (%d: %s); trying %s", spec.lfn, spec.ddmendpoint,
                    spec.status_code, spec.diag, spec.ddmendpoint_alt)
        spec.ddmendpoint, spec.ddmendpoint_alt = spec.ddmendpoint_alt, ""
        spec.status, spec.status_code, spec.diag, spec.surl, spec.turl = "", 0, "", "", ""
        chosen.append(spec)
    return chosen
