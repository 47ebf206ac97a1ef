"""Command line (Pilot 3's flags, hyphen and underscore spellings), start-up, and the exit code.

Start-up does only what every pilot needs before its first job: parse arguments, make the main work dir, open
the log, read the config and the queue data, pick the job channel. Anything heavier is imported where used.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from . import __version__
from .errors import PilotError, shell_exit_code

log = logging.getLogger("pilot")

WORKFLOWS = ("generic", "generic_hpc", "production", "production_hpc", "analysis", "analysis_hpc",
             "eventservice_hpc", "stager", "payload_stageout")
IMPLEMENTED_WORKFLOWS = ("generic", "generic_hpc")


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
    flag = dict(nargs="?", const=True, type=str2bool)
    add("-q", *_flags("--queue"), dest="queue", required=True, help="PanDA queue name (LOCAL: built-in local queue)")
    add(*_flags("--pilot-user"), dest="pilot_user", default="generic", help="experiment plug-in (generic)")
    add("-a", *_flags("--workdir"), dest="workdir", default="", help="parent of the pilot's main work dir")
    add(*_flags("--cleanup"), dest="cleanup", default=True, **flag, help="remove job work dirs after each job")
    add("-i", *_flags("--versiontag"), dest="version_tag", default="PR", choices=("PR", "RC", "RCM", "ALRB"))
    add("-z", *_flags("--noserverupdate"), dest="update_server", action="store_false")
    add(*_flags("--no-pilot-log"), dest="nopilotlog", action="store_true")
    add("-d", *_flags("--debug"), dest="debug", action="store_true")
    add(*_flags("--redirect-stdout"), dest="redirectstdout", default="")
    add("-j", *_flags("--joblabel"), dest="job_label", default="ptest")
    add("-v", *_flags("--getjobrequests"), dest="getjob_requests", type=int, default=2)
    add("-x", *_flags("--getjobfailures"), dest="getjob_failures", type=int, default=5)
    add(*_flags("--country-group"), dest="country_group", default="")
    add(*_flags("--working-group"), dest="working_group", default="")
    add(*_flags("--allow-other-country"), dest="allow_other_country", default=False, **flag)
    add(*_flags("--allow-same-user"), dest="allow_same_user", default=True, **flag)
    add(*_flags("--job-type"), dest="jobtype", default="")
    add("-w", *_flags("--workflow"), dest="workflow", default="generic", choices=WORKFLOWS)
    add("-l", *_flags("--lifetime"), dest="lifetime", type=int, default=324000)
    add("-L", *_flags("--leasetime"), dest="leasetime", type=int, default=3600)
    add("-r", *_flags("--resource"), dest="resource", default="", help="obsolete, ignored")
    add("-s", *_flags("--site"), dest="site", default="", help="obsolete, ignored")
    add(*_flags("--resource-type"), dest="resource_type", default="")
    add("-b", *_flags("--nocvmfs"), dest="cvmfs", action="store_false")
    add(*_flags("--stageout-attempts"), dest="stageout_attempts", type=int, default=1)
    add(*_flags("--harvester-workdir"), dest="harvester_workdir", default="")
    add(*_flags("--harvester-datadir"), dest="harvester_datadir", default="")
    add(*_flags("--harvester-eventstatusdump"), dest="harvester_eventstatusdump", default="")
    add(*_flags("--harvester-workerattributes"), dest="harvester_workerattributes", default="")
    add(*_flags("--harvester-submit-mode"), dest="harvester_submitmode", default="PULL", choices=("PULL", "PUSH"))
    add(*_flags("--input-dir"), dest="input_dir", default="")
    add(*_flags("--input-destination-dir"), dest="input_destination_dir", default="")
    add(*_flags("--output-dir"), dest="output_dir", default="")
    add(*_flags("--hpc-resource"), dest="hpc_resource", default="")
    add(*_flags("--hpc-mode"), dest="hpc_mode", default="manytoone")
    add(*_flags("--es-executor-type"), dest="executor_type", default="generic")
    add(*_flags("--pod"), dest="pod", default=False, **flag)
    add("-t", *_flags("--noproxyverification"), dest="verify_proxy", action="store_false")
    add("-u", *_flags("--verifypayloadproxy"), dest="verify_payload_proxy", action="store_false")
    add("-y", *_flags("--notokenrenewal"), dest="token_renewal", action="store_false")
    add(*_flags("--cacert"), dest="cacert", default=None)
    add(*_flags("--capath"), dest="capath", default=None)
    add(*_flags("--url"), dest="url", default="")
    add("-p", *_flags("--port"), dest="port", type=int, default=25443)
    add(*_flags("--queuedata-url"), dest="queuedata_url", default="")
    add(*_flags("--storagedata-url"), dest="storagedata_url", default="")
    add("-k", *_flags("--noworkerpilotstatusupdate"), dest="workerpilotstatusupdate", action="store_false")
    add(*_flags("--subscribe-to-msgsvc"), dest="subscribe_to_msgsvc", action="store_true")
    add(*_flags("--use-https"), dest="use_https", default=True, **flag)
    add("-g", *_flags("--baseurls"), dest="baseurls", default="")
    add(*_flags("--use-realtime-logging"), dest="use_realtime_logging", action="store_true")
    add(*_flags("--realtime-logging-server"), dest="realtime_logging_server", default=None)
    add(*_flags("--realtime-logname"), dest="realtime_logname", default=None)
    add(*_flags("--use-rucio-traces"), dest="use_rucio_traces", default=True, **flag)
    add(*_flags("--rucio-host"), dest="rucio_host", default="")
    # ours
    add(*_flags("--job-source"), dest="job_source", default="",
        help="where jobs come from: panda (the server of --url), harvester (shared files in the access point), "
             "local (built-in fake job), local:DIR (job-definition JSON files in DIR) or picas:URL/DB (PiCaS "
             "tokens in a CouchDB database; docs/picas.md); default: harvester in "
             "Harvester mode, local for -q LOCAL without --url, else panda")
    add(*_flags("--replay-spool"), dest="replay_spool", default="",
        help="deliver the final updates an earlier pilot left in DIR (its main work dir or its spool dir) first")
    add(*_flags("--config"), dest="config", default="", help="INI file overriding default.cfg")
    add("--check", action="store_true", help="check whether this node can run the queue's jobs, then exit")
    add(*_flags("--log-format"), dest="log_format", default="text", choices=("text", "json"),
        help="text (Pilot 3 style) or json (one object per line, for log shippers)")
    add("--version", action="version", version=f"pilot {__version__}")
    return p


def unsupported_use(args) -> Optional[str]:
    """A clear message if the arguments ask for something this version cannot do (None if all is fine)."""
    if args.workflow not in IMPLEMENTED_WORKFLOWS:
        return f"workflow {args.workflow!r} is not implemented (implemented: {', '.join(IMPLEMENTED_WORKFLOWS)})"
    for dest, what in (("subscribe_to_msgsvc", "message-service subscription"),
                       ("use_realtime_logging", "real-time logging")):
        if getattr(args, dest):
            option = "--" + dest.replace("_", "-")
            return f"{option}: {what} is not implemented in this version"
    source = job_source(args)
    if not (source in ("local", "panda", "harvester") or source.startswith(("local:", "picas:"))):
        return (f"job source {source!r} is not implemented in this version; use panda (the default for a real "
                f"queue), harvester, local (built-in job), local:DIR or picas:URL/DB")
    if args.replay_spool and not (source == "panda" or source.startswith("picas:")):
        return "--replay-spool needs the panda or picas job source (a server to deliver the spooled updates to)"
    return None


def job_source(args) -> str:
    if args.job_source:
        return args.job_source
    from .channels.harvester import is_harvester_mode

    from .hpc import is_hpc_mode

    if is_harvester_mode(args) or is_hpc_mode(args):
        return "harvester"
    return "local" if args.queue == "LOCAL" and not args.url else "panda"


def _main_dir(args, hpc_scratch: str = "") -> str:
    from .hpc import discover_rank, is_hpc_mode, scratch_dir

    if is_hpc_mode(args):  # each rank in its own scratch dir (RAM disk or node-local disk)
        return scratch_dir(os.path.abspath(args.workdir or hpc_scratch), discover_rank())
    if not args.workdir:
        return _writable_cwd()
    path = os.path.join(os.path.abspath(args.workdir), f"PanDA_Pilot3_{os.getpid()}_{int(time.time())}")
    try:
        os.makedirs(path, 0o755)
    except OSError as exc:
        raise PilotError(1199, f"cannot create main work dir {path}: {exc}") from None
    return path


def _writable_cwd() -> str:
    """The current dir as the main work dir, if the pilot can write there (else 1199: give -a)."""
    try:
        path = os.getcwd()
        probe = os.path.join(path, f".pilot-write-test-{os.getpid()}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise PilotError(1199, f"cannot use the current directory as the main work dir ({exc.strerror}); "
                               f"run the pilot in a writable directory or give -a DIR") from None
    return path


def lifetime_from_env() -> Optional[float]:
    """PANDAPILOT_LIFETIME (seconds) if set, as Pilot 3 reads it; a value that is no positive number is refused."""
    raw = os.environ.get("PANDAPILOT_LIFETIME", "")
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value < 1e9):  # also refuses nan and inf
        raise PilotError(1008, f"PANDAPILOT_LIFETIME={raw[:40]!r} is not a positive number of seconds")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO 8601), level, thread, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) +
                 f".{int(record.msecs):03d}Z", "level": record.levelname, "thread": record.threadName,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(main_dir: str, filename: str, debug: bool, to_file: bool, fmt: str = "text") -> None:
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s | %(levelname)-7s | %(threadName)-9s | %(name)-22s | %(message)s")
        formatter.converter = time.gmtime
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if to_file:
        handlers.append(logging.FileHandler(os.path.join(main_dir, filename), mode="a", encoding="utf-8"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def run(args) -> int:
    from .config import load_config
    from .context import Context, Paths
    from .payload.process import become_subreaper
    from .queuedata import load_queuedata

    config = load_config(args.config or None)
    env_lifetime = lifetime_from_env()  # checked before anything is created
    if args.capath:  # as Pilot 3: the tools and libraries (xrootd, gfal2/davix, requests) read the variable
        os.environ["X509_CERT_DIR"] = os.path.abspath(args.capath)
    main_dir = _main_dir(args, config.hpc.scratch)
    setup_logging(main_dir, config.pilot.pilotlog, args.debug, not args.nopilotlog, args.log_format)
    log.info("pilot %s starting on queue %s in %s (pid %d, Python %s)", __version__, args.queue, main_dir,
             os.getpid(), sys.version.split()[0])
    if not become_subreaper():
        log.warning("could not become a child subreaper: daemonised payload processes may escape clean-up")
    queuedata = load_queuedata(args.queue, args.queuedata_url, config.information.queuedata_url,
                               config.information.download_timeout, config.information.download_attempts,
                               os.path.join(main_dir, config.information.queuedata_cache))
    verify_proxy_at_start(args, config)
    source = job_source(args)
    storage = os.path.join(main_dir, "storage")
    placement = None
    if source == "harvester":  # Harvester pre-places inputs in, and stages outputs out of, the access point
        from .channels.harvester import access_point
        from .hpc import discover_rank, is_hpc_mode, place

        storage = access_point(args, main_dir)
        if is_hpc_mode(args):
            placement = place(storage, discover_rank(), config.harvester.jobs_list_file)
            storage = placement.access_point
            log.info("HPC rank %d: job %s in %s", placement.rank, placement.panda_id or f"#{placement.job_index}",
                     storage)
    paths = Paths(source=os.getcwd(), main=main_dir,
                  input_dir=os.path.abspath(args.input_dir) if args.input_dir else storage,
                  output_dir=os.path.abspath(args.output_dir) if args.output_dir else storage)
    lifetime = env_lifetime or float(queuedata.maxtime or args.lifetime)
    ctx = Context(config=config, args=args, queuedata=queuedata, paths=paths, lifetime=lifetime)
    if args.storagedata_url:
        from .transfer.storage import load_storage_data

        ctx.storage.update(load_storage_data(args.storagedata_url))

    from .pipeline import Pipeline

    channel = make_channel(ctx, source, placement)
    pipeline = Pipeline(ctx, channel)
    pipeline.install_signal_handlers()
    code = pipeline.run()
    summarize(pipeline, code)
    return code


def verify_proxy_at_start(args, config) -> None:
    """A proxy that is named but unusable, expired or too short stops the pilot before it asks for a job."""
    from .monitor.proxy import check_proxy, proxy_path

    if not args.verify_proxy:
        return
    path = proxy_path()
    if not os.environ.get("X509_USER_PROXY") and not os.path.exists(path):
        return  # no proxy in use (token authentication, or a local queue)
    problem = check_proxy(path, config.pilot.proxy_min_lifetime_start, 1382)
    if problem:
        raise PilotError(*problem)
    log.info("X509 proxy %s is valid", path)


def make_channel(ctx, source: str, placement=None):
    """The job channel for `source`; the PanDA one first replays final updates an earlier pilot spooled."""
    if source.startswith("local"):
        from .channels.local import LocalChannel

        return LocalChannel(ctx, job_dir=source.partition(":")[2])
    if source == "harvester":
        from .channels.harvester import HarvesterChannel

        return HarvesterChannel(ctx, placement)
    if source.startswith("picas:"):
        from .channels.picas import PicasChannel

        spool_dir = os.path.join(ctx.paths.main, "spool")
        channel = PicasChannel(ctx, source.partition(":")[2], spool_dir)
        _replay(channel, ctx.args.replay_spool, spool_dir)
        return channel
    from .channels.panda import PandaChannel

    spool_dir = os.path.join(ctx.paths.main, "spool")
    channel = PandaChannel(ctx, spool_dir)
    channel.worker_status("started")
    if ctx.config.pilot.send_worker_node:
        channel.worker_node()
    ctx.resource_types.update(channel.resource_types())
    log.info("resource types from the server: %s", ", ".join(sorted(ctx.resource_types)) or "none")
    _replay(channel, ctx.args.replay_spool, spool_dir)
    return channel


def _replay(channel, *folders: str) -> None:
    """Deliver the final updates an earlier pilot left in these spool dirs (or main work dirs holding one)."""
    for folder in folders:
        if folder:
            folder = os.path.join(folder, "spool") if os.path.isdir(os.path.join(folder, "spool")) else folder
            if os.path.isdir(folder):
                delivered = channel.replay(folder)
                if delivered:
                    log.info("replayed %d spooled final update(s) from %s", delivered, folder)


def summarize(pipeline, code: int) -> None:
    from .summary import job_summary

    for job in pipeline.finished_jobs:
        for line in job_summary(job):
            log.info("summary: %s", line)
    log.info("pilot done: %d job(s), exit code %d, %.3f s", len(pipeline.finished_jobs), code, pipeline.ctx.elapsed())


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        from .selfcheck import run_check

        try:
            return run_check(args)
        except PilotError as exc:
            print(f"pilot: {exc}", file=sys.stderr)
            return shell_exit_code(exc.code)
    problem = unsupported_use(args)
    if problem:
        print(f"pilot: error: {problem}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except PilotError as exc:
        _one_line(str(exc))
        return shell_exit_code(exc.code)
    except KeyboardInterrupt:  # SIGINT before the pilot's own handlers are in place
        _one_line("interrupted (SIGINT) during start-up")
        return shell_exit_code(1208)
    except Exception as exc:  # noqa: BLE001 -- any other start-up failure: a code and one line, not a traceback
        log.debug("start-up failure", exc_info=True)
        _one_line(f"1008 GENERALERROR: {type(exc).__name__}: {str(exc)[:200]}")
        return shell_exit_code(1008)


def _one_line(text: str) -> None:
    """To the pilot log once it exists, else to stderr."""
    log.error("pilot failed: %s", text) if logging.getLogger().handlers else print(f"pilot: {text}", file=sys.stderr)
