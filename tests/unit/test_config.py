"""Typed configuration: default.cfg, then --config FILE, then PILOT_CFG_<SECTION>_<KEY> variables."""

import configparser
import dataclasses
import os

import pytest

from pilot.config import ENV_PREFIX, default_cfg_path, load_config
from pilot.errors import PilotError
from tests.conftest import REPO

# Every threshold, interval and file name of Pilot 3's default.cfg that spec pilot3-reference §9 gives a value for,
# under our name (sizes carry their unit in the name), with Pilot 3's value in our unit.
GB = 1024  # MB
PILOT3_SECTION_9 = {
    "pilot": {
        "pilotlog": "pilotlog.txt", "pandajobdata": "pandaJobData.out",
        "heartbeat": 1800, "debug_heartbeat": 60, "lost_heartbeat": 10800, "pilot_heartbeat": 60,
        "heartbeat_message": "heartbeat.json", "pilot_heartbeat_file": "pilot_heartbeat.json",
        "jobid_file": "pandaIDs.out",
        "free_space_limit_mb": 2 * GB, "free_space_limit_running_mb": 1 * GB,
        "maximum_output_file_size_mb": 500 * GB, "maximum_input_file_sizes_mb": 14336,
        "local_size_limit_stdout_kb": 2097152,
        "looping_verification_time": 900, "looping_limit_default": 7200, "looping_limit_min_default": 7200,
        "kill_instruction_time": 60, "kill_instruction_filename": "pilot_kill_payload",
        "proxy_verification_time": 600, "payload_proxy_from_server": True,
        "disk_space_verification_time": 60, "memory_usage_verification_time": 60,
        "process_verification_time": 300, "output_verification_time": 300,
        "thread_check": 10, "cpu_check": 20, "timing_file": "pilot_timing.json", "error_log": "piloterrorlog.txt",
        "http_connect_timeout": 100, "http_maxtime": 120, "update_sleep": 120,
        "pandasecrets": "panda_secrets.json", "enable_delay_to_get_job": False, "load_factor": 1.2,
        "ssl_enable": True, "ssl_verify": True,
    },
    "payload": {
        "jobreport": "jobReport.json", "metadata": "metadata.xml", "payloadstdout": "payload.stdout",
        "payloadstderr": "payload.stderr", "checks": "looping", "error_report": "payload_error_report.json",
    },
    "harvester": {
        "job_request_file": "worker_requestjob.json", "kill_worker_file": "kill_worker",
        "jobs_list_file": "worker_pandaids.json", "pandajob_file": "HPCJobs.json",
        "workerattributes_file": "worker_attributes.json", "stageoutn_file": "event_status.dump.json",
    },
    "hpc": {"scratch": "/tmp/scratch/"},
    "file": {"checksum_type": "adler32"},
    "token": {"download_check": 3600},
}


@pytest.fixture
def clean_environ(monkeypatch):
    """os.environ without any PILOT_CFG_ variable (the host's must not leak into a test)."""
    for var in list(os.environ):
        if var.startswith(ENV_PREFIX):
            monkeypatch.delenv(var)
    return monkeypatch


def write_cfg(tmp_path, text, name="site.cfg"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_error(*args, **kwargs):
    with pytest.raises(PilotError) as caught:
        load_config(*args, **kwargs)
    assert caught.value.code == 1008
    return caught.value.diag


# --- defaults --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section,key,value", [(s, k, v) for s, keys in PILOT3_SECTION_9.items()
                                               for k, v in keys.items()])
def test_every_section_9_value_is_present_with_pilot3s_value_and_type(section, key, value):
    got = getattr(getattr(load_config(env={}), section), key)
    assert got == value and type(got) is type(value), (section, key, got)


def test_defaults_are_typed_by_their_text():
    cfg = load_config(env={})
    assert type(cfg.pilot.heartbeat) is int
    assert type(cfg.pilot.load_factor) is float and type(cfg.pilot.update_retry_initial) is float
    assert cfg.pilot.send_worker_node is True and cfg.pilot.enable_delay_to_get_job is False
    assert cfg.information.cache_dir == ""  # empty = optional string
    assert cfg.file.max_field_length == 1048576 and cfg.file.mv_stagein_mode == "copy"
    assert cfg.pilot.pandaserver.startswith("https://")
    for section, values in cfg.as_dict().items():
        for key, value in values.items():
            assert type(value) in (bool, int, float, str), (section, key, value)


def test_every_key_of_default_cfg_is_loaded():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(default_cfg_path(), encoding="utf-8")
    loaded = load_config(env={}).as_dict()
    assert sorted(loaded) == sorted(section.lower() for section in parser.sections())
    for section in parser.sections():
        assert sorted(loaded[section.lower()]) == sorted(parser[section]), section


def test_top_level_default_cfg_is_the_packaged_one():
    assert os.path.samefile(os.path.join(REPO, "default.cfg"), default_cfg_path())


def test_configuration_is_read_only():
    cfg = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pilot.heartbeat = 1
    with pytest.raises(AttributeError, match="no_such_key"):
        cfg.pilot.no_such_key
    with pytest.raises(AttributeError, match="nosuchsection"):
        cfg.nosuchsection
    copy = cfg.as_dict()
    copy["pilot"]["heartbeat"] = 1
    assert cfg.pilot.heartbeat == 1800


# --- --config FILE ---------------------------------------------------------------------------------------

def test_file_overrides_only_the_keys_it_names(tmp_path):
    path = write_cfg(tmp_path, "[Pilot]\nheartbeat = 300\nload_factor = 2\nssl_enable = no\n"
                               "[file]\nchecksum_type = md5\n")
    cfg = load_config(path, env={})
    assert cfg.pilot.heartbeat == 300 and type(cfg.pilot.heartbeat) is int
    assert cfg.pilot.load_factor == 2.0 and type(cfg.pilot.load_factor) is float
    assert cfg.pilot.ssl_enable is False
    assert cfg.file.checksum_type == "md5"
    assert cfg.pilot.debug_heartbeat == 60 and cfg.pilot.lost_heartbeat == 10800


def test_file_section_and_key_names_are_case_insensitive(tmp_path):
    cfg = load_config(write_cfg(tmp_path, "[PILOT]\nHeartBeat = 42\n[harvester]\nJOB_POLL_INTERVAL = 1.5\n"), env={})
    assert cfg.pilot.heartbeat == 42 and cfg.harvester.job_poll_interval == 1.5


@pytest.mark.parametrize("text,needle", [
    ("[Pilot]\nheartbeat = soon\n", "bad value 'soon' for [Pilot] heartbeat"),
    ("[Pilot]\nheartbeat = 1.5\n", "expected int"),
    ("[Pilot]\nload_factor = heavy\n", "expected float"),
    ("[Pilot]\nssl_verify = maybe\n", "expected bool"),
    ("[Pilot]\nheartbeats = 10\n", "unknown config key [Pilot] heartbeats"),
    ("[Pilots]\nheartbeat = 10\n", "unknown config section [Pilots]"),
    ("heartbeat = 10\n", "cannot read config file"),
    ("[Pilot]\nheartbeat = 1\nheartbeat = 2\n", "cannot read config file"),
])
def test_bad_file_overrides_are_1008_naming_the_file(tmp_path, text, needle):
    path = write_cfg(tmp_path, text)
    diag = load_error(path, env={})
    assert needle in diag and "site.cfg" in diag


def test_missing_or_undecodable_config_file(tmp_path):
    assert "cannot read config file" in load_error(str(tmp_path / "absent.cfg"), env={})
    bad = tmp_path / "latin1.cfg"
    bad.write_bytes(b"[Pilot]\npilotlog = caf\xe9.txt\n")
    assert "latin1.cfg" in load_error(str(bad), env={})


# --- PILOT_CFG_<SECTION>_<KEY> -------------------------------------------------------------------------------

@pytest.mark.parametrize("var,raw,section,key,value", [
    ("PILOT_CFG_PILOT_HEARTBEAT", "45", "pilot", "heartbeat", 45),
    ("PILOT_CFG_PILOT_HEARTBEAT", " 45 ", "pilot", "heartbeat", 45),
    ("PILOT_CFG_PILOT_LOAD_FACTOR", "3", "pilot", "load_factor", 3.0),
    ("PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL", "0.5", "harvester", "job_poll_interval", 0.5),
    ("PILOT_CFG_PILOT_SSL_ENABLE", "no", "pilot", "ssl_enable", False),
    ("PILOT_CFG_PILOT_SSL_ENABLE", "FALSE", "pilot", "ssl_enable", False),
    ("PILOT_CFG_PILOT_SSL_ENABLE", "0", "pilot", "ssl_enable", False),
    ("PILOT_CFG_PILOT_ENABLE_DELAY_TO_GET_JOB", "yes", "pilot", "enable_delay_to_get_job", True),
    ("PILOT_CFG_PILOT_ENABLE_DELAY_TO_GET_JOB", "On", "pilot", "enable_delay_to_get_job", True),
    ("PILOT_CFG_FILE_CHECKSUM_TYPE", "md5", "file", "checksum_type", "md5"),
    ("PILOT_CFG_FILE_MAX_FIELD_LENGTH", "100", "file", "max_field_length", 100),
    ("PILOT_CFG_INFORMATION_CACHE_DIR", "/var/cache/pilot", "information", "cache_dir", "/var/cache/pilot"),
    ("PILOT_CFG_file_Checksum_Type", "md5", "file", "checksum_type", "md5"),
    ("PILOT_CFG_HPC_SCRATCH", "1234", "hpc", "scratch", "1234"),  # a string stays a string
])
def test_env_override_is_cast_by_the_defaults_type(var, raw, section, key, value):
    got = getattr(getattr(load_config(env={var: raw}), section), key)
    assert got == value and type(got) is type(value)


def test_env_string_values_expand_variables(clean_environ, tmp_path):
    clean_environ.setenv("PILOT_TEST_SCRATCH_ROOT", str(tmp_path))
    cfg = load_config(env={"PILOT_CFG_HPC_SCRATCH": "$PILOT_TEST_SCRATCH_ROOT/ranks"})
    assert cfg.hpc.scratch == f"{tmp_path}/ranks"


def test_env_beats_file_which_beats_default(tmp_path):
    path = write_cfg(tmp_path, "[Pilot]\nheartbeat = 300\ndebug_heartbeat = 30\n")
    cfg = load_config(path, env={"PILOT_CFG_PILOT_HEARTBEAT": "45"})
    assert (cfg.pilot.heartbeat, cfg.pilot.debug_heartbeat, cfg.pilot.lost_heartbeat) == (45, 30, 10800)


def test_process_environment_is_used_by_default(clean_environ):
    clean_environ.setenv("PILOT_CFG_PILOT_HEARTBEAT", "77")
    clean_environ.setenv("PILOT_HOME", "/not/a/config/variable")  # other PILOT_* variables are not config
    assert load_config().pilot.heartbeat == 77
    assert load_config(env={}).pilot.heartbeat == 1800


def test_variables_without_the_prefix_are_ignored():
    cfg = load_config(env={"PILOT_HEARTBEAT": "1", "PILOT_PAYLOAD_PROXY_VERIFICATION": "x", "HEARTBEAT": "2"})
    assert cfg.pilot.heartbeat == 1800


@pytest.mark.parametrize("env,needles", [
    ({"PILOT_CFG_PILOT_HEARTBEAT": "soon"}, ["'soon'", "[Pilot] heartbeat", "expected int",
                                             "PILOT_CFG_PILOT_HEARTBEAT"]),
    ({"PILOT_CFG_PILOT_HEARTBEAT": ""}, ["expected int"]),
    ({"PILOT_CFG_PILOT_HEARTBEAT": "0x10"}, ["expected int"]),
    ({"PILOT_CFG_FILE_TRANSFER_TIMEOUT_BASE": "fast"}, ["expected float", "[File] transfer_timeout_base"]),
    ({"PILOT_CFG_PILOT_SSL_VERIFY": "maybe"}, ["expected bool", "[Pilot] ssl_verify"]),
    ({"PILOT_CFG_PILOT_SSL_VERIFY": ""}, ["expected bool"]),
    ({"PILOT_CFG_PILOT_NOSUCHKEY": "1"}, ["unknown config key [Pilot] NOSUCHKEY", "PILOT_CFG_PILOT_NOSUCHKEY"]),
    ({"PILOT_CFG_NOSECTION_X": "1"}, ["unknown config section [NOSECTION]"]),
    ({"PILOT_CFG_PILOT": "1"}, ["unknown config key"]),
    ({"PILOT_CFG_": "1"}, ["unknown config section"]),
])
def test_bad_env_overrides_are_1008_with_clear_text(env, needles):
    diag = load_error(env=env)
    for needle in needles:
        assert needle in diag, (needle, diag)


def test_a_bad_env_value_is_caught_even_when_the_file_is_fine(tmp_path):
    path = write_cfg(tmp_path, "[Pilot]\nheartbeat = 300\n")
    assert "expected int" in load_error(path, env={"PILOT_CFG_PILOT_LOST_HEARTBEAT": "3h"})


# --- declared ranges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("var,raw,needle", [
    ("PILOT_CFG_PILOT_HEARTBEAT", "0", "out of range for [Pilot] heartbeat: allowed 1 to"),
    ("PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME", "0", "out of range"),
    ("PILOT_CFG_PILOT_KILL_GRACE", "-5", "out of range for [Pilot] kill_grace"),
    ("PILOT_CFG_PILOT_ABORT_GRACE", "0", "out of range"),
    ("PILOT_CFG_FILE_TRANSFER_WIDTH", "0", "out of range"),
    ("PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL", "0", "out of range"),
    ("PILOT_CFG_PILOT_LOAD_FACTOR", "nan", "expected float"),
    ("PILOT_CFG_PILOT_UPDATE_RETRY_MAX", "inf", "expected float"),
    ("PILOT_CFG_FILE_CHECKSUM_TYPE", "crc32", "not allowed for [File] checksum_type: allowed adler32, md5"),
    ("PILOT_CFG_PAYLOAD_JOBREPORT", "../../etc/passwd", "a file name inside the work dir"),
    ("PILOT_CFG_PAYLOAD_JOBREPORT", "", "must not be empty"),
    ("PILOT_CFG_PILOT_PANDASERVER", "ftp://x", "http:// or https:// URL"),
    ("PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL", "400", "getjob_retry_initial (400.0) must not exceed getjob_retry_max"),
])
def test_values_outside_their_declared_range_are_refused(var, raw, needle):
    assert needle in load_error(env={var: raw})


def test_every_setting_declares_a_range_and_the_defaults_are_inside_it():
    from pilot.config import declared, describe
    from pilot.config_sections import SECTIONS

    cfg = load_config(env={}).as_dict()
    for section, cls in SECTIONS.items():
        for key, (kind, meta) in declared(cls).items():
            assert kind in (bool, int, float, str), (section, key)
            assert kind is bool or meta, f"[{section}] {key} declares no range, choices or kind"
            assert describe(meta), (section, key)
            assert type(cfg[section.lower()][key]) is kind
            if kind in (int, float):
                assert meta["range"][0] is not None and meta["range"][1] is not None, (section, key)
