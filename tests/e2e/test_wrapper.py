"""The batch wrapper, run for real with the real pilot: signals, exit codes, tarball mode, failures."""

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.e2e.pilotrun import REPO, job_definition, write_job

WRAPPER = os.path.join(REPO, "wrapper", "runpilot.sh")
ENV = dict(os.environ, PILOT_PYTHON=sys.executable)


def start(tmp_path, *args, env=None, new_session=True):
    return subprocess.Popen(["bash", WRAPPER, *args], cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or ENV, start_new_session=new_session,
                            stdin=subprocess.DEVNULL)


def sleeping_job(tmp_path, jobdir, panda_id):
    write_job(jobdir, job_definition(panda_id, pars="-c 'sleep 300'"))
    return ["-q", "LOCAL", "--job-source", f"local:{jobdir}", "-a", str(tmp_path)]


def wait_for_payload(proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        sleepers = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "sleep"]
        if sleepers:
            return sleepers
        time.sleep(0.05)
    raise AssertionError("payload did not start")


def nothing_left(pids):
    return not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_success_and_pass_through(tmp_path):
    proc = start(tmp_path, "-q", "LOCAL", "-a", str(tmp_path), "--log-format", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "runpilot: pilot exit 0 after" in err and "queue LOCAL" in err
    assert '"level": "INFO"' in err  # --log-format json reached the pilot
    assert not [d for d in os.listdir(tmp_path) if d.startswith("runpilot.")]  # private dir removed


def test_sigterm_to_wrapper_only(tmp_path, jobdir):
    proc = start(tmp_path, *sleeping_job(tmp_path, jobdir, 1001))
    sleepers = wait_for_payload(proc)
    tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert time.time() - sent < 15
    assert "forwarding to the pilot" in err and "runpilot: pilot exit 143" in err
    assert "pilotErrorCode 1201" in err
    assert nothing_left(tree + [p.pid for p in sleepers])


def test_sigterm_to_whole_job_like_scancel(tmp_path, jobdir):
    proc = start(tmp_path, *sleeping_job(tmp_path, jobdir, 1002))
    wait_for_payload(proc)
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)  # Slurm: SIGCONT then SIGTERM to every process of the job
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]  # not 146
    assert "caught SIGCONT" in err


def test_pilot_ignoring_sigterm_is_killed_after_grace(tmp_path):
    stub = tmp_path / "stub"
    (stub / "pilot").mkdir(parents=True)
    (stub / "pilot.py").write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                   "print('stubborn pilot up', flush=True)\ntime.sleep(300)\n")
    proc = start(tmp_path, "--piloturl", str(stub), "--grace", "2", "-q", "X")
    assert proc.stdout.readline().strip() == "stubborn pilot up"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 137 and "SIGKILL" in err, err


def test_missing_python_dependencies(tmp_path):
    fake = tmp_path / "python-without-deps"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    fake.chmod(0o755)
    proc = start(tmp_path, "--python", str(fake), "-q", "LOCAL")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "lacks the pilot's dependencies" in err


def test_not_enough_space(tmp_path):
    proc = start(tmp_path, "--min-space-mb", str(10 ** 9), "-q", "LOCAL")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 69 and "not enough local space" in err


def test_tarball_mode(tmp_path):
    made = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_dist.py"), "--out",
                           str(tmp_path / "dist")], capture_output=True, text=True, check=True, timeout=60)
    proc = start(tmp_path, "--piloturl", made.stdout.strip(), "-q", "LOCAL", "-a", str(tmp_path / "run"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "version 0." in err and "/runpilot." in err  # the unpacked copy ran, not the checkout
