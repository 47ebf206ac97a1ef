"""Event ranges from the PanDA server: /api/v1/event/acquire_event_ranges and update_event_ranges, the legacy
getEventRanges / updateEventRanges / updateEventRange when the server does not speak v1 (PandaChannel.api_call).

Updates go in bulk (with error codes and diagnostics). When a bulk call is not acknowledged, each range is
confirmed alone through update_single_event_range: panda-server 1.0.x stores a bulk update and then fails to
encode its own answer (HTTP 500), and a range update is idempotent on the server (only ranges still
sent/running change), so confirming again is harmless while never confirming would be a lost update. Server commands that come back
(tobekilled, softkill) are returned to the driver.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

RANGE_KEYS = ("eventRangeID", "startEvent", "lastEvent", "LFN", "GUID", "scope")


class PandaEventSource:
    def __init__(self, channel, job):
        self.channel, self.job = channel, job
        self.bulk = True

    def _ids(self) -> Dict[str, Any]:
        ids: Dict[str, Any] = {"job_id": int(self.job.jobid), "jobset_id": int(self.job.jobset_id)}
        if str(self.job.taskid).isdigit():
            ids["task_id"] = int(self.job.taskid)
        return ids

    def fetch(self, count: int) -> Optional[List[Dict[str, Any]]]:
        """Up to `count` new ranges ([] = the server has no more); None when the server could not be asked."""
        body = dict(self._ids(), n_ranges=int(count))
        form = {"pandaID": str(self.job.jobid), "jobsetID": str(self.job.jobset_id), "nRanges": str(count)}
        if "task_id" in body:
            form["taskID"] = str(body["task_id"])
        reply = self.channel.api_call("event/acquire_event_ranges", body, "getEventRanges", form)
        if reply is None or not reply.ok:
            log.warning("acquire_event_ranges for job %s: %s", self.job.jobid,
                        "no answer" if reply is None else reply.message or reply.status_code)
            return None
        data = reply.data
        if isinstance(data, dict):  # legacy: {"StatusCode": 0, "eventRanges": "<JSON list>"}
            data = data.get("eventRanges", "[]")
            try:
                data = json.loads(data) if isinstance(data, str) else data
            except ValueError:
                return None
        if not isinstance(data, list):
            return None
        return [entry for entry in data if isinstance(entry, dict) and isinstance(entry.get("eventRangeID"), str)]

    def update(self, updates: List[Dict[str, Any]]) -> Tuple[bool, List[str]]:
        """Send final range states; (all acknowledged, server commands)."""
        text = json.dumps(updates)
        reply = self.channel.api_call("event/update_event_ranges", {"event_ranges": text, "version": 0},
                                      "updateEventRanges", {"eventRanges": text, "version": "0"})
        if reply is not None and reply.ok:
            return True, _commands(reply.data)
        if self.bulk:
            log.warning("bulk update of %d event range(s) not acknowledged (%s): confirming each range alone",
                        len(updates), "no answer" if reply is None else reply.message[:200])
            self.bulk = False
        commands: List[str] = []
        for update in updates:
            body = {"event_range_id": update["eventRangeID"], "event_range_status": update["eventStatus"]}
            form = {"eventRangeID": update["eventRangeID"], "eventStatus": update["eventStatus"]}
            for key, name in (("coreCount", "core_count"), ("cpuConsumptionTime", "cpu_consumption_time")):
                if update.get(key) is not None:
                    body[name] = update[key]
                    form[key] = str(update[key])
            reply = self.channel.api_call("event/update_single_event_range", body, "updateEventRange", form)
            if reply is None or not reply.ok:
                return False, commands
            commands += _commands(reply.data)
        return True, commands


def _commands(data: Any) -> List[str]:
    """Commands for this pilot in an update answer: {"Command": ...} or {"Commands": {PandaID: cmd}}."""
    found: List[str] = []
    if not isinstance(data, dict):
        return found
    for key in ("Command", "Commands", "command"):
        value = data.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, dict):
            found += [str(v) for v in value.values() if v not in (None, "", "NULL")]
        elif isinstance(value, str) and value not in ("", "NULL", "None"):
            found.append(value)
    return found
