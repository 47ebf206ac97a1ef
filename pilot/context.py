"""The one object every stage receives: settings, queue data, paths, the clock, and the abort signal.

Cross-thread signalling goes through here and nowhere else (DESIGN principle 1): `abort` is a Trigger every
stage checks, and `on_abort` registers a callback (kill a payload, wake a waiting thread) that runs once when
the pilot is told to stop. Nothing in it changes after start-up except through those methods.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import field
from typing import Any, Callable, Dict, Optional

from . import __version__
from .config import Config
from .experiments.base import Experiment
from .errors import signal_code
from .queuedata import QueueData
from .records import Record, record
from .settings import Settings
from .trigger import Trigger

log = logging.getLogger(__name__)


@record
class Paths(Record):
    source: str  # where the pilot was started
    main: str  # the pilot's main work dir (pilotlog.txt, reports, timing)
    input_dir: str  # local storage for the mv copytool's stage-in
    output_dir: str  # local storage for the mv copytool's stage-out


def _batch_id() -> str:
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "CONDOR_JOBID"):
        if os.environ.get(var):
            return os.environ[var]
    return ""


@record
class Context(Record):
    config: Config
    settings: Settings  # the command line, typed (built once by main)
    queuedata: QueueData
    paths: Paths
    started: float = field(default_factory=time.time)  # wall clock at pilot start
    started_mono: float = field(default_factory=time.monotonic)
    lifetime: float = 324000.0
    abort: Trigger = field(default_factory=lambda: Trigger("abort"))
    drain: Trigger = field(default_factory=lambda: Trigger("drain"))  # finish running jobs, take no new ones
    signum: int = 0
    # storage endpoints (--storagedata-url), by name
    storage: Dict[str, Any] = field(default_factory=dict)
    # the experiment plug-in of --pilot-user (pilot/experiments/)
    experiment: Experiment = field(default_factory=Experiment)
    # from the server at start-up (metaconfig/get_resource_types): {name: {maxrampercore, ...}}
    resource_types: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    # --- time ---------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started_mono

    def remaining(self) -> float:
        return self.lifetime - self.elapsed()

    # --- abort ---------------------------------------------------------------------------------------------
    @property
    def abort_code(self) -> int:
        return self.abort.code

    @property
    def abort_reason(self) -> str:
        return self.abort.reason

    def request_abort(self, code: int, reason: str) -> bool:
        """Tell every stage to stop; the first request wins. Returns False if an abort was already under way."""
        return self.abort.fire(code, reason)

    def abort_by_signal(self, signum: int, name: str) -> bool:
        if self.abort.is_set():
            return False
        self.signum = signum
        code = signal_code(signum)
        if code == 1201 and self.settings.pod:  # Pilot 3: a SIGTERM in a Kubernetes pod is a preemption
            code = 1379
        return self.abort.fire(code, f"pilot received {name}")

    def delivery_deadline(self) -> float:
        """time.monotonic() by which pending reports must be delivered: the abort grace, else the lifetime."""
        if self.abort.is_set():
            return self.abort.fired_at + self.config.pilot.abort_grace - 2.0
        return self.started_mono + self.lifetime

    def stageout_deadline(self, share: float = 2 / 3) -> float:
        """time.monotonic() by which stage-out stops after an abort: `share` of the abort grace (the log tarball
        stops reading at a third, transfers at two thirds), so the rest is left for the final report."""
        if self.abort.is_set():
            return self.abort.fired_at + self.config.pilot.abort_grace * share
        return float("inf")

    def log_tarball_deadline(self) -> float:
        return self.stageout_deadline(1 / 3)

    def on_abort(self, callback: Callable[[], None]):
        """Context manager: run `callback` if the pilot aborts while inside the block."""
        return self.abort.on_fire(callback)

    # --- what every server update carries --------------------------------------------------------------------
    def static_update_fields(self) -> Dict[str, Optional[str]]:
        version_tag = self.settings.version_tag or "PR"
        return {
            "siteName": self.queuedata.resource,
            "node": os.uname().nodename,  # = socket.gethostname() on Linux, without importing socket (~3 ms)
            "pilotID": f"{os.environ.get('GTAG', '')}|{os.environ.get('PILOT_BATCH_TYPE', '')}|{version_tag}"
                       f"|pilot-{__version__}",
            "batchID": _batch_id(),
            "schedulerID": os.environ.get("PANDA_JSID", ""),
        }
