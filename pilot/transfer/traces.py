"""Rucio trace reports: one record per transferred (or failed) file, as Pilot 3 sends them.

Rucio's popularity and replica-access accounting read these (`eventType` get_sm / put_sm, `_a` for analysis,
`clientState`, sites, sizes, times). They go to [Rucio] url when it is set and `--use-rucio-traces` is not
false. All of a stage's files go in one POST (a JSON list, which Rucio servers accept); a server that refuses
the list gets them one by one. Traces are best effort: a slow or failing trace server costs at most
[Rucio] trace_timeout per stage and never fails a job.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from typing import Any, Dict, List, Optional

from ..ids import new_hex_uuid
from ..job import FileSpec, Job
from ..net import Client, NetError, trust_from

log = logging.getLogger(__name__)

# PanDA code of a failed file -> Rucio clientState (Pilot 3's vocabulary)
CLIENT_STATES = {1331: "NO_REPLICA", 1100: "NO_REPLICA", 1151: "CP_TIMEOUT", 1152: "CP_TIMEOUT",
                 1171: "AD_MISMATCH", 1172: "AD_MISMATCH", 1145: "MD5_MISMATCH", 1141: "MD5_MISMATCH",
                 1098: "NO_SPACE", 1333: "NO_SPACE", 1221: "FILE_EXIST", 1338: "AUTH_FAIL", 1383: "AUTH_FAIL"}


def enabled(ctx) -> bool:
    return bool(ctx.config.rucio.url) and bool(ctx.settings.use_rucio_traces)


@functools.lru_cache(maxsize=1)
def _ip() -> str:
    """The node's outgoing address (asked once)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # no packet is sent
            probe.connect(("192.0.2.1", 9))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def build(spec: FileSpec, job: Job, ctx, direction: str, ended: Optional[float] = None) -> Dict[str, Any]:
    ended = ended or time.time()
    started = ended - (spec.transfer_seconds or 0.0)
    analysis = job.prodsourcelabel.lower() == "user"
    event = ("get_sm" if direction == "in" else "put_sm") + ("_a" if analysis else "")
    ok = spec.status in ("transferred", "remote_io")
    direct = spec.status == "remote_io"  # read in place by the payload (Pilot 3: FOUND_ROOT, direct_access)
    url = spec.turl or spec.surl or ""
    site = ctx.queuedata.site or ctx.queuedata.resource or ctx.queuedata.name
    from .. import __version__

    return {
        "eventType": event, "eventVersion": f"pilot-{__version__}", "uuid": new_hex_uuid(),
        "clientState": ("FOUND_ROOT" if direct else "DONE") if ok else CLIENT_STATES.get(spec.status_code,
                                                                                        "COPY_ERROR"),
        "stateReason": ("direct_access" if direct else "OK") if ok else (spec.diag or "")[:250],
        "scope": spec.scope, "filename": spec.lfn, "dataset": spec.dataset or "", "guid": spec.guid or "",
        "filesize": spec.filesize or 0, "protocol": url.split("://", 1)[0] if "://" in url else "",
        "url": url, "localSite": spec.ddmendpoint or site, "remoteSite": spec.ddmendpoint or "",
        "timeStart": started, "transferStart": started, "catStart": started, "relativeStart": started,
        "validateStart": ended, "transferEnd": ended, "timeEnd": ended,
        "appid": job.jobid, "taskid": job.taskid, "pq": ctx.queuedata.name, "hostname": socket.gethostname(),
        "ip": _ip(), "copytool": spec.copytool or "", "suspicious": "0",
        "usrdn": "", "usr": "", "version": None, "duid": None,
    }


def send(records: List[Dict[str, Any]], ctx) -> int:
    """POST `records` to [Rucio] url; the number the server accepted."""
    if not records:
        return 0
    url, timeout = ctx.config.rucio.url, ctx.config.rucio.trace_timeout
    deadline = time.monotonic() + timeout
    try:
        with Client(trust_from(ctx), timeout) as client:
            reply = client.post(url, json=records)
            if reply.status_code < 300:
                return len(records)
            log.info("trace server %s refused a list (HTTP %d): sending the %d traces one by one", url,
                     reply.status_code, len(records))
            sent = 0
            for record in records:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sent += client.post(url, json=record, timeout=left).status_code < 300
            if sent < len(records):
                log.warning("trace server %s took %d of %d traces", url, sent, len(records))
            return sent
    except NetError as exc:
        log.warning("Rucio traces not sent to %s: %s", url, exc.message)
        return 0
