"""The wire format of a job's updates: the updateJob dict the channels send (spec pilot3-reference §3.5)."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional

from .job import Job
from .monitor.cpuinfo import node_cpu


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def file_info(job: Job) -> Dict[str, Dict[str, Any]]:
    """The final update's `xml` content: what was staged out, keyed by LFN (Pilot 3's job.fileinfo)."""
    info: Dict[str, Dict[str, Any]] = {}
    for spec in job.outputs + ([job.logfile] if job.logfile else []):
        if spec.status != "transferred":
            continue
        entry: Dict[str, Any] = {"guid": spec.guid, "fsize": spec.filesize, "surl": spec.surl,
                                 "endpoint": spec.ddmendpoint, "type": spec.role}
        if "adler32" in spec.checksum:
            entry["adler32"] = spec.checksum["adler32"]
        if "md5" in spec.checksum:
            entry["md5sum"] = spec.checksum["md5"]
        info[spec.lfn] = entry
    return info


def update_dict(job: Job, state: str, static: Dict[str, Any], final: bool,
                metadata: Optional[str] = None) -> Dict[str, Any]:
    """The updateJob dict (spec pilot3-reference §3.5) for `state`; `static` carries siteName, node, pilotID..."""
    data: Dict[str, Any] = {"jobId": job.jobid, "state": state, "timestamp": iso_now(),
                            "attemptNr": job.attemptnr, "coreCount": job.corecount}
    data.update({key: value for key, value in static.items() if value not in (None, "")})
    if job.started_at:
        data["startTime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.started_at))
    data.update(node_cpu())  # cpuConsumptionUnit "s+<model>", cpuConversionFactor, cpuArchitectureLevel
    if job.cpu_seconds:
        data["cpuConsumptionTime"] = int(job.cpu_seconds) if job.cpu_seconds < 1e9 else -1
    if job.mean_cores:
        data["meanCoreCount"] = job.mean_cores
    if job.nevents:
        data["nEvents"] = job.nevents
    data.update(job.memory)
    metrics = dict(job.metrics, coreCount=job.corecount, **({"nEvents": job.nevents} if job.nevents else {}))
    data["jobMetrics"] = " ".join(f"{key}={value}" for key, value in sorted(metrics.items()))[:500]
    if job.errors:
        data["pilotErrorCode"] = job.error_code
        data["pilotErrorDiag"] = job.error_diag
    if final:
        data["xml"] = json.dumps(file_info(job), sort_keys=True)
        order = ("getjob", "stagein", "payload", "stageout", "initial_setup", "setup")
        data["pilotTiming"] = "|".join(str(int(round(job.timing.get(key, 0)))) for key in order)
        data["endTime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.ended_at or time.time()))
        data["pilotErrorCode"] = job.error_code
        data["pilotErrorDiag"] = job.error_diag
        if job.trans_exit_code is not None:
            data["transExitCode"] = job.trans_exit_code
        data["exeErrorCode"] = job.exe_error_code
        data["exeErrorDiag"] = job.exe_error_diag
        if metadata:
            data["metaData"] = metadata
    return data
