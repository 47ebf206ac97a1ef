"""Command line (Pilot 3's flags, hyphen and underscore spellings), start-up, and the exit code.

Start-up does only what every pilot needs before its first job: parse arguments, make the main work dir, open
the log, read the config and the queue data, pick the job channel. Anything heavier is imported where used.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import List, Optional

from . import __version__
from .errors import PilotError, StartupSignal, shell_exit_code, signal_code, swallowed_startup_signal
from .options import build_parser, legacy_selector_refusal, notes, refusal
from .settings import Settings

log = logging.getLogger("pilot")


def job_source(settings: Settings) -> str:
    if settings.job_source:
        return settings.job_source
    from .channels.harvester import is_harvester_mode

    from .hpc import is_hpc_mode

    if is_harvester_mode(settings) or is_hpc_mode(settings):
        return "harvester"
    return "local" if settings.queue == "LOCAL" and not settings.url else "panda"


def unsupported_use(settings: Settings) -> Optional[str]:
    """A clear message if the command line asks for something this version cannot do (None if all is fine)."""
    problem = refusal(settings)
    if problem:
        return problem
    source = job_source(settings)
    if not (source in ("local", "panda", "harvester") or source.startswith(("local:", "picas:"))):
        return (f"job source {source!r} is not implemented in this version; use panda (the default for a real "
                f"queue), harvester, local (built-in job), local:DIR or picas:URL/DB")
    if settings.replay_spool and not (source == "panda" or source.startswith("picas:")):
        return "--replay-spool needs the panda or picas job source (a server to deliver the spooled updates to)"
    return None


def _main_dir(settings: Settings, hpc_scratch: str = "") -> str:
    from .hpc import discover_rank, is_hpc_mode, scratch_dir

    if is_hpc_mode(settings):  # each rank in its own scratch dir (RAM disk or node-local disk)
        return scratch_dir(os.path.abspath(settings.workdir or hpc_scratch), discover_rank())
    if not settings.workdir:
        return _writable_cwd()
    path = os.path.join(os.path.abspath(settings.workdir), f"PanDA_Pilot3_{os.getpid()}_{int(time.time())}")
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


class QuietFileHandler(logging.FileHandler):
    """pilotlog.txt: a full disk costs log lines (said once on stderr), never a traceback per record."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            print(f"pilot: cannot write {self.baseFilename}: {sys.exc_info()[1]} (later lines only on stderr)",
                  file=sys.stderr)


def setup_logging(main_dir: str, filename: str, debug: bool, to_file: bool, fmt: str = "text") -> None:
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s | %(levelname)-7s | %(threadName)-9s | %(name)-22s | %(message)s")
        formatter.converter = time.gmtime
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if to_file:
        handlers.append(QuietFileHandler(os.path.join(main_dir, filename), mode="a", encoding="utf-8"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def queuedata_sources(settings: Settings, config, main_dir: str):
    """Where the queue data may come from, in Pilot 3's order plus the server's cache (pilot/queuedata.py)."""
    from .queuedata import LOCAL_QUEUE, Sources

    info = config.information
    launch_dir = os.getcwd()
    cache_dir = info.cache_dir or (os.path.abspath(settings.workdir) if settings.workdir else launch_dir)
    local_only = settings.queue == LOCAL_QUEUE  # the built-in queue, unless a file or URL is named
    server = ""
    if info.queuedata_url and not local_only:
        from .channels.panda import server_url  # lazily: a local pilot does not load the PanDA channel

        base = server_url(settings.url or os.environ.get("PANDA_SERVER_URL", ""), settings.port,
                          config.pilot.pandaserver)
        server = info.queuedata_url.replace("{pandaserver}", base)
    return Sources(url=settings.queuedata_url, launch_file=os.path.join(launch_dir, info.queuedata_cache),
                   server=server, cric="" if local_only else info.queues_url,
                   cache_file=os.path.join(cache_dir, ".pilot-cache", f"schedconfig-{settings.queue}.json"),
                   cache_age=float(info.queuedata_cache_age), stale_age=float(info.queuedata_cache_stale))


def run(settings: Settings, config, main_dir: str, report) -> int:
    from .context import Context, Paths
    from .selfcheck import require_dependencies
    from .payload.process import become_subreaper
    from .net import trust
    from .queuedata import load_queuedata

    log.info("pilot %s starting on queue %s in %s (pid %d, Python %s)", __version__, settings.queue, main_dir,
             os.getpid(), sys.version.split()[0])
    require_dependencies()
    for line in notes(settings):
        log.info("%s", line)
    from .recovery import sweep

    swept = sweep(main_dir)  # a pilot SIGKILLed in this dir before us may have left its payload running
    from .payload.cgroup import own_cgroup_dir, remove_stale

    remove_stale(own_cgroup_dir())  # empty job cgroups of pilots that are gone
    if swept:
        log.warning("swept %d process(es) that a killed pilot left running", swept)
    if not become_subreaper():
        log.warning("could not become a child subreaper: daemonised payload processes may escape clean-up")
    # the copy in the main work dir is not written into the launch dir: the next pilot there would take it
    # for a site-provided queuedata.json
    copy = os.path.join(main_dir, config.information.queuedata_cache)
    queuedata = load_queuedata(settings.queue, timeout=config.information.download_timeout,
                               attempts=config.information.download_attempts,
                               cache_path=None if os.path.samefile(main_dir, os.getcwd()) else copy,
                               sources=queuedata_sources(settings, config, main_dir),
                               trust=trust(settings.cacert, settings.capath))
    verify_proxy_at_start(settings, config)
    verify_cvmfs_at_start(settings, config, queuedata)
    source = job_source(settings)
    storage = os.path.join(main_dir, "storage")
    placement = None
    if source == "harvester":  # Harvester pre-places inputs in, and stages outputs out of, the access point
        from .channels.harvester import access_point
        from .hpc import discover_rank, is_hpc_mode, place

        storage = access_point(settings, main_dir)
        if is_hpc_mode(settings):
            placement = place(storage, discover_rank(), config.harvester.jobs_list_file)
            storage = placement.access_point
            log.info("HPC rank %d: job %s in %s", placement.rank, placement.panda_id or f"#{placement.job_index}",
                     storage)
    paths = Paths(source=os.getcwd(), main=main_dir,
                  input_dir=os.path.abspath(settings.input_dir) if settings.input_dir else storage,
                  output_dir=os.path.abspath(settings.output_dir) if settings.output_dir else storage)
    lifetime = lifetime_from_env() or float(queuedata.maxtime or settings.lifetime)
    from .experiments import experiment

    ctx = Context(config=config, settings=settings, queuedata=queuedata, paths=paths, lifetime=lifetime,
                  experiment=experiment(settings.pilot_user))
    log.info("experiment plug-in: %s", ctx.experiment.name)
    if settings.storagedata_url:
        from .transfer.storage import load_storage_data

        ctx.storage.update(load_storage_data(settings.storagedata_url, trust(settings.cacert, settings.capath)))

    from .pipeline import Pipeline

    channel = make_channel(ctx, source, placement)
    pipeline = Pipeline(ctx, channel)
    pipeline.install_signal_handlers()
    swallowed = swallowed_startup_signal()
    if swallowed:  # it landed where Python drops exceptions: act on it now, still before any job is taken
        raise StartupSignal(swallowed)
    from .monitor.credentials import start_renewal

    renewer = start_renewal(ctx, channel)  # token/proxy renewal through the server while jobs run
    try:
        code = pipeline.run()
    finally:
        if renewer:
            renewer.stop()
        remove_stale(own_cgroup_dir(), including_own=True)  # a payload killed at the grace may have left one
    summarize(pipeline, code)
    if ctx.abort_code:
        report.error_code, report.diag = ctx.abort_code, ctx.abort_reason
    elif pipeline.unreported:
        report.error_code, report.diag = 1318, f"final state of job(s) {', '.join(pipeline.unreported)} not delivered"
    elif not pipeline.finished_jobs and pipeline.retrieve.error_code:
        report.error_code, report.diag = pipeline.retrieve.error_code, "no job: every job request failed"
    return code


def verify_cvmfs_at_start(settings: Settings, config, queuedata) -> None:
    """CVMFS the queue needs must be there and fresh before a job is asked for (1377, exit 64, as Pilot 3)."""
    from .monitor import cvmfs

    if not cvmfs.wanted(settings, config, queuedata):
        return
    problem = cvmfs.check_node(config)
    if problem:
        raise PilotError(*problem)


def verify_proxy_at_start(settings: Settings, config) -> None:
    """A proxy that is named but unusable, expired or too short stops the pilot before it asks for a job."""
    from .monitor.proxy import check_proxy, proxy_path

    if not settings.verify_proxy:
        return
    path = proxy_path()
    if not os.environ.get("X509_USER_PROXY") and not os.path.exists(path):
        return  # no proxy in use (token authentication, or a local queue)
    problem = check_proxy(path, config.pilot.proxy_min_lifetime_start, 1382)
    if problem:
        raise PilotError(*problem)
    log.info("X509 proxy %s is valid", path)


def make_channel(ctx, source: str, placement=None):
    """The job channel for `source` (NAME[:ADDRESS], pilot.registry.CHANNELS); it first delivers the final
    updates an earlier pilot spooled (--replay-spool, and its own spool dir left by a pilot before it)."""
    from .registry import CHANNELS

    name, _, address = source.partition(":")
    channel = CHANNELS.get(name).open(ctx, address, placement)
    _replay(channel, ctx.settings.replay_spool, channel.spool_dir)
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


def _redirect_stdout(path: str) -> None:
    """--redirect-stdout FILE: the pilot's standard output goes to FILE from here on (Pilot 3)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise PilotError(1008, f"--redirect-stdout {path}: {exc}") from None
    sys.stdout.flush()
    os.dup2(fd, 1)
    os.close(fd)


def main(argv: Optional[List[str]] = None) -> int:
    from .channels.harvester_exit import ExitReport

    argv = sys.argv[1:] if argv is None else list(argv)
    report = ExitReport.from_argv(argv)  # Harvester learns how the pilot ended, whenever it ends
    code, diag = 0, ""
    try:
        code, diag = _main(argv, report)
    except SystemExit as exc:  # argparse: bad flags (2), --help/--version (0)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        diag = diag or ("bad command line" if code else "")
    finally:
        report.write(code, diag)
    return code


def _main(argv: List[str], report) -> tuple:
    """(shell exit code, diagnostic) of the whole pilot run."""
    settings = Settings.from_namespace(build_parser().parse_args(argv))
    report.settings = settings
    if settings.redirectstdout:
        try:
            _redirect_stdout(settings.redirectstdout)
        except PilotError as exc:
            print(f"pilot: error: {exc.diag}", file=sys.stderr)
            return 2, exc.diag
    if settings.check:
        from .selfcheck import run_check

        try:
            return run_check(settings), ""
        except PilotError as exc:
            print(f"pilot: {exc}", file=sys.stderr)
            return shell_exit_code(exc.code), str(exc)
    problem = unsupported_use(settings)
    if problem:
        print(f"pilot: error: {problem}", file=sys.stderr)
        return 2, problem
    try:
        from .config import load_config

        config = load_config(settings.config or None)
        report.config = config
        lifetime_from_env()  # a bad value stops the pilot before anything is created
        problem = legacy_selector_refusal(settings, config.pilot.panda_api)
        if problem:
            print(f"pilot: error: {problem}", file=sys.stderr)
            return 2, problem
        if settings.capath:  # as Pilot 3: the tools and libraries (xrootd, gfal2/davix, requests) read the variable
            os.environ["X509_CERT_DIR"] = os.path.abspath(settings.capath)
        main_dir = _main_dir(settings, config.hpc.scratch)
        report.main_dir = main_dir
        setup_logging(main_dir, config.pilot.pilotlog, settings.debug, not settings.nopilotlog,
                      settings.log_format)
        code = run(settings, config, main_dir, report)
        return code, report.diag
    except PilotError as exc:
        _one_line(str(exc))
        report.error_code = exc.code
        return shell_exit_code(exc.code), str(exc)
    except KeyboardInterrupt as exc:  # a signal before the pipeline's own handlers are in place (pilot.py)
        signum = exc.signum if isinstance(exc, StartupSignal) else signal.SIGINT
        text = f"interrupted by {signal.Signals(signum).name} during start-up"
        _one_line(text)
        report.error_code = signal_code(signum)
        return shell_exit_code(report.error_code, signum), text
    except Exception as exc:  # noqa: BLE001 -- any other start-up failure: a code and one line, not a traceback
        log.debug("start-up failure", exc_info=True)
        text = f"1008 GENERALERROR: {type(exc).__name__}: {str(exc)[:200]}"
        _one_line(text)
        report.error_code = 1008
        return shell_exit_code(1008), text


def _one_line(text: str) -> None:
    """To the pilot log once it exists, else to stderr."""
    log.error("pilot failed: %s", text) if logging.getLogger().handlers else print(f"pilot: {text}", file=sys.stderr)
