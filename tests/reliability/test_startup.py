"""Start-up failures through a real pilot: each ends with its code's exit status and one clear line on stderr, no
traceback, before any job is taken and (for bad settings) before anything is created."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.e2e.pilotrun import PILOT


def _start(cwd, *extra, env=None, prefix=()):
    full = dict(os.environ, **(env or {}))
    proc = subprocess.run([*prefix, sys.executable, PILOT, "-q", "LOCAL", *extra], capture_output=True, text=True,
                          timeout=60, cwd=str(cwd), env=full, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _one_line(proc):
    lines = [line for line in proc.stderr.splitlines() if "| ERROR" in line or line.startswith("pilot:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("env,needle", [
    ({"PANDAPILOT_LIFETIME": "abc"}, "PANDAPILOT_LIFETIME='abc' is not a positive number"),
    ({"PANDAPILOT_LIFETIME": "-5"}, "PANDAPILOT_LIFETIME='-5'"),
    ({"PILOT_CFG_PILOT_HEARTBEAT": "0"}, "[Pilot] heartbeat: allowed 1 to"),
    ({"PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME": "0"}, "[Pilot] memory_usage_verification_time"),
    ({"PILOT_CFG_PILOT_KILL_GRACE": "-1"}, "out of range for [Pilot] kill_grace"),
    ({"PILOT_CFG_PILOT_ABORT_GRACE": "1e9"}, "expected int"),
    ({"PILOT_CFG_FILE_TRANSFER_WIDTH": "0"}, "[File] transfer_width"),
    ({"PILOT_CFG_PAYLOAD_JOBREPORT": "../x"}, "a file name inside the work dir"),
])
def test_bad_environment_values_stop_the_pilot_with_65_and_one_line(tmp_path, env, needle):
    proc = _start(tmp_path, "-a", str(tmp_path / "run"), env=env)
    assert proc.returncode == 65 and needle in _one_line(proc) and "1008" in proc.stderr
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run"), "nothing created before the check"


def test_read_only_current_dir_without_a(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    # a read-only bind mount: the tests run as root in CI, for whom a mode of 0555 is no obstacle
    prefix = (shutil.which("bwrap"), "--bind", "/", "/", "--ro-bind", str(ro), str(ro), "--dev", "/dev",
              "--proc", "/proc", "--chdir", str(ro))
    proc = _start(ro, prefix=prefix)
    assert proc.returncode == 66 and "give -a DIR" in _one_line(proc) and "1199" in proc.stderr
    assert os.listdir(ro) == []


def test_deleted_current_dir_and_a_that_is_a_file(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    proc = subprocess.run(f"cd {gone} && rmdir {gone} && exec {sys.executable} {PILOT} -q LOCAL", shell=True,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 66 and "Traceback" not in proc.stderr and "give -a DIR" in _one_line(proc)
    (tmp_path / "afile").write_text("")
    proc = _start(tmp_path, "-a", str(tmp_path / "afile"))
    assert proc.returncode == 66 and "cannot create main work dir" in _one_line(proc)


def test_bad_or_missing_config_file(tmp_path):
    cfg = tmp_path / "site.cfg"
    cfg.write_text("[Pilot]\nkill_grace = -3\n")
    proc = _start(tmp_path, "-a", str(tmp_path / "run"), "--config", str(cfg))
    assert proc.returncode == 65 and "kill_grace" in _one_line(proc)
    proc = _start(tmp_path, "-a", str(tmp_path / "run"), "--config", str(tmp_path / "absent.cfg"))
    assert proc.returncode == 65 and "cannot read config file" in _one_line(proc)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP"])
def test_signal_during_start_up_is_one_line_and_the_signals_status(tmp_path, signame):
    """The pilot is held in start-up by a queue-data server that accepts and never answers; a signal then ends
    it with 128+N and one line (before the pipeline's handlers exist), not a traceback."""
    import signal
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/queuedata.json"
        proc = subprocess.Popen([sys.executable, PILOT, "-q", "SLOWQ", "--queuedata-url", url, "-a", str(tmp_path)],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=str(tmp_path),
                                stdin=subprocess.DEVNULL)
        server.settimeout(30)
        conn, _addr = server.accept()  # the pilot is asking for its queue data: it is in start-up
        proc.send_signal(getattr(signal, signame))
        _out, err = proc.communicate(timeout=30)
        conn.close()
    finally:
        server.close()
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert "Traceback" not in err and "during start-up" in err and err.count("\n") <= 3, err
