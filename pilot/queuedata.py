"""Queue data (PanDA schedconfig / CRIC "pandaqueue" JSON) for the queue given with -q.

Sources, in order (`Sources`): queuedata.json in the launch dir, --queuedata-url (a local file path or an
http(s) URL), $QUEUEDATA_SERVER_URL; `-q LOCAL` without any of these (and without a server) uses the built-in
local queue so the embedded default job needs no file and no network; then an on-disk cache, the PanDA
server's schedconfig cache, CRIC. A source named explicitly (file or URL) is final: its failure is 1116
(cannot download) or 1117 (not valid queue data); the server and CRIC are tried in turn.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import field
from typing import Any, Dict, List, Optional

from .errors import PilotError
from .net import Trust, get_json
from .records import Record, record

log = logging.getLogger(__name__)

LOCAL_QUEUE = "LOCAL"

# The built-in queue used by `-q LOCAL`: everything local, the mv copytool for every activity, one job.
BUILTIN_LOCAL: Dict[str, Any] = {
    "nickname": LOCAL_QUEUE, "panda_resource": LOCAL_QUEUE, "atlas_site": LOCAL_QUEUE, "state": "ACTIVE",
    "status": "online", "type": "production", "resource_type": "grid", "timefloor": 0, "maxtime": 0,
    "maxwdir": 14336, "maxrss": 2000, "maxinputsize": 14336, "corecount": 1,
    "copytools": {"mv": {"setup": ""}},
    "acopytools": {"read_lan": ["mv"], "write_lan": ["mv"], "pl": ["mv"], "default": ["mv"]},
    "astorages": {}, "container_type": "", "container_options": "", "catchall": "", "environ": "",
    "params": {}, "is_cvmfs": False,
}


@record
class QueueData(Record):
    name: str
    resource: str = ""
    site: str = ""
    state: str = "ACTIVE"
    status: str = "online"
    type: str = ""
    resource_type: str = ""
    timefloor: int = 0  # seconds (the JSON has minutes)
    maxtime: int = 0  # seconds; 0 = not set
    maxwdir: int = 0  # MB
    maxinputsize: int = 0  # MB
    maxrss: int = 0  # MB
    corecount: int = 1
    copytools: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    acopytools: Dict[str, List[str]] = field(default_factory=dict)
    astorages: Dict[str, List[str]] = field(default_factory=dict)
    container_type: str = ""
    container_options: str = ""
    catchall: str = ""
    environ: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


def _int(raw: Dict[str, Any], key: str, default: int = 0) -> int:
    value = raw.get(key)
    if value in (None, "", "NULL"):
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf" or 1e999
        raise PilotError(1117, f"queue data field {key}={str(value)[:40]!r} is not a number") from None


def _dict(raw: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise PilotError(1117, f"queue data field {key} is a {type(value).__name__}, expected an object")
    return value


def _str(raw: Dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value)


def from_dict(raw: Dict[str, Any], queue: str) -> QueueData:
    """QueueData from one queue's JSON object (or from a {name: object} document holding `queue`)."""
    if not isinstance(raw, dict):
        raise PilotError(1117, "queue data is not a JSON object")
    if queue in raw and isinstance(raw[queue], dict) and "nickname" not in raw:
        raw = raw[queue]
    elif raw and "nickname" not in raw and "name" not in raw and all(isinstance(v, dict) for v in raw.values()):
        raise PilotError(1117, f"queue data holds queues {sorted(raw)[:5]} but not {queue}")
    acopytools = _dict(raw, "acopytools")
    for activity, tools in acopytools.items():
        if isinstance(tools, str):
            acopytools[activity] = [tools]
        elif not isinstance(tools, list) or not all(isinstance(tool, str) for tool in tools):
            raise PilotError(1117, f"queue data acopytools[{activity}] is not a list of copytool names")
    data = QueueData(
        name=_str(raw, "nickname") or queue,
        resource=_str(raw, "panda_resource") or _str(raw, "resource") or queue,
        site=_str(raw, "atlas_site") or _str(raw, "site") or _str(raw, "gstat"),
        state=_str(raw, "state") or "ACTIVE",
        status=_str(raw, "status") or "online",
        type=_str(raw, "type"),
        resource_type=_str(raw, "resource_type"),
        timefloor=_int(raw, "timefloor") * 60,
        maxtime=_int(raw, "maxtime"),
        maxwdir=_int(raw, "maxwdir"),
        maxinputsize=_int(raw, "maxinputsize"),
        maxrss=_int(raw, "maxrss"),
        corecount=max(1, _int(raw, "corecount", 1)),
        copytools=_dict(raw, "copytools"),
        acopytools=acopytools,
        astorages=_dict(raw, "astorages"),
        container_type=_str(raw, "container_type"),
        container_options=_str(raw, "container_options"),
        catchall=_str(raw, "catchall"),
        environ=_str(raw, "environ"),
        params=_dict(raw, "params"),
        raw=raw,
    )
    return data


def _read_source(source: str, timeout: float, attempts: int, trust: Optional[Trust] = None) -> Dict[str, Any]:
    return get_json(source, "queue data", 1116, 1117, timeout=timeout, attempts=attempts, trust_=trust)


def _check(data: QueueData, queue: str, source: str) -> QueueData:
    if data.state.upper() != "ACTIVE":
        raise PilotError(1359, f"queue {queue} state is {data.state!r}, not ACTIVE")
    if data.status.lower() == "offline":
        raise PilotError(1386, f"queue {queue} is offline")
    log.info("queue data for %s from %s: timefloor=%ds maxtime=%ds copytools=%s", data.name, source,
             data.timefloor, data.maxtime, sorted(data.copytools))
    return data


def _write_json(path: str, raw: Dict[str, Any]) -> None:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(raw, handle, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    except OSError as exc:  # a copy or cache is a convenience: the pilot runs without it
        log.warning("cannot write queue data to %s: %s", path, exc)


@record
class Sources(Record):
    """Where queue data may come from, in the order they are tried (docs/user-guide.md, "Queue data").

    launch_file: queuedata.json in the launch dir (placed by the site, a wrapper or Harvester), as Pilot 3.
    url: --queuedata-url, then $QUEUEDATA_SERVER_URL: named explicitly, so a failure is final.
    server: the PanDA server's schedconfig cache URL; cric: the CRIC URL. Between these two the on-disk
    `cache_file` is used when younger than `cache_age` seconds, and, when both fail, when younger than
    `stale_age` (with a warning): a burst of pilots on one node then asks the server once.
    """

    url: str = ""
    launch_file: str = ""
    server: str = ""
    cric: str = ""
    cache_file: str = ""
    cache_age: float = 600.0
    stale_age: float = 86400.0


def _cached(path: str, max_age: float) -> Optional[Dict[str, Any]]:
    if not path:
        return None
    try:
        if time.time() - os.stat(path).st_mtime > max_age:
            return None
        with open(path, "rb") as handle:
            raw = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("queue data cache %s unusable: %s", path, exc)
        return None
    return raw if isinstance(raw, dict) else None


def _fetch(queue: str, sources: Sources, timeout: float, attempts: int, trust: Optional[Trust]) -> tuple:
    """(raw JSON, where from) following the order of `Sources`."""
    if sources.launch_file and os.path.isfile(sources.launch_file):
        return _read_source(sources.launch_file, timeout, attempts, trust), sources.launch_file
    url = sources.url or os.environ.get("QUEUEDATA_SERVER_URL", "")
    if url:
        url = url.replace("{pandaqueue}", queue)
        return _read_source(url, timeout, attempts, trust), url
    if queue == LOCAL_QUEUE and not sources.server:
        return copy.deepcopy(BUILTIN_LOCAL), "built-in LOCAL queue"
    raw = _cached(sources.cache_file, sources.cache_age)
    if raw is not None:
        return raw, f"cache {sources.cache_file}"
    problems = []
    for template in (sources.server, sources.cric):
        if not template:
            continue
        where = template.replace("{pandaqueue}", queue)
        try:
            raw = _read_source(where, timeout, attempts, trust)
            from_dict(raw, queue)  # a document without this queue is a failure of this source, not the end
        except PilotError as exc:
            problems.append(exc.diag)
            log.warning("queue data from %s: %s", where, exc.diag)
            continue
        if sources.cache_file:
            _write_json(sources.cache_file, raw)
        return raw, where
    raw = _cached(sources.cache_file, sources.stale_age)
    if raw is not None:
        log.warning("queue data: every source failed; using the older cache %s", sources.cache_file)
        return raw, f"stale cache {sources.cache_file}"
    if not problems:
        raise PilotError(1116, f"no queue data source for queue {queue}")
    raise PilotError(1116, f"no queue data for {queue}: " + "; ".join(problems))


def load_queuedata(queue: str, url: str = "", template: str = "", timeout: float = 30,
                   attempts: int = 3, cache_path: Optional[str] = None,
                   sources: Optional[Sources] = None, trust: Optional[Trust] = None) -> QueueData:
    """Load and check the queue data; raise PilotError 1116/1117/1359/1386 when the queue cannot be used.

    `cache_path` receives a copy of the queue data used (the main work dir's queuedata.json); `trust` is the
    TLS trust for https sources (net.trust: --cacert/--capath).
    """
    sources = sources or Sources(url=url, server=template)
    raw, source = _fetch(queue, sources, timeout, attempts, trust)
    data = from_dict(raw, queue)
    if cache_path:
        _write_json(cache_path, data.raw)
    return _check(data, queue, source)
