"""Which event-service job kinds run here, and a clear refusal (1300 NOTIMPLEMENTED) for the others.

A refused kind must never run as a plain job: its payload would process no events, or all of them outside the
server's bookkeeping. Merge jobs (eventServiceMerge) are plain jobs whose inputs are range outputs: they run,
reading through the es_events_read activity first.
"""

from __future__ import annotations

from typing import Optional, Tuple

RANGE_KINDS = ("eventservice", "jumbo")  # fed ranges by driver.py
PLAIN_KINDS = ("", "esmerge")  # run as ordinary jobs
REFUSED = {"hpo": "hyper-parameter optimisation (isHPO) jobs", "finegrained": "fine-grained processing jobs"}

ESMERGE_STAGEIN_ACTIVITIES = ("es_events_read", "read_lan", "pr", "default")


def refusal(job, channel) -> Optional[Tuple[int, str]]:
    """(code, diag) if this pilot must not run `job`, else None."""
    kind = job.es_kind
    if kind in REFUSED:
        return 1300, f"this pilot does not run {REFUSED[kind]} (event-service kind {kind!r})"
    if kind in RANGE_KINDS:
        if not hasattr(channel, "api_call"):
            return 1300, (f"event-service job from the {getattr(channel, 'name', '?')} channel: event ranges are "
                          f"only available from a PanDA server")
        if not str(job.jobset_id).isdigit():
            return 1228, f"event-service job without a numeric jobsetID ({str(job.jobset_id)[:40]!r})"
    return None
