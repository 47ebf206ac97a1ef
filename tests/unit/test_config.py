"""Typed configuration with file and environment overrides."""

import pytest

from pilot.config import load_config
from pilot.errors import PilotError

# Pilot 3 values (spec §9) that must be kept
PILOT3 = {"heartbeat": 1800, "debug_heartbeat": 60, "lost_heartbeat": 10800, "pilot_heartbeat": 60,
          "free_space_limit_mb": 2048, "free_space_limit_running_mb": 1024, "maximum_output_file_size_mb": 512000,
          "maximum_input_file_sizes_mb": 14336, "local_size_limit_stdout_kb": 2097152,
          "looping_verification_time": 900, "looping_limit_default": 7200, "looping_limit_min_default": 7200,
          "kill_instruction_time": 60, "proxy_verification_time": 600, "disk_space_verification_time": 60,
          "memory_usage_verification_time": 60, "process_verification_time": 300, "output_verification_time": 300,
          "thread_check": 10, "cpu_check": 20, "http_connect_timeout": 100, "http_maxtime": 120,
          "update_sleep": 120, "load_factor": 1.2, "pilotlog": "pilotlog.txt", "timing_file": "pilot_timing.json",
          "kill_instruction_filename": "pilot_kill_payload", "pandasecrets": "panda_secrets.json"}


def test_pilot3_values_and_types():
    cfg = load_config(env={})
    for key, value in PILOT3.items():
        assert getattr(cfg.pilot, key) == value, key
        assert type(getattr(cfg.pilot, key)) is type(value), key
    assert cfg.payload.payloadstdout == "payload.stdout" and cfg.file.checksum_type == "adler32"
    assert cfg.harvester.workerattributes_file == "worker_attributes.json"
    assert cfg.harvester.stageoutn_file == "event_status.dump.json" and cfg.token.download_check == 3600
    assert cfg.pilot.ssl_verify is True


def test_file_override(tmp_path):
    path = tmp_path / "site.cfg"
    path.write_text("[Pilot]\nheartbeat = 300\n[file]\nchecksum_type = md5\n")
    cfg = load_config(str(path), env={})
    assert cfg.pilot.heartbeat == 300 and cfg.file.checksum_type == "md5"
    assert cfg.pilot.debug_heartbeat == 60


def test_env_override_is_typed_and_beats_the_file(tmp_path):
    path = tmp_path / "site.cfg"
    path.write_text("[Pilot]\nheartbeat = 300\n")
    cfg = load_config(str(path), env={"PILOT_CFG_PILOT_HEARTBEAT": "45", "PILOT_CFG_PILOT_SSL_ENABLE": "no",
                                      "PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL": "0.5", "PILOT_HOME": "/x"})
    assert cfg.pilot.heartbeat == 45 and cfg.pilot.ssl_enable is False
    assert cfg.harvester.job_poll_interval == 0.5


@pytest.mark.parametrize("env,text", [({"PILOT_CFG_PILOT_HEARTBEAT": "soon"}, "expected int"),
                                      ({"PILOT_CFG_PILOT_NOSUCHKEY": "1"}, "unknown config key"),
                                      ({"PILOT_CFG_NOSECTION_X": "1"}, "unknown config section"),
                                      ({"PILOT_CFG_PILOT_SSL_VERIFY": "maybe"}, "expected bool")])
def test_bad_overrides_are_errors(env, text):
    with pytest.raises(PilotError) as err:
        load_config(env=env)
    assert err.value.code == 1008 and text in err.value.diag


def test_unreadable_config_file(tmp_path):
    with pytest.raises(PilotError) as err:
        load_config(str(tmp_path / "missing.cfg"), env={})
    assert err.value.code == 1008
    bad = tmp_path / "bad.cfg"
    bad.write_text("no section header\n")
    with pytest.raises(PilotError):
        load_config(str(bad), env={})


def test_read_only():
    cfg = load_config(env={})
    with pytest.raises(AttributeError):
        cfg.pilot.heartbeat = 1
    with pytest.raises(AttributeError):
        cfg.pilot.no_such_key
