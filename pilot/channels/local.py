"""Local channel: jobs from JSON files in a directory, or the built-in fake job; reports as JSON files.

`--job-source local` serves the built-in job: it creates its input file in the local storage dir, then runs a real
command that reads it and writes an output, so stage-in, payload, stage-out and log all do real work with no
server, network or file to prepare. `--job-source local:DIR` takes each `*.json` in DIR (one job definition, or
a Harvester-style `{PandaID: definition}` document), claiming a file by renaming it so two pilots sharing DIR
never run the same job. A file holding several jobs is split: the first runs, the others are written back into
DIR one per file, for this pilot's next request or another pilot. Non-regular files (a FIFO would block the
reader) are skipped, a PandaID already taken from another file (by any pilot: DIR/.claimed/<PandaID>) is refused, and a file nested too deeply to parse
still gets the ids it names reported failed (1302). Every update becomes `reports/<PandaID>/update-NNN-<state>[.final].json` under the
pilot's main work dir, written under a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections import deque
from typing import Any, Deque, Dict, List, Set, Tuple

from ..errors import PilotError
from .. import recovery
from ..files import read_regular, write_json_atomic
from ..job import Job, JobState
from ..jobparser import job_id_of, parse_job, parse_jobs, split_definitions
from ..jobwire import update_dict
from ..transfer.checksum import file_checksum
from .base import Channel, Reply

log = logging.getLogger(__name__)

FAKE_BASE_ID = 4242000000


CLAIMED_DIR = ".claimed"  # in local:DIR, one empty-ish file per PandaID ever taken from DIR
MAX_JOB_FILE = 256 << 20  # a job file larger than this is not read (a definition field is at most 1 MB)
_PANDAID = re.compile(rb'"PandaID"\s*:\s*"?(\d{1,20})')


def salvage_jobs(data: bytes, path: str) -> List[Job]:
    """The jobs a file too deeply nested to parse names by PandaID, each failed with 1302 so it is reported."""
    found = _PANDAID.findall(data[: 1 << 20])
    jobs = []
    for raw_id in sorted(set(found), key=found.index):
        try:
            jobid = job_id_of({"PandaID": raw_id.decode("ascii")})
        except PilotError:
            continue
        job = Job(jobid=jobid)
        job.fail(1302, f"job file {os.path.basename(path)} is nested too deeply to be parsed")
        jobs.append(job)
    log.error("job file %s is nested too deeply to be parsed; job(s) %s reported failed", path,
              ", ".join(job.jobid for job in jobs) or "(none named)")
    return jobs


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

    @classmethod
    def open(cls, ctx, address: str = "", placement=None) -> "LocalChannel":
        return cls(ctx, job_dir=address)

    def __init__(self, ctx, job_dir: str = ""):
        self.ctx = ctx
        self.job_dir = job_dir
        if job_dir and not os.path.isdir(job_dir):  # a typo in the command line, not a transient failure
            raise PilotError(1103, f"job directory {job_dir} of --job-source local:DIR does not exist")
        self.report_root = os.path.join(ctx.paths.main, "reports")
        self.max_field = ctx.config.file.max_field_length
        self._served = 0
        self._updates: Dict[str, int] = {}  # updates written per job: the sequence number in the file name
        self._pending: Deque[Tuple[str, Any]] = deque()
        self._seen: Dict[str, str] = {}  # PandaID -> job file it came from: a second file with it is refused
        self._skipped: Set[str] = set()  # non-regular *.json names already reported
        self._claim_records: Dict[str, str] = {}  # claimed file -> its owner record
        self._owner_records: Dict[str, str] = {}  # PandaID -> DIR/.claimed/<claimed file>.owner, until final
        self._recovered = False

    # --- jobs ------------------------------------------------------------------------------------------------
    def fetch(self, max_jobs: int = 1) -> List[Job]:
        jobs: List[Job] = []
        while len(jobs) < max_jobs:
            if not self.job_dir:
                self._served += 1
                jobs.append(parse_job(fake_job_definition(self._served, self.ctx.paths.input_dir), self.max_field))
                continue
            if not self._recovered:
                self._recovered = True
                self.recover()
            while not self._pending:
                if not self._claim_next_file():
                    return jobs
            source, raw = self._pending.popleft()
            if isinstance(raw, Job):  # a job salvaged from an unparsable file: reported failed
                found = [raw]
            else:
                found = parse_jobs([raw], self.max_field, f"job file {source}")  # id-less ones are skipped
            for job in found:
                if self._first_claim(job.jobid, source):
                    jobs.append(job)
                    record = self._claim_records.get(source)
                    if record:
                        self._owner_records[job.jobid] = record
        return jobs

    def _first_claim(self, jobid: str, source: str) -> bool:
        """Whether no job file seen by any pilot sharing the dir had this PandaID (a marker per id in
        DIR/.claimed, made with O_EXCL): one id, one run, one final report."""
        first = self._seen.setdefault(jobid, source)
        if first == source:
            folder = os.path.join(self.job_dir, CLAIMED_DIR)
            try:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(os.path.join(folder, jobid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(f"{source}\n")
                return True
            except FileExistsError:
                first = "an earlier job file (see {})".format(os.path.join(folder, jobid))
            except OSError as exc:  # a read-only job dir: duplicates are caught within this pilot only
                log.warning("cannot mark job %s as claimed in %s: %s", jobid, folder, exc)
                return True
        log.error("job %s in %s was already taken from %s: duplicate PandaID refused", jobid, source, first)
        return False

    def _claim_next_file(self) -> bool:
        try:
            names = sorted(name for name in os.listdir(self.job_dir) if name.endswith(".json"))
        except OSError as exc:
            raise PilotError(1008, f"cannot list job directory {self.job_dir}: {exc}") from None
        for name in names:
            path = os.path.join(self.job_dir, name)
            try:
                mode = os.stat(path).st_mode  # follows a symlink: a site may link its job files here
            except OSError:
                continue  # taken by another pilot meanwhile
            if not stat.S_ISREG(mode):  # a FIFO would block the pilot, a device or dir is no job file
                if name not in self._skipped:
                    self._skipped.add(name)
                    log.error("%s is not a regular file; skipped", path)
                continue
            claimed = f"{path}.taken.{os.getpid()}"
            try:
                os.rename(path, claimed)  # atomic: only one pilot wins a file
            except OSError:
                continue
            record = recovery.record_claim(os.path.join(self.job_dir, CLAIMED_DIR), os.path.basename(claimed),
                                           self.ctx.paths.main)
            if record:
                self._claim_records[claimed] = record
            self._pending.extend(self._read_jobs(claimed, name))
            return True
        return False

    def recover(self) -> int:
        """Jobs claimed from DIR by a pilot that died (SIGKILL) before their final report: its payloads are
        swept, and each job is reported failed with 1317 where that pilot reported it; returns how many."""
        reported = 0
        for orphan in recovery.orphaned_claims(os.path.join(self.job_dir, CLAIMED_DIR)):
            owner_main = str(orphan.get("main") or "")
            if owner_main and os.path.isdir(owner_main):
                recovery.sweep(owner_main)
            report_root = os.path.join(owner_main, "reports") if owner_main and os.path.isdir(owner_main) \
                else self.report_root
            path = os.path.join(self.job_dir, orphan["claimed_name"])
            for _source, raw in self._read_jobs_only(path):
                try:
                    job = parse_job(raw, self.max_field)
                except PilotError:
                    continue
                if recovery.has_final_report(os.path.dirname(report_root), job.jobid) or \
                        not self._first_taken_from(job.jobid, path):
                    continue
                job.fail(recovery.LOST_HEARTBEAT, f"pilot {orphan.get('pid')} that ran the job on "
                                                  f"{orphan.get('host')} died without reporting it (lost heartbeat)")
                job.state = JobState.FAILED
                data = update_dict(job, "failed", self.ctx.static_update_fields(), True)
                folder = os.path.join(report_root, job.jobid)
                try:
                    os.makedirs(folder, exist_ok=True)
                    count = len([name for name in os.listdir(folder) if name.startswith("update-")])
                    write_json_atomic(os.path.join(folder, f"update-{count + 1:03d}-failed.final.json"), data)
                except OSError as exc:
                    log.error("job %s of dead pilot %s: final report not written: %s", job.jobid,
                              orphan.get("pid"), exc)
                    continue
                reported += 1
                log.warning("job %s was claimed by pilot %s, which died without a final report: reported failed "
                            "with %d", job.jobid, orphan.get("pid"), recovery.LOST_HEARTBEAT)
            recovery.forget(orphan["record_path"])
        return reported

    def _first_taken_from(self, jobid: str, path: str) -> bool:
        """Whether DIR/.claimed/<PandaID> names `path`: a duplicate id refused from it needs no report."""
        try:
            with open(os.path.join(self.job_dir, CLAIMED_DIR, jobid), encoding="utf-8", errors="replace") as handle:
                return os.path.basename(handle.read(4096).strip()) == os.path.basename(path)
        except OSError:
            return True  # no marker (a read-only job dir): the dead pilot may well have run it

    def close(self) -> None:
        """A pilot that ends normally has reported every job it took: nothing for a later pilot to recover."""
        for record in list(self._claim_records.values()):
            recovery.forget(record)
        self._claim_records.clear()
        self._owner_records.clear()

    def _read_jobs_only(self, path: str) -> List[Tuple[str, Any]]:
        """The definitions in a claimed file, without putting any back (recovery)."""
        try:
            document = json.loads(read_regular(path, MAX_JOB_FILE).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            log.error("claimed job file %s of a dead pilot is not readable (%s)", path, str(exc)[:200])
            return []
        return [(path, definition) for definition in split_definitions(document)]

    def _read_jobs(self, path: str, name: str) -> List[Tuple[str, Any]]:
        try:
            data = read_regular(path, MAX_JOB_FILE)
            document = json.loads(data.decode("utf-8"))
        except RecursionError:  # nested deeper than the parser goes: the ids it names are still reported
            return [(path, job) for job in salvage_jobs(data, path)]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.error("job file %s is not readable UTF-8 JSON (%s); skipped", path, str(exc)[:200])
            return []
        definitions = split_definitions(document)
        if len(definitions) > 1:  # one job per pilot run at most: the others go back for the next pilot
            definitions = definitions[:1] + self._put_back(name, definitions[1:])
        return [(path, definition) for definition in definitions]

    def _put_back(self, name: str, definitions: List[Any]) -> List[Any]:
        """Write each further job of a multi-job file as its own file in the job dir; those not written stay."""
        stem = name[: -len(".json")]
        kept = []
        for index, definition in enumerate(definitions, 1):
            target = os.path.join(self.job_dir, f"{stem}.{os.getpid()}-{index}.json")
            try:
                write_json_atomic(target, definition)
            except OSError as exc:
                log.error("cannot put job %d of %s back into %s (%s): this pilot keeps it", index + 1, name,
                          self.job_dir, exc)
                kept.append(definition)
        if len(kept) < len(definitions):
            log.info("job file %s holds %d jobs: %d put back into %s as separate files", name, len(definitions) + 1,
                     len(definitions) - len(kept), self.job_dir)
        return kept

    # --- reports ---------------------------------------------------------------------------------------------
    def update(self, job: Job, data: Dict[str, Any], final: bool) -> Reply:
        folder = os.path.join(self.report_root, job.jobid)
        os.makedirs(folder, exist_ok=True)
        suffix = ".final" if final else ""
        number = self._updates.get(job.jobid, 0) + 1
        self._updates[job.jobid] = number
        path = os.path.join(folder, f"update-{number:03d}-{data['state']}{suffix}.json")
        write_json_atomic(path, data)
        if final:  # reported: a later pilot has nothing to recover for this job
            recovery.forget(self._owner_records.pop(job.jobid, None))
        return Reply(ok=True, where=path)
