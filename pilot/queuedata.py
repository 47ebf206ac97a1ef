"""Queue data (PanDA schedconfig / CRIC "pandaqueue" JSON) for the queue given with -q.

Sources, in order: --queuedata-url (a local file path or an http(s) URL), $QUEUEDATA_SERVER_URL, then the
[Information] queuedata_url template; `-q LOCAL` without any of these uses the built-in local queue so the
embedded default job needs no file and no network. No silent fallback between sources: the first one named is
the one used, and its failure is 1116 (cannot download) or 1117 (not valid queue data).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import PilotError

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


@dataclass
class QueueData:
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


def _read_source(source: str, timeout: float, attempts: int) -> Dict[str, Any]:
    if "://" not in source or source.startswith("file://"):
        path = source[len("file://"):] if source.startswith("file://") else source
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PilotError(1116, f"cannot read queue data file {path}: {exc}") from None
    else:
        import requests  # lazily: only remote queue data needs it

        last = ""
        text = ""
        for attempt in range(1, max(1, attempts) + 1):
            try:
                reply = requests.get(source, timeout=timeout)
                reply.raise_for_status()
                text = reply.text
                break
            except requests.RequestException as exc:
                last = str(exc)
                log.warning("queue data download attempt %d/%d from %s failed: %s", attempt, attempts, source, last)
        else:
            raise PilotError(1116, f"cannot download queue data from {source}: {last}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PilotError(1117, f"queue data from {source} is not valid JSON: {exc}") from None


def load_queuedata(queue: str, url: str = "", template: str = "", timeout: float = 30,
                   attempts: int = 3, cache_path: Optional[str] = None) -> QueueData:
    """Load and check the queue data; raise PilotError 1116/1117/1359/1386 when the queue cannot be used."""
    source = url or os.environ.get("QUEUEDATA_SERVER_URL", "")
    if not source and queue == LOCAL_QUEUE:
        raw: Dict[str, Any] = copy.deepcopy(BUILTIN_LOCAL)
        source = "built-in LOCAL queue"
    else:
        source = source or template
        if not source:
            raise PilotError(1116, f"no queue data source for queue {queue}")
        source = source.replace("{pandaqueue}", queue)
        raw = _read_source(source, timeout, attempts)
    data = from_dict(raw, queue)
    if cache_path:
        with open(cache_path, "w", encoding="utf-8") as handle:
            json.dump(data.raw, handle, indent=1, sort_keys=True)
    if data.state.upper() != "ACTIVE":
        raise PilotError(1359, f"queue {queue} state is {data.state!r}, not ACTIVE")
    if data.status.lower() == "offline":
        raise PilotError(1386, f"queue {queue} is offline")
    log.info("queue data for %s from %s: timefloor=%ds maxtime=%ds copytools=%s", data.name, source,
             data.timefloor, data.maxtime, sorted(data.copytools))
    return data
