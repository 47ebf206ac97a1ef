"""Local channel: jobs from JSON files in a directory, or the built-in fake job; reports as JSON files.

`--job-source local` serves the built-in job: it creates its input file in the local storage dir, then runs a real
command that reads it and writes an output, so stage-in, payload, stage-out and log all do real work with no
server, network or file to prepare. `--job-source local:DIR` takes each `*.json` in DIR (one job definition, or
a Harvester-style `{PandaID: definition}` document), claiming a file by renaming it so two pilots sharing DIR
never run the same job. Every update becomes `reports/<PandaID>/update-NNN-<state>[.final].json` under the
pilot's main work dir, written under a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from typing import Any, Deque, Dict, List, Tuple

from ..errors import PilotError
from ..job import Job, parse_job, parse_jobs, split_definitions
from ..transfer.checksum import file_checksum
from .base import Channel, Reply

log = logging.getLogger(__name__)

FAKE_BASE_ID = 4242000000


def write_json_atomic(path: str, data: Any, mode: int = 0o644) -> None:
    temp = f"{path}.tmp{os.getpid()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):  # never leave a half-written temporary behind
            os.unlink(temp)
        raise


def fake_job_definition(number: int, storage_dir: str) -> Dict[str, str]:
    """The built-in job: its input is created in `storage_dir`; the payload upper-cases it and appends its sha1."""
    panda_id = str(FAKE_BASE_ID + number)
    lfn_in = f"fake.{panda_id}.input.txt"
    lfn_out = f"fake.{panda_id}.output.txt"
    lfn_log = f"fake.{panda_id}.job.log.tgz"
    os.makedirs(storage_dir, exist_ok=True)
    src = os.path.join(storage_dir, lfn_in)
    if not os.path.exists(src):
        with open(src, "w", encoding="ascii") as handle:
            for event in range(1, 1001):
                handle.write(f"event {event:04d} of fake job {panda_id}: x={event * 7 % 997} y={event * 13 % 991}\n")
    checksum = file_checksum(src)["adler32"]
    script = (f"set -e; test $(wc -l < {lfn_in}) -eq 1000; tr a-z A-Z < {lfn_in} > {lfn_out}; "
              f"sha1sum {lfn_in} >> {lfn_out}; echo \"fake job $PandaID processed 1000 events\"")
    return {
        "PandaID": panda_id, "jobDefinitionID": "1", "taskID": "4242", "attemptNr": "1", "jobName": "fake",
        "prodSourceLabel": "ptest", "transformation": "sh", "jobPars": f"-c '{script}'", "coreCount": "1",
        "inFiles": lfn_in, "scopeIn": "local", "realDatasetsIn": "local.fake.input", "GUID": "NULL",
        "fsize": str(os.path.getsize(src)), "checksum": f"ad:{checksum}", "ddmEndPointIn": "LOCAL",
        "prodDBlockToken": "NULL",
        "outFiles": f"{lfn_out},{lfn_log}", "scopeOut": "local", "scopeLog": "local",
        "realDatasets": "local.fake.output,local.fake.log", "ddmEndPointOut": "LOCAL,LOCAL",
        "destinationDblock": "local.fake.output,local.fake.log", "logFile": lfn_log,
        "logGUID": f"00000000-0000-4000-8000-{int(panda_id):012d}", "maxCpuCount": "600", "minRamCount": "100",
    }


class LocalChannel(Channel):
    name = "local"

    def __init__(self, ctx, job_dir: str = ""):
        self.ctx = ctx
        self.job_dir = job_dir
        self.report_root = os.path.join(ctx.paths.main, "reports")
        self.max_field = ctx.config.file.max_field_length
        self._served = 0
        self._pending: Deque[Tuple[str, Any]] = deque()

    # --- jobs ------------------------------------------------------------------------------------------------
    def fetch(self, max_jobs: int = 1) -> List[Job]:
        jobs: List[Job] = []
        while len(jobs) < max_jobs:
            if not self.job_dir:
                self._served += 1
                jobs.append(parse_job(fake_job_definition(self._served, self.ctx.paths.input_dir), self.max_field))
                continue
            while not self._pending:
                if not self._claim_next_file():
                    return jobs
            source, raw = self._pending.popleft()
            jobs += parse_jobs([raw], self.max_field, f"job file {source}")  # id-less ones are skipped
        return jobs

    def _claim_next_file(self) -> bool:
        try:
            names = sorted(name for name in os.listdir(self.job_dir) if name.endswith(".json"))
        except OSError as exc:
            raise PilotError(1008, f"cannot list job directory {self.job_dir}: {exc}") from None
        for name in names:
            path = os.path.join(self.job_dir, name)
            claimed = f"{path}.taken.{os.getpid()}"
            try:
                os.rename(path, claimed)  # atomic: only one pilot wins a file
            except OSError:
                continue
            self._pending.extend(self._read_jobs(claimed))
            return True
        return False

    def _read_jobs(self, path: str) -> List[Tuple[str, Any]]:
        try:
            with open(path, "rb") as handle:
                document = json.loads(handle.read().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.error("job file %s is not readable UTF-8 JSON (%s); skipped", path, exc)
            return []
        return [(path, definition) for definition in split_definitions(document)]

    # --- reports ---------------------------------------------------------------------------------------------
    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        folder = os.path.join(self.report_root, job.jobid)
        os.makedirs(folder, exist_ok=True)
        suffix = ".final" if final else ""
        path = os.path.join(folder, f"update-{job.updates_sent + 1:03d}-{data['state']}{suffix}.json")
        write_json_atomic(path, data)
        return Reply(ok=True, where=path)
