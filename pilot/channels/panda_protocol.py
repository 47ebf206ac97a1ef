"""PanDA dispatcher wire format: request bodies and reply decoding, for /api/v1 and the legacy protocol.

Pure functions, no I/O, so every encoding rule is unit-tested against recorded replies. v1 (server >= 1.0.0)
takes JSON with snake_case names and strict types and rejects unknown names, so updates are translated from the
pilot's internal (Pilot 3 camelCase) update dict through an explicit whitelist. The legacy protocol takes the
camelCase names form-encoded and answers JSON or `key=value&...` (spec panda-server.md A.2-A.8).
"""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs

from ..records import Record, record

# internal update key -> (v1 name, type)
UPDATE_FIELDS: Dict[str, tuple] = {
    "jobId": ("job_id", int), "state": ("job_status", str), "attemptNr": ("attempt_nr", int),
    "transExitCode": ("trans_exit_code", int), "pilotErrorCode": ("pilot_error_code", int),
    "pilotErrorDiag": ("pilot_error_diag", str), "exeErrorCode": ("exe_error_code", int),
    "exeErrorDiag": ("exe_error_diag", str), "node": ("node", str), "siteName": ("site_name", str),
    "schedulerID": ("scheduler_id", str), "pilotID": ("pilot_id", str), "batchID": ("batch_id", str),
    "cpuConsumptionTime": ("cpu_consumption_time", int), "cpuConsumptionUnit": ("cpu_consumption_unit", str),
    "cpuConversionFactor": ("cpu_conversion_factor", float),
    "cpuArchitectureLevel": ("cpu_architecture_level", str), "coreCount": ("core_count", int),
    "meanCoreCount": ("mean_core_count", "cores"), "startTime": ("start_time", str), "endTime": ("end_time", str),
    "nEvents": ("n_events", int), "nInputFiles": ("n_input_files", int), "jobMetrics": ("job_metrics", str),
    "jobSubStatus": ("job_sub_status", str), "pilotTiming": ("pilot_timing", str),
    "maxRSS": ("max_rss", int), "maxVMEM": ("max_vmem", int), "maxSWAP": ("max_swap", int),
    "maxPSS": ("max_pss", int), "avgRSS": ("avg_rss", int), "avgVMEM": ("avg_vmem", int),
    "avgSWAP": ("avg_swap", int), "avgPSS": ("avg_pss", int), "totRCHAR": ("tot_rchar", int),
    "totWCHAR": ("tot_wchar", int), "totRBYTES": ("tot_rbytes", int), "totWBYTES": ("tot_wbytes", int),
    "rateRCHAR": ("rate_rchar", int), "rateWCHAR": ("rate_wchar", int), "rateRBYTES": ("rate_rbytes", int),
    "rateWBYTES": ("rate_wbytes", int), "corruptedFiles": ("corrupted_files", str),
    "xml": ("job_output_report", str), "metaData": ("meta_data", str), "pilotLog": ("pilot_log", str),
    "stdout": ("stdout", str),
}
# legacy updateJob accepted every camelCase key above plus these
LEGACY_ONLY_UPDATE_KEYS = ("timestamp",)

# acquire_jobs v1 name -> legacy getJob name
ACQUIRE_LEGACY_NAMES = {
    "site_name": "siteName", "computing_element": "computingElement", "prod_source_label": "prodSourceLabel",
    "node": "node", "memory": "mem", "disk_space": "diskSpace", "n_jobs": "nJobs", "resource_type": "resourceType",
    "harvester_id": "harvester_id", "worker_id": "worker_id", "scheduler_id": "schedulerID", "job_type": "jobType",
    "remaining_time": "remaining_time", "prod_user_id": "prodUserID", "task_id": "taskID",
}


@record
class ServerReply(Record):
    """A decoded reply: `ok` is the server's success, `data` the payload, `message` its text."""

    ok: bool
    message: str = ""
    data: Any = None
    status_code: Optional[int] = None  # the dispatcher StatusCode inside data (0 = success)
    jobs: List[Dict[str, Any]] = field(default_factory=list)
    commands: List[str] = field(default_factory=list)


def _whole_cores(value: Any) -> int:
    """v1 update_job takes mean_core_count as an int (1.0.4 refuses a float): rounded, and 1 for any busy payload."""
    cores = float(value)
    return max(1, int(round(cores))) if cores > 0 else 0


def _cast(value: Any, kind: Any) -> Any:
    if value is None:
        return None
    try:
        if kind == "cores":
            return _whole_cores(value)
        if kind is int:
            return int(value) if not isinstance(value, float) else int(round(value))
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, str) else str(value)


def v1_update_body(update: Dict[str, Any]) -> Dict[str, Any]:
    """The /api/v1/pilot/update_job JSON body for an internal update dict (unknown keys dropped)."""
    body: Dict[str, Any] = {}
    for key, value in update.items():
        spec = UPDATE_FIELDS.get(key)
        if spec is None:
            continue
        name, kind = spec
        cast = _cast(value, kind)
        if cast is not None and cast != "":
            body[name] = cast
    return body


def legacy_update_form(update: Dict[str, Any]) -> Dict[str, str]:
    """Form fields for legacy /server/panda/updateJob (camelCase names, string values)."""
    form = {}
    for key, value in update.items():
        if key in UPDATE_FIELDS or key in LEGACY_ONLY_UPDATE_KEYS:
            if value is not None and value != "":
                form[key] = str(value)
    return form


def legacy_acquire_form(params: Dict[str, Any]) -> Dict[str, str]:
    form = {}
    for key, value in params.items():
        name = ACQUIRE_LEGACY_NAMES.get(key)
        if name and value not in (None, ""):
            form[name] = "True" if value is True else "False" if value is False else str(value)
    return form


def split_commands(value: Any) -> List[str]:
    if not value or not isinstance(value, str) or value.strip() in ("NULL", "None"):
        return []
    return [part.strip() for part in value.split(",") if part.strip() and part.strip() != "NULL"]


def _parse_body(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):
            return None  # truncated, corrupt or absurdly nested JSON: not a URL-encoded reply either
    if stripped == "Succeeded":
        return {"StatusCode": 0}
    if "=" in stripped:
        parsed = parse_qs(stripped, keep_blank_values=True)
        return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}
    return None


def _status(data: Any) -> Optional[int]:
    if isinstance(data, dict) and "StatusCode" in data:
        try:
            return int(data["StatusCode"])
        except (TypeError, ValueError):
            return None
    return None


def decode_reply(text: str) -> ServerReply:
    """Decode a v1 envelope, a legacy JSON dict or a legacy URL-encoded reply."""
    body = _parse_body(text)
    if body is None:
        return ServerReply(ok=False, message=f"unreadable reply ({len(text)} bytes): {text.strip()[:120]}",
                           status_code=-1)
    if isinstance(body, dict) and "success" in body and "data" in body:  # v1 envelope
        data = body.get("data")
        reply = ServerReply(ok=bool(body.get("success")), message=str(body.get("message") or ""), data=data,
                            status_code=_status(data))
        if isinstance(data, dict):
            jobs = data.get("jobs")
            if isinstance(jobs, list):
                reply.jobs = [job for job in jobs if isinstance(job, dict)]
            reply.commands = split_commands(data.get("command"))
        if reply.status_code not in (None, 0):
            reply.ok = False
            reply.message = reply.message or str(data.get("ErrorDiag") or data.get("errorDialog") or "")
        return reply
    if isinstance(body, dict):  # legacy
        status = _status(body)
        reply = ServerReply(ok=status == 0, data=body, status_code=status,
                            message=str(body.get("errorDialog") or body.get("ErrorDiag") or ""))
        reply.commands = split_commands(body.get("command"))
        if status == 0 and "PandaID" in body:
            reply.jobs = [body]
        elif status == 0 and isinstance(body.get("jobs"), str):
            try:
                reply.jobs = [job for job in json.loads(body["jobs"]) if isinstance(job, dict)]
            except (ValueError, RecursionError):
                reply.ok, reply.message = False, "legacy getJob reply has unreadable 'jobs'"
        if status == 20:
            reply.message = reply.message or "No jobs in PanDA"
        return reply
    return ServerReply(ok=False, message=f"unexpected reply {text.strip()[:200]!r}")


# v1 replies (HTTP 200, success false) of a server that knows who we are but not as a pilot (spec A.4)
ROLE_REFUSALS = ("production or pilot role required", "no production/pilot role", "ssl secure connection is required")


def is_role_refusal(message: str) -> bool:
    text = (message or "").lower()
    return any(refusal in text for refusal in ROLE_REFUSALS)


def is_no_jobs(reply: ServerReply) -> bool:
    return (not reply.ok and ("no jobs" in reply.message.lower() or reply.status_code == 20)) or \
        (reply.ok and not reply.jobs)
