"""The settings of default.cfg as typed, frozen dataclasses, one per section, each field with its declared range.

default.cfg holds the values (and the comments docs/configuration.md is generated from); this module holds what
a value may be: its type, and its range (numbers), choices (words), or kind (a file name inside a work dir, a
URL). A period of 0 would spin, a negative grace would kill at once: such values are refused at start-up with
1008, never discovered an hour into a job. Every key of default.cfg must have a field here and the other way
round (checked when the configuration loads).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Optional, Tuple

from .records import FrozenRecord, frozen_record

MINUTE, HOUR, DAY = 60, 3600, 86400
MB_MAX = 1 << 30  # a size limit in MB above this (1 PB) is a typo
KB_MAX = 1 << 40


def rng(lo: Optional[float] = None, hi: Optional[float] = None) -> Any:
    """A number from `lo` to `hi` (inclusive; None: unbounded)."""
    return field(metadata={"range": (lo, hi)})


def period(hi: float = 30 * DAY) -> Any:
    """Seconds between two actions: at least 1 (0 would spin at 100 % CPU)."""
    return rng(1, hi)


def choice(*words: str) -> Any:
    return field(metadata={"choices": words})


def name() -> Any:
    """A file name relative to a work dir: not empty, not absolute, no '..' component."""
    return field(metadata={"kind": "name"})


def optional_name() -> Any:
    return field(metadata={"kind": "name", "optional": True})


def url(optional: bool = False) -> Any:
    return field(metadata={"kind": "url", "optional": optional})


def text() -> Any:
    """Free text (a command, a path, a list): only a NUL or a line break is refused."""
    return field(metadata={"kind": "text"})


def flag() -> Any:
    return field(metadata={})


@frozen_record
class PilotSection(FrozenRecord):
    pilotlog: str = name()
    stageinlog: str = name()
    stageoutlog: str = name()
    pandajobdata: str = name()
    pandaserver: str = url()
    iddsserver: str = url()
    ssl_enable: bool = flag()
    ssl_verify: bool = flag()
    heartbeat: int = period()
    debug_heartbeat: int = period()
    command_check: int = rng(0, 30 * DAY)
    lost_heartbeat: int = rng(1, 30 * DAY)
    pilot_heartbeat: int = period()
    heartbeat_message: str = name()
    pilot_heartbeat_file: str = name()
    jobid_file: str = name()
    free_space_limit_mb: int = rng(0, MB_MAX)
    free_space_limit_running_mb: int = rng(0, MB_MAX)
    maximum_output_file_size_mb: int = rng(1, MB_MAX)
    maximum_input_file_sizes_mb: int = rng(1, MB_MAX)
    local_size_limit_stdout_kb: int = rng(1, KB_MAX)
    looping_verification_time: int = period()
    looping_limit_default: int = rng(1, 30 * DAY)
    looping_limit_min_default: int = rng(1, 30 * DAY)
    kill_instruction_time: int = period()
    kill_instruction_filename: str = name()
    proxy_verification_time: int = period()
    proxy_min_lifetime_start: int = rng(0, 365 * DAY)
    proxy_min_lifetime_running: int = rng(0, 365 * DAY)
    proxy_renew_before: int = rng(0, 365 * DAY)
    proxy_role: str = text()
    payload_proxy_from_server: bool = flag()
    disk_space_verification_time: int = period()
    memory_usage_verification_time: int = period()
    process_verification_time: int = period()
    output_verification_time: int = period()
    thread_check: int = period()
    cpu_check: int = period()
    timing_file: str = name()
    error_log: str = name()
    http_connect_timeout: int = rng(1, HOUR)
    http_maxtime: int = rng(1, DAY)
    update_sleep: int = period()
    panda_api: str = choice("auto", "v1", "legacy")
    send_worker_node: bool = flag()
    update_retry_initial: float = rng(0.01, DAY)
    update_retry_max: float = rng(0.01, DAY)
    getjob_retry_initial: float = rng(0.01, DAY)
    getjob_retry_max: float = rng(0.01, DAY)
    pandasecrets: str = name()
    enable_delay_to_get_job: bool = flag()
    load_factor: float = rng(0.0, 1000.0)
    abort_grace: int = rng(1, DAY)
    kill_grace: int = rng(0, HOUR)
    cvmfs_root: str = text()
    cvmfs_repositories: str = text()
    cvmfs_last_update_file: str = optional_name()
    cvmfs_max_age: int = rng(0, 365 * DAY)
    cvmfs_timeout: int = rng(1, HOUR)
    features_check: float = rng(0.1, DAY)
    shutdown_margin: int = rng(0, DAY)
    min_job_time: int = rng(0, 365 * DAY)
    lifetime_margin: int = rng(0, DAY)


@frozen_record
class InformationSection(FrozenRecord):
    cache_dir: str = text()
    queuedata_url: str = text()  # a template: {pandaserver}/cache/...
    queues_url: str = text()
    queuedata_cache: str = name()
    queuedata_cache_age: int = rng(0, 30 * DAY)
    queuedata_cache_stale: int = rng(0, 365 * DAY)
    storages_url: str = url()
    storages_cache: str = name()
    download_attempts: int = rng(1, 100)
    download_timeout: int = rng(1, HOUR)


@frozen_record
class PayloadSection(FrozenRecord):
    jobreport: str = name()
    metadata: str = name()
    payloadstdout: str = name()
    payloadstderr: str = name()
    error_report: str = name()
    trf_base_urls: str = text()
    checks: str = text()
    sandbox_max_mb: int = rng(1, MB_MAX)
    sandbox_timeout: float = rng(1, DAY)
    sandbox_env_file: str = optional_name()
    cgroup: str = choice("auto", "off")


@frozen_record
class FileSection(FrozenRecord):
    checksum_type: str = choice("adler32", "md5")
    transfer_attempts: int = rng(1, 100)
    log_max_mb: int = rng(1, MB_MAX)
    log_max_file_mb: int = rng(1, MB_MAX)
    log_timeout: float = rng(0.1, DAY)
    transfer_width: int = rng(1, 256)
    transfer_timeout_base: float = rng(0.1, 30 * DAY)
    transfer_timeout_max: float = rng(0.1, 30 * DAY)
    progress_interval: float = rng(0.1, DAY)
    mv_stagein_mode: str = choice("copy", "symlink", "move")
    mv_fsync: bool = flag()
    max_field_length: int = rng(16, 1 << 30)
    gfal_bindings: bool = flag()
    locality_check: bool = flag()
    locality_schemes: str = text()
    locality_timeout: float = rng(0.1, DAY)
    bringonline_timeout: float = rng(0, 30 * DAY)
    locality_poll: float = rng(0.1, DAY)
    bringonline_command: str = text()


@frozen_record
class RucioSection(FrozenRecord):
    url: str = url(optional=True)
    trace_timeout: float = rng(0.1, HOUR)
    mode: str = choice("auto", "api", "cli")
    python: str = text()
    register: bool = flag()


@frozen_record
class HarvesterSection(FrozenRecord):
    job_request_file: str = name()
    kill_worker_file: str = name()
    jobs_list_file: str = name()
    pandajob_file: str = name()
    workerattributes_file: str = name()
    stageoutn_file: str = name()
    heartbeat_file: str = name()
    heartbeat_period: int = period()
    job_poll_interval: float = rng(0.1, DAY)
    job_wait_limit: float = rng(0, 30 * DAY)


@frozen_record
class PicasSection(FrozenRecord):
    credentials_file: str = text()
    design_doc: str = name()
    token_type: str = text()
    create_views: bool = flag()
    view_window: int = rng(1, 100000)
    claim_attempts: int = rng(1, 1000)
    lease: int = rng(0, 365 * DAY)
    input_field: str = text()
    input_attachment: str = optional_name()
    surl_form: str = choice("", "gsiftp", "https", "gfal")
    log_attachment: str = optional_name()
    attach_log: str = choice("always", "error", "never")
    log_tail_kb: int = rng(0, 1 << 20)
    results_file: str = optional_name()
    connect_timeout: float = rng(0.1, HOUR)
    timeout: float = rng(0.1, DAY)


@frozen_record
class HpcSection(FrozenRecord):
    scratch: str = text()


@frozen_record
class TokenSection(FrozenRecord):
    download_check: int = period()
    renew_before: int = rng(0, 365 * DAY)
    client_name: str = text()


@frozen_record
class S3Section(FrozenRecord):
    keys_file: str = text()
    region: str = text()


@frozen_record
class EventServiceSection(FrozenRecord):
    lookahead_per_core: int = rng(1, 1000)
    fetch_batch: int = rng(1, 100000)
    update_batch: int = rng(1, 100000)
    update_interval: float = rng(0.01, HOUR)
    stop_margin: float = rng(0, DAY)
    fetch_retry_max: float = rng(0.01, DAY)


# INI section name -> dataclass; the attribute on Config is the lower-case name
SECTIONS = {
    "Pilot": PilotSection, "Information": InformationSection, "Payload": PayloadSection, "File": FileSection,
    "Rucio": RucioSection, "Harvester": HarvesterSection, "PiCaS": PicasSection, "HPC": HpcSection,
    "Token": TokenSection, "S3": S3Section, "EventService": EventServiceSection,
}

# (section, smaller key, larger key): pairs whose order matters
ORDERED: Tuple[Tuple[str, str, str], ...] = (
    ("Pilot", "update_retry_initial", "update_retry_max"),
    ("Pilot", "getjob_retry_initial", "getjob_retry_max"),
    ("Pilot", "free_space_limit_running_mb", "free_space_limit_mb"),
    ("File", "transfer_timeout_base", "transfer_timeout_max"),
)


@frozen_record
class Config(FrozenRecord):
    """All settings: `config.pilot.heartbeat` (an int), `config.file.checksum_type` (a str)..."""

    pilot: PilotSection
    information: InformationSection
    payload: PayloadSection
    file: FileSection
    rucio: RucioSection
    harvester: HarvesterSection
    picas: PicasSection
    hpc: HpcSection
    token: TokenSection
    s3: S3Section
    eventservice: EventServiceSection

    def as_dict(self):
        from dataclasses import asdict

        return asdict(self)
