"""The command line: Pilot 3's flags (both spellings), ours, a help text for every one, and what we do with each.

Every option accepted is either acted on, or its use is refused with a clear message (`refusal`), or -- for the
few Pilot 3 flags that are obsolete or whose effect is already this pilot's behaviour -- logged at start-up
(`notes`) so nothing is ignored silently. docs/command-line.md is generated from this parser by tools/gen_docs.py
(checked by tests/unit/test_docs.py).
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Tuple

from . import __version__
from .settings import Settings

WORKFLOWS = ("generic", "generic_hpc", "production", "production_hpc", "analysis", "analysis_hpc",
             "eventservice_hpc", "stager", "payload_stageout")
IMPLEMENTED_WORKFLOWS = ("generic", "generic_hpc")
HPC_MODES = ("manytoone",)
ES_EXECUTORS = ("generic",)


def str2bool(value) -> bool:
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("yes", "true", "t", "y", "1"):
        return True
    if low in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {value!r}")


def _flags(*names: str) -> List[str]:
    """Each long option in both spellings (--pilot-user and --pilot_user), as Pilot 3 users type either."""
    out: List[str] = []
    for name in names:
        out.append(name)
        if name.startswith("--"):
            alt = "--" + (name[2:].replace("-", "_") if "-" in name[2:] else name[2:].replace("_", "-"))
            if alt != name:
                out.append(alt)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pilot", description="Worker-node pilot for PanDA-style workloads.",
                                allow_abbrev=False)
    add = p.add_argument
    flag = dict(nargs="?", const=True, type=str2bool, metavar="BOOL")
    add("-q", *_flags("--queue"), dest="queue", required=True, metavar="QUEUE",
        help="PanDA queue name (LOCAL: the built-in local queue, no server needed)")
    add(*_flags("--pilot-user"), dest="pilot_user", default="generic", metavar="NAME",
        help="experiment plug-in (default generic; see docs/experiments.md); an unknown name is refused")
    add("-a", *_flags("--workdir"), dest="workdir", default="", metavar="DIR",
        help="parent of the pilot's main work dir PanDA_Pilot3_<pid>_<time> (default: run in the launch dir)")
    add(*_flags("--cleanup"), dest="cleanup", default=True, **flag,
        help="remove each job's work dir after the job (default true)")
    add("-i", *_flags("--versiontag"), dest="version_tag", default="PR", choices=("PR", "RC", "RCM", "ALRB"),
        help="pilot version tag: changes the job label asked for (RC, RCM, ALRB) and the pilotID reported")
    add("-z", *_flags("--noserverupdate"), dest="update_server", action="store_false",
        help="do not report to the PanDA server (Harvester mode with --harvester-* options)")
    add(*_flags("--no-pilot-log"), dest="nopilotlog", action="store_true",
        help="do not write pilotlog.txt (log to stderr only)")
    add("-d", *_flags("--debug"), dest="debug", action="store_true", help="debug-level logging")
    add(*_flags("--redirect-stdout"), dest="redirectstdout", default="", metavar="FILE",
        help="send the pilot's standard output to FILE (e.g. /dev/null)")
    add("-j", *_flags("--joblabel"), dest="job_label", default="ptest", metavar="LABEL",
        help="prodSourceLabel of the jobs asked for (managed, user, test, ptest, ...)")
    add("-v", *_flags("--getjobrequests"), dest="getjob_requests", type=int, default=2, metavar="N",
        help="at most N answered job requests per pilot")
    add("-x", *_flags("--getjobfailures"), dest="getjob_failures", type=int, default=5, metavar="N",
        help="give up after N failed or empty job requests (empty ones count on multi-job queues)")
    add(*_flags("--country-group"), dest="country_group", default="", metavar="GROUP",
        help="getJob countryGroup: legacy PanDA API only (panda-server 1.0 removed it); refused otherwise")
    add(*_flags("--working-group"), dest="working_group", default="", metavar="GROUP",
        help="getJob workingGroup: legacy PanDA API only (panda-server 1.0 removed it); refused otherwise")
    add(*_flags("--allow-other-country"), dest="allow_other_country", default=False, **flag,
        help="getJob allowOtherCountry: legacy PanDA API only (panda-server 1.0 removed it); refused otherwise")
    add(*_flags("--allow-same-user"), dest="allow_same_user", default=True, **flag,
        help="on multi-job queues ask for further jobs of the same task as the previous one (getJob task_id; "
             "default true)")
    add(*_flags("--job-type"), dest="jobtype", default="", metavar="TYPE",
        help="getJob job_type (managed, user, ...) on unified queues")
    add("-w", *_flags("--workflow"), dest="workflow", default="generic", choices=WORKFLOWS,
        help="generic or generic_hpc (the others are refused: not implemented)")
    add("-l", *_flags("--lifetime"), dest="lifetime", type=int, default=324000, metavar="SECONDS",
        help="pilot lifetime when the queue sets no maxtime ($PANDAPILOT_LIFETIME overrides both)")
    add("-L", *_flags("--leasetime"), dest="leasetime", type=int, default=3600, metavar="SECONDS",
        help="stager workflow lease (Pilot 3); refused, as the stager workflow is not implemented")
    add("-r", *_flags("--resource"), dest="resource", default="", metavar="NAME",
        help="obsolete (as in Pilot 3): accepted, logged and ignored")
    add("-s", *_flags("--site"), dest="site", default="", metavar="NAME",
        help="obsolete (as in Pilot 3): accepted, logged and ignored")
    add(*_flags("--resource-type"), dest="resource_type", default="", metavar="TYPE",
        help="getJob resource_type (SCORE, MCORE, SCORE_HIMEM, ...)")
    add("-b", *_flags("--nocvmfs"), dest="cvmfs", action="store_false",
        help="skip the CVMFS availability check")
    add(*_flags("--stageout-attempts"), dest="stageout_attempts", type=int, default=1, metavar="N",
        help="attempts per output file (and log) at stage-out (default 1)")
    add(*_flags("--harvester-workdir"), dest="harvester_workdir", default="", metavar="DIR",
        help="Harvester access point; with -z this is Harvester mode")
    add(*_flags("--harvester-datadir"), dest="harvester_datadir", default="", metavar="DIR",
        help="where Harvester puts pandaJobData.out; with -z this is Harvester mode")
    add(*_flags("--harvester-eventstatusdump"), dest="harvester_eventstatusdump", default="", metavar="FILE",
        help="path of event_status.dump.json (outputs for Harvester to stage out)")
    add(*_flags("--harvester-workerattributes"), dest="harvester_workerattributes", default="", metavar="FILE",
        help="path of worker_attributes.json (job state for Harvester)")
    add(*_flags("--harvester-submit-mode"), dest="harvester_submitmode", default="PULL", choices=("PULL", "PUSH"),
        help="PULL: the pilot asks the server for jobs; PUSH: Harvester hands them over as files")
    add(*_flags("--input-dir"), dest="input_dir", default="", metavar="DIR",
        help="local storage the mv copytool stages inputs in from")
    add(*_flags("--input-destination-dir"), dest="input_destination_dir", default="", metavar="DIR",
        help="Pilot 3 stager workflow only; refused (the stager workflow is not implemented)")
    add(*_flags("--output-dir"), dest="output_dir", default="", metavar="DIR",
        help="local storage the mv copytool stages outputs out to")
    add(*_flags("--hpc-resource"), dest="hpc_resource", default="", metavar="NAME",
        help="HPC mode (one pilot per MPI rank, jobs from Harvester's shared files)")
    add(*_flags("--hpc-mode"), dest="hpc_mode", default="manytoone", metavar="MODE",
        help="HPC job mapping: manytoone (the only one implemented; others are refused)")
    add(*_flags("--es-executor-type"), dest="executor_type", default="generic", metavar="TYPE",
        help="event-service executor: generic only (others are refused)")
    add(*_flags("--pod"), dest="pod", default=False, **flag,
        help="running in a Kubernetes pod: a SIGTERM is reported as preemption (1379)")
    add("-t", *_flags("--noproxyverification"), dest="verify_proxy", action="store_false",
        help="skip the X509 proxy lifetime checks")
    add("-u", *_flags("--verifypayloadproxy"), dest="verify_payload_proxy", action="store_false",
        help="Pilot 3: skip the payload proxy check; this pilot downloads no payload proxy, so it only logs it")
    add("-y", *_flags("--notokenrenewal"), dest="token_renewal", action="store_false",
        help="do not renew the OIDC token through the PanDA server")
    add(*_flags("--cacert"), dest="cacert", default=None, metavar="FILE",
        help="CA bundle (or proxy) to verify HTTPS servers with")
    add(*_flags("--capath"), dest="capath", default=None, metavar="DIR",
        help="CA directory to verify HTTPS servers with (exported as X509_CERT_DIR)")
    add(*_flags("--url"), dest="url", default="", metavar="URL",
        help="PanDA server URL (default [Pilot] pandaserver or $PANDA_SERVER_URL)")
    add("-p", *_flags("--port"), dest="port", type=int, default=25443, metavar="PORT",
        help="PanDA server port when --url has none")
    add(*_flags("--queuedata-url"), dest="queuedata_url", default="", metavar="URL|FILE",
        help="queue data source, used when the launch dir has no queuedata.json (docs/user-guide.md)")
    add(*_flags("--storagedata-url"), dest="storagedata_url", default="", metavar="URL|FILE",
        help="storage endpoint (DDM) data source")
    add("-k", *_flags("--noworkerpilotstatusupdate"), dest="workerpilotstatusupdate", action="store_false",
        help="do not send updateWorkerPilotStatus to the server")
    add(*_flags("--subscribe-to-msgsvc"), dest="subscribe_to_msgsvc", action="store_true",
        help="Pilot 3 message-service subscription; refused (not implemented)")
    add(*_flags("--use-https"), dest="use_https", default=True, **flag,
        help="TLS for https:// URLs (always on); false is refused: give an http:// --url for a plain server")
    add("-g", *_flags("--baseurls"), dest="baseurls", default="", metavar="URLS",
        help="comma-separated base URLs a user transformation may be downloaded from")
    add(*_flags("--use-realtime-logging"), dest="use_realtime_logging", action="store_true",
        help="Pilot 3 real-time logging; refused (not implemented)")
    add(*_flags("--realtime-logging-server"), dest="realtime_logging_server", default=None, metavar="SERVER",
        help="Pilot 3 real-time logging server; refused (not implemented)")
    add(*_flags("--realtime-logname"), dest="realtime_logname", default=None, metavar="NAME",
        help="Pilot 3 real-time log name; refused (not implemented)")
    add(*_flags("--use-rucio-traces"), dest="use_rucio_traces", default=True, **flag,
        help="send Rucio trace reports to [Rucio] url (default true)")
    add(*_flags("--rucio-host"), dest="rucio_host", default="", metavar="URL",
        help="Rucio server for the rucio copytool (default: the Rucio client's own configuration)")
    # ours
    add(*_flags("--job-source"), dest="job_source", default="", metavar="SOURCE",
        help="where jobs come from: panda (the server of --url), harvester (shared files in the access point), "
             "local (built-in fake job), local:DIR (job-definition JSON files in DIR) or picas:URL/DB (PiCaS "
             "tokens in a CouchDB database; docs/picas.md); default: harvester in "
             "Harvester mode, local for -q LOCAL without --url, else panda")
    add(*_flags("--replay-spool"), dest="replay_spool", default="", metavar="DIR",
        help="deliver the final updates an earlier pilot left in DIR (its main work dir or its spool dir) first")
    add(*_flags("--config"), dest="config", default="", metavar="FILE", help="INI file overriding default.cfg")
    add("--check", action="store_true", help="check whether this node can run the queue's jobs, then exit")
    add(*_flags("--log-format"), dest="log_format", default="text", choices=("text", "json"),
        help="text (Pilot 3 style) or json (one object per line, for log shippers)")
    add("--version", action="version", version=f"pilot {__version__}", help="print the version and exit")
    return p


# Pilot 3 flags accepted for compatibility, whose use is logged at start-up: dest -> why nothing more is done.
NOTED: Dict[str, str] = {
    "resource": "-r/--resource is obsolete (as in Pilot 3) and ignored",
    "site": "-s/--site is obsolete (as in Pilot 3) and ignored",
    "verify_payload_proxy": "-u: this pilot downloads no payload proxy, so there is no payload proxy check to skip",
}

# Pilot 3 flags refused when set to anything but their default: dest -> (option, message)
REFUSED_UNLESS_DEFAULT: Dict[str, Tuple[str, str]] = {
    "subscribe_to_msgsvc": ("--subscribe-to-msgsvc", "message-service subscription is not implemented"),
    "use_realtime_logging": ("--use-realtime-logging", "real-time logging is not implemented"),
    "realtime_logging_server": ("--realtime-logging-server", "real-time logging is not implemented"),
    "realtime_logname": ("--realtime-logname", "real-time logging is not implemented"),
    "leasetime": ("-L/--leasetime", "the lease time belongs to the stager workflow, which is not implemented"),
    "input_destination_dir": ("--input-destination-dir",
                              "it belongs to the stager workflow, which is not implemented"),
    "use_https": ("--use-https", "TLS cannot be switched off for https:// URLs; give an http:// --url for a "
                                 "plain-HTTP server"),
}

# getJob selectors panda-server 1.0 rejects ("argument error") in /api/v1 acquire_jobs and in getJob
LEGACY_SELECTORS: Dict[str, str] = {
    "country_group": "--country-group", "working_group": "--working-group",
    "allow_other_country": "--allow-other-country",
}


def refusal(settings, defaults: Optional[Dict[str, object]] = None) -> Optional[str]:
    """A clear message if the command line asks for something this version cannot do (None if all is fine)."""
    defaults = defaults if defaults is not None else Settings.defaults()
    if settings.workflow not in IMPLEMENTED_WORKFLOWS:
        return (f"workflow {settings.workflow!r} is not implemented (implemented: "
                f"{', '.join(IMPLEMENTED_WORKFLOWS)})")
    for dest, (option, why) in REFUSED_UNLESS_DEFAULT.items():
        if getattr(settings, dest) != defaults[dest]:
            return f"{option}: {why}"
    if settings.hpc_mode not in HPC_MODES:
        return f"--hpc-mode {settings.hpc_mode!r} is not implemented (implemented: {', '.join(HPC_MODES)})"
    if settings.executor_type not in ES_EXECUTORS:
        return (f"--es-executor-type {settings.executor_type!r} is not implemented (implemented: "
                f"{', '.join(ES_EXECUTORS)})")
    if settings.stageout_attempts < 1:
        return f"--stageout-attempts must be at least 1, not {settings.stageout_attempts}"
    from .experiments import known_experiments

    if settings.pilot_user.lower() not in known_experiments():
        return (f"--pilot-user {settings.pilot_user!r}: no such experiment plug-in (known: "
                f"{', '.join(known_experiments())})")
    return None


def legacy_selector_refusal(settings, panda_api: str) -> Optional[str]:
    """countryGroup/workingGroup/allowOtherCountry exist only in the legacy getJob of servers before 1.0."""
    used = [option for dest, option in LEGACY_SELECTORS.items() if getattr(settings, dest)]
    if used and panda_api != "legacy":
        return (f"{', '.join(used)}: panda-server 1.0 removed these getJob selectors (the server rejects them); "
                f"they are sent only with the legacy API of older servers (PILOT_CFG_PILOT_PANDA_API=legacy)")
    return None


def notes(settings, defaults: Optional[Dict[str, object]] = None) -> List[str]:
    """Start-up log lines for Pilot 3 flags that were given but need nothing done."""
    defaults = defaults if defaults is not None else Settings.defaults()
    return [why for dest, why in NOTED.items() if getattr(settings, dest) != defaults[dest]]


def parser_defaults() -> Dict[str, object]:
    """dest -> default of every option (for the tests and docs; at start-up Settings.defaults() says the same
    without a second parser build, some 6 ms)."""
    return {action.dest: action.default for action in build_parser()._actions
            if action.dest not in ("help", "version")}


def help_markdown() -> str:
    """docs/command-line.md: every option with its help text, from the parser itself."""
    parser = build_parser()
    lines = ["# Command line", "",
             "Generated from the parser in `pilot/options.py` by `tools/gen_docs.py`; do not edit by hand. "
             "Every long option also takes the other spelling (`--pilot-user` and `--pilot_user`). What each "
             "Pilot 3 option does here, compared with Pilot 3: [migration-from-pilot3.md](migration-from-pilot3.md).",
             "",
             "| option | argument | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if action.dest == "help":
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings)
        if action.choices:
            argument = ", ".join(str(choice) for choice in action.choices)
        elif action.nargs == 0:
            argument = ""
        else:
            argument = action.metavar or ""
        default = "" if action.default in (None, "", argparse.SUPPRESS) or action.nargs == 0 else action.default
        meaning = (action.help or "").replace("|", "\\|")
        lines.append(f"| {names} | {argument} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


OURS = ("job_source", "replay_spool", "config", "check", "log_format", "version")
FLAGS_BEGIN = "<!-- flags table: generated by tools/gen_docs.py from pilot/options.py -->"
FLAGS_END = "<!-- end of flags table -->"


def _status(dest: str) -> str:
    if dest in REFUSED_UNLESS_DEFAULT:
        return "refused unless left at its default"
    if dest in LEGACY_SELECTORS:
        return "legacy API only (refused with /api/v1)"
    if dest in NOTED:
        return "accepted and logged; nothing to do"
    if dest == "workflow":
        return "generic, generic_hpc work; the others are refused"
    if dest in ("hpc_mode", "executor_type"):
        return "the default works; other values are refused"
    return "works"


def migration_flags_table() -> str:
    """The Pilot 3 flags table of docs/migration-from-pilot3.md: every Pilot 3 option of the parser, its status."""
    lines = [FLAGS_BEGIN, "", "| Pilot 3 option | status here | what this pilot does |", "|---|---|---|"]
    for action in build_parser()._actions:
        if action.dest in ("help",) + OURS:
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings if "_" not in name)
        meaning = (action.help or "").replace("|", "\\|")
        lines.append(f"| {names} | {_status(action.dest)} | {meaning} |")
    ours = ", ".join(f"`{action.option_strings[-1] if action.dest == 'check' else action.option_strings[0]}`"
                     for action in build_parser()._actions if action.dest in OURS)
    lines += ["", f"New in this pilot: {ours} ([command-line.md](command-line.md)).", "", FLAGS_END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(help_markdown(), end="")
