"""The command line as one typed, read-only object: built once by main, handed to everything through Context.

Why a dataclass rather than argparse's Namespace: a Namespace accepts any attribute, so a misspelt option name
reads as a silent AttributeError (or a getattr default) deep in a stage; a frozen dataclass names every setting
with its type, and `from_namespace` fails at start-up if the parser and this class ever disagree.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, Optional

from .records import FrozenRecord, frozen_record


@frozen_record
class Settings(FrozenRecord):
    queue: str
    pilot_user: str = "generic"
    workdir: str = ""
    cleanup: bool = True
    version_tag: str = "PR"
    update_server: bool = True
    nopilotlog: bool = False
    debug: bool = False
    redirectstdout: str = ""
    job_label: str = "ptest"
    getjob_requests: int = 2
    getjob_failures: int = 5
    country_group: str = ""
    working_group: str = ""
    allow_other_country: bool = False
    allow_same_user: bool = True
    jobtype: str = ""
    workflow: str = "generic"
    lifetime: int = 324000
    leasetime: int = 3600
    resource: str = ""
    site: str = ""
    resource_type: str = ""
    cvmfs: bool = True
    stageout_attempts: int = 1
    harvester_workdir: str = ""
    harvester_datadir: str = ""
    harvester_eventstatusdump: str = ""
    harvester_workerattributes: str = ""
    harvester_submitmode: str = "PULL"
    input_dir: str = ""
    input_destination_dir: str = ""
    output_dir: str = ""
    hpc_resource: str = ""
    hpc_mode: str = "manytoone"
    executor_type: str = "generic"
    pod: bool = False
    verify_proxy: bool = True
    verify_payload_proxy: bool = True
    token_renewal: bool = True
    cacert: Optional[str] = None
    capath: Optional[str] = None
    url: str = ""
    port: int = 25443
    queuedata_url: str = ""
    storagedata_url: str = ""
    workerpilotstatusupdate: bool = True
    subscribe_to_msgsvc: bool = False
    use_https: bool = True
    baseurls: str = ""
    use_realtime_logging: bool = False
    realtime_logging_server: Optional[str] = None
    realtime_logname: Optional[str] = None
    use_rucio_traces: bool = True
    rucio_host: str = ""
    # ours
    job_source: str = ""
    replay_spool: str = ""
    config: str = ""
    check: bool = False
    log_format: str = "text"

    @classmethod
    def from_namespace(cls, namespace: Any) -> "Settings":
        """The parsed command line as Settings; a parser dest without a field here (or the reverse) is a bug."""
        values = dict(vars(namespace))
        names = {f.name for f in fields(cls)}
        extra = sorted(set(values) - names)
        missing = sorted(name for name in names - set(values) if name != "queue")
        if extra or missing:
            raise TypeError(f"command line and Settings disagree: unknown {extra}, missing {missing}")
        return cls(**values)

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """Each setting's default, i.e. the parser's (tests/unit/test_options.py holds the two equal): what the
        refusal and notes checks compare against, without building a second parser at start-up."""
        return {item.name: item.default for item in fields(cls) if item.name != "queue"}
