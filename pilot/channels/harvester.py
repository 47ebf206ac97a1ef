"""Harvester shared-file channel: jobs handed over as files, results written back as files.

Harvester's SharedFileMessenger and the pilot meet in the worker's access point (spec launchers.md §2.3-2.4):
  job in      HPCJobs.json (access point) or pandaJobData.out (data dir): {"<PandaID>": {job}} or, legacy, a
              URL-encoded getJob reply. The pilot takes it, keeps a copy as job_definition.json, deletes it.
  job request worker_requestjob.json {"nJobs": 1}: written when the pilot wants its next job (late binding).
  state       worker_attributes.json: the update dict without xml/inputfiles/outputfiles, plus jobStatus;
              jobStatus finished/failed is what Harvester takes as the job's final state.
  outputs     event_status.dump.json (final update): {"<PandaID>": [{type, path, guid, fsize, chksum}]}
  report      jobReport.json: the payload's report, executor[].logfileReport emptied.
  kill        kill_worker (what Pilot 3 writes) and kill_worker.json (what Harvester reads), at every exit, with
              the exit code (harvester_exit.py).
  heartbeat   worker_heartbeat.json, rewritten every [Harvester] heartbeat_period s and at every update (Harvester
              checks its mtime when the queue sets worker_heartbeat).
Every file is written under a temporary name and renamed, so Harvester never reads half of one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qsl

from ..errors import PilotError
from ..job import Job
from ..jobparser import parse_jobs, split_definitions
from ..payload.untrusted import read_inside
from ..threads import guarded
from .base import Channel, Reply
from ..files import write_json_atomic
from .local import salvage_jobs

log = logging.getLogger(__name__)

LEGACY_JOB_FILE = "pandaJobData.out"
DROPPED_KEYS = ("xml", "inputfiles", "outputfiles")


def is_harvester_mode(settings) -> bool:
    """Pilot 3's rule (spec launchers.md §2.4)."""
    if not settings.update_server and (settings.harvester_workdir or settings.harvester_datadir or
                                   settings.harvester_eventstatusdump or settings.harvester_workerattributes):
        return True
    return bool((os.environ.get("HARVESTER_ID") or os.environ.get("HARVESTER_WORKER_ID"))
                and settings.harvester_submitmode == "PUSH")


def access_point(settings, main_dir: str) -> str:
    return os.path.abspath(settings.harvester_workdir or os.environ.get("HARVESTER_WORKDIR") or main_dir)


def parse_job_file(text: str) -> List[Dict[str, Any]]:
    """Job definitions from a Harvester job file: JSON {id: {...}} (or one definition), or URL-encoded."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return split_definitions(json.loads(stripped))
    return [dict(parse_qsl(stripped, keep_blank_values=True))]


class HarvesterChannel(Channel):
    name = "harvester"

    @classmethod
    def open(cls, ctx, address: str = "", placement=None) -> "HarvesterChannel":
        return cls(ctx, placement)

    def __init__(self, ctx, placement=None):
        self.ctx = ctx
        settings, cfg = ctx.settings, ctx.config.harvester
        self.placement = placement  # HPC: this rank's job in job files shared by all ranks (never deleted)
        self.ap = placement.access_point if placement else access_point(settings, ctx.paths.main)
        os.makedirs(self.ap, exist_ok=True)
        self.datadir = settings.harvester_datadir
        self.attributes_path = settings.harvester_workerattributes or os.path.join(self.ap, cfg.workerattributes_file)
        self.events_path = settings.harvester_eventstatusdump or os.path.join(self.ap, cfg.stageoutn_file)
        self.request_path = os.path.join(self.ap, cfg.job_request_file)
        self.poll_interval = cfg.job_poll_interval
        self.wait_limit = cfg.job_wait_limit
        self.push = settings.harvester_submitmode == "PUSH"
        self._served = 0
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread = guarded("harvester-heartbeat", self._heartbeat_loop, ctx.request_abort)
        self._heartbeat_thread.start()
        log.info("Harvester %s mode, access point %s", settings.harvester_submitmode, self.ap)

    # --- jobs ------------------------------------------------------------------------------------------------
    def candidates(self) -> List[str]:
        names = [os.path.join(self.ap, self.ctx.config.harvester.pandajob_file)]
        source = self.ctx.paths.source
        for folder in (self.datadir, self.ap, os.path.dirname(source), source,
                       os.environ.get("PILOT_WORK_DIR", "")):
            if folder:
                names.append(os.path.join(folder, LEGACY_JOB_FILE))
        return names

    def _take_job_file(self) -> Optional[List[Any]]:  # definitions, or salvaged Jobs
        for path in self.candidates():
            if self.placement:
                definitions = self._read_shared(path)
                if definitions is not None:
                    return self._select(definitions)
                continue
            try:
                with open(path, "rb") as handle:
                    text = handle.read().decode("utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise PilotError(1008, f"cannot read Harvester job file {path}: {exc}") from None
            keep = os.path.join(self.ctx.paths.main, "job_definition.json")
            with open(keep + ".tmp", "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(keep + ".tmp", keep)
            os.unlink(path)
            if os.path.exists(self.request_path):
                os.unlink(self.request_path)
            try:
                return parse_job_file(text)
            except RecursionError:  # the ids it names are reported failed (1302): Harvester gets a final state
                return salvage_jobs(text.encode("utf-8"), path)
            except ValueError as exc:
                raise PilotError(1008, f"Harvester job file {path} is not valid JSON: {exc}") from None
        return None

    def _read_shared(self, path: str) -> Optional[List[Dict[str, Any]]]:
        """HPC ranks share one job file: read it, never take (delete) it."""
        try:
            with open(path, "rb") as handle:
                return parse_job_file(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PilotError(1008, f"cannot read shared job file {path}: {exc}") from None
        except RecursionError:
            raise PilotError(1302, f"shared job file {path} is nested too deeply to be parsed") from None

    def _select(self, definitions: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        placement = self.placement
        if placement.panda_id:
            return [raw for raw in definitions if str(raw.get("PandaID")) == placement.panda_id]
        return definitions[placement.job_index:placement.job_index + 1]

    def fetch(self, max_jobs: int = 1) -> List[Job]:
        if self.placement and self._served:
            return []  # an HPC rank runs its one job
        if (self._served or not self.push) and not self.placement:
            if not os.path.exists(self.request_path):
                write_json_atomic(self.request_path, {"nJobs": max_jobs})
                log.info("asked Harvester for %d job(s) in %s", max_jobs, self.request_path)
        asked = (self._served or not self.push) and not self.placement
        deadline = time.monotonic() + (self.wait_limit if asked else self.poll_interval)
        while True:
            definitions = self._take_job_file()
            if definitions is not None:
                break
            if time.monotonic() >= deadline or self.ctx.abort.wait(self.poll_interval):
                log.info("no job file from Harvester in %s", self.ap)
                return []
        # Pilot 3 keeps only the first job of a file
        salvaged = [job for job in definitions[:max_jobs] if isinstance(job, Job)]
        jobs = salvaged or parse_jobs(definitions[:max_jobs], self.ctx.config.file.max_field_length,
                                      "Harvester job file")
        self._served += len(jobs)
        return jobs

    # --- reports ---------------------------------------------------------------------------------------------
    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        attributes = {key: value for key, value in data.items() if key not in DROPPED_KEYS}
        attributes["jobStatus"] = data["state"]
        write_json_atomic(self.attributes_path, attributes)
        self._touch_heartbeat()
        if final:
            write_json_atomic(self.events_path, {job.jobid: self._staged_files(job)})
            self._publish_job_report(job)
        return Reply(ok=True, where=self.attributes_path)

    def _staged_files(self, job: Job) -> List[Dict[str, Any]]:
        files = []
        for spec in job.outputs + ([job.logfile] if job.logfile else []):
            if spec.status != "transferred":
                continue
            path = spec.surl if spec.surl.startswith("/") and os.path.exists(spec.surl) else ""
            for folder in (self.ap, os.path.join(self.ap, job.jobid)):
                if not path and os.path.isfile(os.path.join(folder, spec.lfn)):
                    path = os.path.join(folder, spec.lfn)
            if not path and spec.role != "log":
                continue  # a real stage-out already went elsewhere: nothing for Harvester to move
            files.append({"type": "log" if spec.role == "log" else "output", "path": path, "guid": spec.guid,
                          "fsize": spec.filesize, "chksum": spec.checksum.get("adler32", "")})
        return files

    def _publish_job_report(self, job: Job) -> None:
        if not job.workdir:
            return
        name = self.ctx.config.payload.jobreport
        try:  # written by the payload: read inside its work dir only, bounded (payload/untrusted.py)
            raw = read_inside(job.workdir, name, 1 << 22)
            if raw is None:
                return
            report = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("job %s: %s not copied for Harvester: %s", job.jobid, name, str(exc)[:200])
            return
        if isinstance(report, dict):
            for executor in report.get("executor", []) or []:
                if isinstance(executor, dict) and "logfileReport" in executor:
                    executor["logfileReport"] = {}
        write_json_atomic(os.path.join(self.ap, self.ctx.config.payload.jobreport), report)

    def _touch_heartbeat(self) -> None:
        write_json_atomic(os.path.join(self.ap, self.ctx.config.harvester.heartbeat_file),
                          {"time": int(time.time()), "pid": os.getpid()})

    def _heartbeat_loop(self) -> None:
        """worker_heartbeat.json every [Harvester] heartbeat_period s, whatever the job does (Harvester kills a
        worker whose file is older than its worker_heartbeat limit)."""
        period = self.ctx.config.harvester.heartbeat_period
        while True:
            try:
                self._touch_heartbeat()
            except OSError as exc:
                log.warning("cannot refresh the Harvester heartbeat file: %s", exc)
            if self._heartbeat_stop.wait(period):
                return

    def close(self) -> None:
        """Stop the heartbeat. Outside HPC mode main() tells Harvester the worker may go (kill_worker, with the
        exit code) on every exit; an HPC rank marks its own job dir here."""
        self._heartbeat_stop.set()
        self._heartbeat_thread.join(timeout=5)
        if not self.placement:
            return
        for name in (self.ctx.config.harvester.kill_worker_file, self.ctx.config.harvester.kill_worker_file + ".json"):
            for folder in {self.ap, self.ctx.paths.main}:
                with open(os.path.join(folder, name), "w", encoding="ascii") as handle:
                    handle.write("{}\n" if name.endswith(".json") else "")
