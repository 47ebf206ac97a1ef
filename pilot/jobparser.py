"""The job-definition parser: a PanDA job definition parsed once, checked once, into a Job.

The server sends a flat dict of strings with comma-separated lists aligned by position and "NULL" for empty
(spec panda-server.md A.6, pilot3-reference §3.4). Everything that can be wrong with it is found here, before a
directory is made or a file is touched, and becomes a (code, diag) on the job instead of an exception later.
This is the only module that reads the raw definition: everything else reads the Job's parsed fields.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Tuple

from .errors import PilotError
from .ids import new_uuid
from .job import FileSpec, Job

log = logging.getLogger(__name__)

NULL = "NULL"
MAX_LFN_LENGTH = 255
MAX_FILES = 100000
# What Rucio accepts in an LFN, minus anything a shell or a path could misread; never starts with a dot.
_LFN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+\-]*\Z")
_SCOPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]{0,99}\Z")
_HEX8 = re.compile(r"[0-9a-fA-F]{1,8}\Z")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}\Z")

# Aligned per-file keys: (server key, FileSpec attribute).
_INPUT_KEYS = (("realDatasetsIn", "dataset"), ("GUID", "guid"), ("fsize", "filesize"), ("checksum", "checksum"),
               ("scopeIn", "scope"), ("prodDBlockToken", "storage_token"), ("ddmEndPointIn", "ddmendpoint"),
               ("dispatchDblock", "dispatch_dblock"), ("prodDBlocks", "prod_dblock"))
_OUTPUT_KEYS = (("realDatasets", "dataset"), ("ddmEndPointOut", "ddmendpoint"),
                ("destinationDblock", "destination_dblock"), ("destinationDBlockToken", "storage_token"))


class _Reader:
    """Typed access to one raw job definition; every problem is recorded, the first one wins."""

    def __init__(self, raw: Dict[str, Any], max_field: int):
        self.raw = raw
        self.max_field = max_field
        self.problems: List[Tuple[int, str]] = []

    def problem(self, code: int, diag: str) -> None:
        self.problems.append((code, diag))

    def text(self, key: str, default: str = "") -> str:
        value = self.raw.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.problem(1302, f"job definition field {key} has type {type(value).__name__}, expected a string")
            return default
        try:
            value = str(value)
        except ValueError:  # an int beyond Python's 4300-digit conversion limit
            self.problem(1302, f"job definition field {key} is a number too large to convert")
            return default
        if len(value) > self.max_field:
            self.problem(1302, f"job definition field {key} is {len(value)} characters long (limit {self.max_field})")
            return default
        if "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            self.problem(1302, f"job definition field {key} contains NUL or undecodable characters")
            return default
        return default if value == NULL else value

    def integer(self, key: str, default: int = 0) -> int:
        value = self.text(key, "")
        if value == "":
            return default
        try:
            return int(float(value)) if "." in value else int(value)
        except (ValueError, OverflowError):  # OverflowError: "9...9.0" is a float infinity
            self.problem(1302, f"job definition field {key}={value[:40]!r} is not a number")
            return default

    def items(self, key: str) -> List[str]:
        value = self.text(key, "")
        return [] if value == "" else [NULL if item.strip() == NULL else item.strip() for item in value.split(",")]


def _parse_checksum(value: str, lfn: str, reader: _Reader) -> Dict[str, str]:
    if value in ("", NULL):
        return {}
    kind, sep, digest = value.partition(":")
    if not sep:
        # bare value: Pilot 3 treats 8 hex digits as adler32
        kind, digest = "ad", value
    if kind == "ad" and _HEX8.match(digest):
        return {"adler32": digest.lower().zfill(8)}
    if kind in ("md", "md5") and _HEX32.match(digest):
        return {"md5": digest.lower()}
    if kind not in ("ad", "md", "md5"):
        reader.problem(1314, f"unknown checksum type {kind[:20]!r} for {lfn}")
    else:
        reader.problem(1302, f"malformed {kind} checksum {digest[:40]!r} for {lfn}")
    return {}


def check_lfn(lfn: str) -> Optional[Tuple[int, str]]:
    """(code, diag) if `lfn` is not a safe plain file name, else None."""
    shown = lfn[:60].encode("unicode_escape").decode("ascii")
    if len(lfn) > MAX_LFN_LENGTH:
        return 1190, f"LFN too long ({len(lfn)} > {MAX_LFN_LENGTH} characters): {shown}..."
    if not _LFN_RE.match(lfn):
        return 1371, f"file name '{shown}' contains illegal characters (allowed: letters, digits, . _ + -)"
    return None


def _aligned(reader: _Reader, key: str, count: int, allow_short: int = 0) -> List[str]:
    items = reader.items(key)
    if not items:
        return [""] * count
    if count - allow_short <= len(items) < count:
        items = items + [""] * (count - len(items))
    if len(items) != count:
        reader.problem(1312, f"job definition field {key} has {len(items)} entries, expected {count}")
        return [""] * count
    return ["" if item == NULL else item for item in items]


def _make_files(reader: _Reader, lfns: List[str], role: str, keys, scopes: List[str]) -> List[FileSpec]:
    columns = {attr: _aligned(reader, key, len(lfns)) for key, attr in keys}
    files = []
    for index, lfn in enumerate(lfns):
        spec = FileSpec(lfn=lfn, role=role, scope=scopes[index] if index < len(scopes) else "")
        for attr, values in columns.items():
            value = values[index]
            if attr == "filesize":
                try:
                    spec.filesize = int(value) if value else 0
                    if spec.filesize < 0:
                        raise ValueError
                except ValueError:
                    reader.problem(1302, f"bad file size {value[:20]!r} for {lfn}")
            elif attr == "checksum":
                spec.checksum = _parse_checksum(value, lfn, reader)
            else:
                setattr(spec, attr, value)
        files.append(spec)
    return files


def _check_names(reader: _Reader, files: List[FileSpec]) -> None:
    for spec in files:
        bad = check_lfn(spec.lfn)
        if bad:
            reader.problem(*bad)
        if spec.scope and not _SCOPE_RE.match(spec.scope):
            reader.problem(1371, f"scope {spec.scope[:60]!r} of {spec.lfn[:60]} contains illegal characters")


def job_id_of(raw: Any) -> str:
    """The PandaID as a string of digits, or raise PilotError(1008): without an id nothing can be reported."""
    if not isinstance(raw, dict):
        raise PilotError(1008, f"job definition is a {type(raw).__name__}, not a dictionary")
    value = raw.get("PandaID", raw.get("jobid"))
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PilotError(1008, "job definition has no PandaID")
    try:
        text = str(value).strip()
    except ValueError:  # an int beyond Python's 4300-digit conversion limit
        raise PilotError(1008, "job definition has an invalid PandaID (too many digits)") from None
    # isascii: str.isdigit() also accepts digits such as '²' that int() rejects
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) <= 0:
        raise PilotError(1008, f"job definition has an invalid PandaID {text[:30]!r}")
    return text


def split_definitions(document: Any) -> List[Any]:
    """The job definitions in a JSON document: one definition, or Harvester's {"<PandaID>": {definition}}."""
    if isinstance(document, dict) and "PandaID" not in document and document and all(
            isinstance(value, dict) for value in document.values()):
        return [dict(value, PandaID=value.get("PandaID", key)) for key, value in document.items()]
    return [document]


def parse_jobs(raws, max_field: int, source: str) -> List[Job]:
    """Jobs from definitions; one without a usable PandaID cannot even be reported, so it is logged and skipped."""
    jobs = []
    for raw in raws:
        try:
            job_id_of(raw)
        except PilotError as exc:
            log.error("%s: %s; skipped", source, exc.diag)
            continue
        jobs.append(parse_job(raw, max_field))
    return jobs


def parse_job(raw: Dict[str, Any], max_field: int = 1048576) -> Job:
    """Build a Job from a job definition dict.

    Raises PilotError only when the definition has no usable PandaID. Any other problem is recorded on the
    returned job (first problem first), so the job can still be reported as failed with that code -- a bug in
    the parser included (1319): the job has been claimed, so it must be reported, never dropped.
    """
    jobid = job_id_of(raw)
    try:
        return _parse_job(jobid, raw, max_field)
    except Exception as exc:
        from .threads import internal_diag

        log.error("job %s: definition could not be parsed", jobid, exc_info=True)
        job = Job(jobid=jobid)
        job.fail(1319, internal_diag("job parser", exc))
        return job


def _parse_job(jobid: str, raw: Dict[str, Any], max_field: int) -> Job:
    reader = _Reader(raw, max_field)
    job = Job(jobid=jobid)
    job.taskid = reader.text("taskID")
    job.transformation = reader.text("transformation")
    job.jobpars = reader.text("jobPars")
    job.corecount = max(1, reader.integer("coreCount", 1))
    job.attemptnr = reader.integer("attemptNr", 0)
    job.prodsourcelabel = reader.text("prodSourceLabel")
    job.swrelease = reader.text("swRelease")
    job.homepackage = reader.text("homepackage")
    job.cmtconfig = reader.text("cmtConfig")
    job.container_name = reader.text("container_name")
    job.maxcpucount = reader.integer("maxCpuCount", 0)
    job.maxwalltime = reader.integer("maxWalltime", 0)
    job.minramcount = reader.integer("minRamCount", 0)
    job.maxdiskcount = reader.integer("maxDiskCount", 0)
    job.secrets = reader.text("secrets")
    job.pilotsecrets = reader.text("pilotSecrets")
    job.resource_type = reader.text("resource_type")
    looping = raw.get("loopingCheck")
    job.looping_check = not (looping is False or str(looping).strip().lower() == "false")
    job.jobset_id = reader.text("jobsetID")
    job.alt_stageout = reader.text("altStageOut").lower()
    job.access_mode = _access_mode(reader.text("transferType"), job.jobpars)
    job.es_kind = _es_kind(reader)
    if not job.transformation:
        reader.problem(1008, "job definition has no transformation")

    # inputs: one FileSpec per unique non-NULL inFiles entry (the server drops duplicates too)
    in_lfns = reader.items("inFiles")
    if len(in_lfns) > MAX_FILES:
        reader.problem(1302, f"job definition lists {len(in_lfns)} input files (limit {MAX_FILES})")
        in_lfns = []
    inputs = _make_files(reader, ["" if lfn == NULL else lfn for lfn in in_lfns], "input", _INPUT_KEYS,
                         [])
    seen = set()
    for spec in inputs:
        if spec.lfn and spec.lfn not in seen:
            seen.add(spec.lfn)
            job.inputs.append(spec)

    # outputs: outFiles lists the outputs and then the log; scopeOut may lack the log's entry
    out_lfns = ["" if lfn == NULL else lfn for lfn in reader.items("outFiles")]
    if len(out_lfns) > MAX_FILES:
        reader.problem(1302, f"job definition lists {len(out_lfns)} output files (limit {MAX_FILES})")
        out_lfns = []
    log_lfn = reader.text("logFile")
    scopes = _aligned(reader, "scopeOut", len(out_lfns), allow_short=1 if log_lfn in out_lfns else 0)
    outputs = _make_files(reader, out_lfns, "output", _OUTPUT_KEYS, scopes)
    names = set()
    for spec in outputs:
        if not spec.lfn:
            continue
        if spec.lfn in names:
            reader.problem(1008, f"output file {spec.lfn[:60]} is listed twice")
            continue
        names.add(spec.lfn)
        if spec.lfn == log_lfn:
            spec.role = "log"
            job.logfile = spec
        else:
            spec.guid = spec.guid or new_uuid()  # the server sends no output GUIDs
            job.outputs.append(spec)
    if log_lfn and job.logfile is None:
        job.logfile = FileSpec(lfn=log_lfn, role="log")
    if job.logfile is not None:
        job.logfile.scope = reader.text("scopeLog") or job.logfile.scope
        job.logfile.guid = reader.text("logGUID") or job.logfile.guid or new_uuid()
        job.logfile.role = "log"
    _check_names(reader, job.inputs + job.outputs + ([job.logfile] if job.logfile else []))
    in_names = {spec.lfn for spec in job.inputs}
    for spec in job.outputs + ([job.logfile] if job.logfile else []):
        if spec.lfn in in_names:
            reader.problem(1221, f"output file {spec.lfn[:60]} has the name of an input file")
    for code, diag in reader.problems:
        job.fail(code, diag)
    return job


def _access_mode(transfer_type: str, jobpars: str) -> str:
    """Pilot 3: --accessmode=direct|copy or --useLocalIO in jobPars win over transferType=direct."""
    if "--accessmode=direct" in jobpars:
        return "direct"
    if "--accessmode=copy" in jobpars or "--useLocalIO" in jobpars:
        return "copy"
    return "direct" if transfer_type.lower() == "direct" else ""


def _es_kind(reader: "_Reader") -> str:
    """Which event-service flavour a job definition asks for ("" for a plain job). Pilot 3's flags:
    eventService (plus isHPO / fine-grained processing) and eventServiceMerge; the server sends them as strings."""
    def flag(key: str) -> bool:
        value = reader.raw.get(key)
        return value is True or (isinstance(value, (str, int)) and str(value).lower() in ("true", "1", "yes"))

    if flag("eventServiceMerge"):
        return "esmerge"
    if flag("isHPO"):
        return "hpo"
    if flag("eventService"):
        if "--fineGrainedProc" in reader.text("jobPars") or flag("isFineGrained"):
            return "finegrained"
        return "jumbo" if flag("isJumbo") else "eventservice"
    return ""
