"""Job and FileSpec: a PanDA job as the pilot works with it, owned by one stage at a time.

The definition is turned into a Job by the parser (pilot/jobparser.py), which is the only code that reads the
raw definition; what the server is told is built by the wire format (pilot/jobwire.py).
"""

from __future__ import annotations

import enum
import queue
from dataclasses import field
from typing import Any, Dict, List, Optional, Tuple

from .errors import format_diag
from .records import Record, record
from .trigger import Trigger


class JobState(str, enum.Enum):
    """Internal pilot states (Pilot 3 names)."""

    STARTUP = "startup"
    STAGEIN = "stagein"
    RUNNING = "running"
    STAGEOUT = "stageout"
    FINISHED = "finished"
    FAILED = "failed"
    HOLDING = "holding"


@record
class FileSpec(Record):
    lfn: str
    role: str  # input | output | log
    scope: str = ""
    dataset: str = ""
    guid: str = ""
    filesize: int = 0
    checksum: Dict[str, str] = field(default_factory=dict)  # {"adler32": "0a1b2c3d"} or {"md5": ...}
    ddmendpoint: str = ""
    ddmendpoint_alt: str = ""  # stage-out: the storage tried when `ddmendpoint` fails (alternative stage-out)
    storage_token: str = ""
    dispatch_dblock: str = ""
    prod_dblock: str = ""
    destination_dblock: str = ""
    # run-time results, filled by the copytools
    status: str = ""  # "" | transferred | failed | no_transfer | remote_io (direct access: read in place)
    status_code: int = 0
    diag: str = ""
    surl: str = ""
    turl: str = ""
    copytool: str = ""
    transfer_seconds: float = 0.0


@record
class Job(Record):
    jobid: str
    taskid: str = ""
    transformation: str = ""
    jobpars: str = ""
    corecount: int = 1
    attemptnr: int = 0
    prodsourcelabel: str = ""
    swrelease: str = ""
    homepackage: str = ""
    cmtconfig: str = ""
    container_name: str = ""
    container: str = ""  # "runtime:image" when the payload runs in a container
    maxcpucount: int = 0
    maxwalltime: int = 0
    minramcount: int = 0
    maxdiskcount: int = 0
    inputs: List[FileSpec] = field(default_factory=list)
    outputs: List[FileSpec] = field(default_factory=list)
    logfile: Optional[FileSpec] = None
    secrets: str = field(default="", repr=False)
    pilotsecrets: str = field(default="", repr=False)
    resource_type: str = ""  # the server's resource type of the job (SCORE, MCORE...): its memory per core
    looping_check: bool = True  # loopingCheck=false in the definition switches the looping check off
    alt_stageout: str = ""  # altStageOut: on | off | force | "" (queue decides)
    access_mode: str = ""  # direct | copy | "" from transferType / --accessmode= / --useLocalIO in jobPars
    es_kind: str = ""  # "" | eventservice | esmerge | jumbo | hpo | finegrained (event-service job kinds)
    jobset_id: str = ""
    sandbox: str = ""  # URL or path of a tarball to unpack in the work dir before stage-in (PiCaS jobs)
    sandbox_fields: Dict[str, Any] = field(default_factory=dict, repr=False)  # what the sandbox may substitute
    environment: Dict[str, str] = field(default_factory=dict)  # extra payload variables (the channel, the sandbox)
    # run-time state, owned by whichever stage holds the job
    state: JobState = JobState.STARTUP
    errors: List[Tuple[int, str]] = field(default_factory=list)
    final_report: str = ""  # where the channel put the final update (file path or URL)
    kill: Trigger = field(default_factory=lambda: Trigger("job kill"), repr=False, compare=False)
    # server commands that change the job, queued by the reporter for the owning stage (apply_commands)
    commands: "queue.SimpleQueue[str]" = field(default_factory=queue.SimpleQueue, repr=False, compare=False)
    keep_workdir: bool = False  # server said nocleanup
    memory: Dict[str, int] = field(default_factory=dict)  # maxRSS, avgPSS, totRBYTES... (updateJob names)
    metrics: Dict[str, Any] = field(default_factory=dict)  # jobMetrics key=value pairs
    workdir: str = ""
    stageout_mode: str = "all"  # all | log
    trans_exit_code: Optional[int] = None
    exe_error_code: int = 0
    exe_error_diag: str = ""
    pid: int = 0
    cpu_seconds: float = 0.0  # CPU time of the payload tree: live while it runs (monitor), then the final figure
    mean_cores: float = 0.0  # cores kept busy on average (meanCoreCount)
    nevents: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    timing: Dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def apply_commands(self) -> None:
        """Apply the server commands queued for this job (called by the stage that owns it)."""
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if command == "nocleanup":
                self.keep_workdir = True

    def fail(self, code: int, diag: str = "") -> None:
        """Record a failure; the first one recorded is the one reported (as in Pilot 3)."""
        if all(existing != code for existing, _ in self.errors):
            self.errors.append((code, format_diag(code, diag)))

    @property
    def error_code(self) -> int:
        return self.errors[0][0] if self.errors else 0

    @property
    def error_diag(self) -> str:
        return self.errors[0][1] if self.errors else ""

    @property
    def staged_files(self) -> List[FileSpec]:
        """Outputs (unless only the log goes out) and the log, in stage-out order."""
        files = list(self.outputs) if self.stageout_mode == "all" else []
        return files + ([self.logfile] if self.logfile else [])


# The parser and the wire format used to live here; their names stay importable from pilot.job (lazily, as
# they import this module).
_MOVED = {
    "jobparser": ("NULL", "MAX_LFN_LENGTH", "MAX_FILES", "check_lfn", "job_id_of", "parse_job", "parse_jobs",
                  "split_definitions"),
    "jobwire": ("iso_now", "file_info", "update_dict"),
}


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _MOVED.items():
        if name in names:
            return getattr(importlib.import_module(f"{__package__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
