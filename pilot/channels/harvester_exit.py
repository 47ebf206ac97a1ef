"""Harvester learns how the pilot ended, on EVERY exit: kill_worker(.json) and worker_attributes.json.

Pilot 3 writes kill_worker only at the end of a normal run, so a pilot that fails before it has a job (queue data
missing, bad flags, a missing dependency) leaves Harvester waiting for its worker_heartbeat limit. Here main()
writes, in Harvester mode, whatever the exit:
  worker_attributes.json   the pilot's shell exit code and pilot error code/diag (`pilotExitCode`,
                           `pilotErrorCode`, `pilotErrorDiag`) merged into the last job state written there;
                           with no job state yet, a failed exit also says jobStatus "failed", so a PUSH job
                           handed over but never started is failed with the pilot's reason
  kill_worker, kill_worker.json   (Pilot 3's and Harvester's names) with the same exit information
Harvester mode is decided from the parsed command line, or -- when the command line itself is bad -- from a
lenient look at the Harvester options and the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Dict, List, Optional

from ..files import write_json_atomic

log = logging.getLogger(__name__)

_DEFAULTS = {"workerattributes_file": "worker_attributes.json", "kill_worker_file": "kill_worker"}


def _lenient(argv: List[str]) -> argparse.Namespace:
    """The Harvester-related options of a command line that may not parse as a whole."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name, dest in (("harvester-workdir", "harvester_workdir"), ("harvester-datadir", "harvester_datadir"),
                       ("harvester-eventstatusdump", "harvester_eventstatusdump"),
                       ("harvester-workerattributes", "harvester_workerattributes"),
                       ("harvester-submit-mode", "harvester_submitmode"), ("workdir", "workdir"),
                       ("hpc-resource", "hpc_resource"), ("workflow", "workflow"), ("job-source", "job_source")):
        parser.add_argument(f"--{name}", f"--{name.replace('-', '_')}", dest=dest, default="")
    parser.add_argument("-z", "--noserverupdate", dest="update_server", action="store_false")
    parser.add_argument("-a", dest="workdir")
    parser.add_argument("-w", dest="workflow")
    try:
        namespace, _ = parser.parse_known_args(argv)
    except SystemExit:  # even this failed: only the environment can tell
        namespace = parser.parse_args([])
    namespace.harvester_submitmode = namespace.harvester_submitmode or "PULL"
    namespace.queue = ""
    namespace.url = ""
    return namespace


class ExitReport:
    def __init__(self, argv: List[str]):
        self._argv = list(argv)
        self._early: Optional[argparse.Namespace] = None
        self.settings = None  # the real command line, once parsed
        self.config = None  # the configuration, once loaded
        self.main_dir = ""
        self.error_code = 0  # pilot error code of the failure that ends the pilot (0: none)
        self.diag = ""

    @classmethod
    def from_argv(cls, argv: List[str]) -> "ExitReport":
        return cls(argv)

    @property
    def early(self) -> argparse.Namespace:
        """The Harvester options of a command line that may not parse: read only when the pilot ends before its
        settings are known (a parser build at every start would cost the start-up some 5 ms)."""
        if self._early is None:
            self._early = _lenient(self._argv)
        return self._early

    def harvester_mode(self) -> bool:
        from ..hpc import is_hpc_mode
        from ..main import job_source

        what = self.settings or self.early
        try:
            return job_source(what) == "harvester" and not is_hpc_mode(what)
        except AttributeError:
            return False

    def _names(self) -> Dict[str, str]:
        if self.config is None:
            return dict(_DEFAULTS)
        return {key: getattr(self.config.harvester, key) for key in _DEFAULTS}

    def write(self, exit_code: int, diag: str) -> None:
        if self.settings is not None and self.settings.check:
            return  # an operator's node check, not a worker's run
        if self.settings is None and exit_code == 0:
            return  # --help, --version
        if not self.harvester_mode():
            return
        from .harvester import access_point

        what = self.settings or self.early
        names = self._names()
        access = access_point(what, self.main_dir or os.getcwd())
        diag = (self.diag or diag or "")[:250]
        error_code = self.error_code or (1008 if exit_code else 0)
        exit_info = {"pilotExitCode": exit_code, "pilotErrorCode": error_code, "pilotErrorDiag": diag}
        attributes_path = what.harvester_workerattributes or os.path.join(access, names["workerattributes_file"])
        attributes = self._read(attributes_path)
        if exit_code and not attributes.get("jobStatus"):
            attributes["jobStatus"] = "failed"
        if attributes.get("jobStatus") in ("finished", "failed") and "pilotErrorCode" in attributes:
            exit_info = {"pilotExitCode": exit_code}  # keep the job's own final error fields
        attributes.update(exit_info)
        try:
            os.makedirs(access, exist_ok=True)
            write_json_atomic(attributes_path, attributes)
            for folder in {access, self.main_dir or access}:
                for name in (names["kill_worker_file"], names["kill_worker_file"] + ".json"):
                    write_json_atomic(os.path.join(folder, name),
                                      {"pilotExitCode": exit_code, "pilotErrorCode": error_code,
                                       "pilotErrorDiag": diag})
        except OSError as exc:  # nothing else can be done: say it where a human will look
            log.error("cannot tell Harvester how the pilot ended (%s): %s", access, exc)
            return
        log.info("Harvester told: exit code %d (%s) in %s", exit_code, diag or "ok", access)

    @staticmethod
    def _read(path: str) -> Dict[str, Any]:
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read(1 << 20).decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("previous %s unreadable (%s): rewritten", path, exc)
            return {}
        return data if isinstance(data, dict) else {}
