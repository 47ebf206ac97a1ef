"""The batch wrapper wrapper/runpilot.sh, run for real: with the real pilot (built-in job and local job files) and,
where the pilot's own behaviour is not the point, with a small stand-in pilot given through --piloturl DIR."""

import base64
import http.server
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time

import psutil
import pytest

from tests.e2e.pilotrun import REPO, PilotRun, alive_pids, job_definition, write_job

WRAPPER = os.path.join(REPO, "wrapper", "runpilot.sh")
ENV = dict(os.environ, PILOT_PYTHON=sys.executable)
for _name in ("X509_USER_PROXY", "OIDC_AUTH_TOKEN", "PANDA_AUTH_TOKEN", "OIDC_AUTH_DIR", "PANDA_AUTH_DIR", "TMPDIR",
              "RUNPILOT_GRACE", "RUNPILOT_MIN_SPACE_MB", "RUNPILOT_WORKDIR_BASE", "RUNPILOT_KEEP"):
    ENV.pop(_name, None)

pytestmark = pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")


STARTED = []


@pytest.fixture(autouse=True)
def no_leftovers():
    """Whatever a failed test leaves running (wrapper, pilot, payload) is killed."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            try:
                victims = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                victims = []
            for victim in victims:
                try:
                    victim.kill()
                except psutil.NoSuchProcess:
                    pass
            proc.communicate()


def _default_signals(ignored=()):
    """For the child: SIGINT/SIGQUIT as a batch system leaves them (a test runner started from a background job
    has them ignored, and bash cannot trap a signal ignored at its start), except those in `ignored`."""
    def reset():
        for sig in (signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    return reset


def start(cwd, *args, env=None, ignored=()):
    """The wrapper in its own session (as a batch job's shell), stdout and stderr captured."""
    proc = subprocess.Popen(["bash", WRAPPER, *args], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or ENV, start_new_session=True, stdin=subprocess.DEVNULL,
                            preexec_fn=_default_signals(ignored))
    STARTED.append(proc)
    return proc


def finish(proc, timeout=30):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def run(cwd, *args, env=None, timeout=30):
    proc = start(cwd, *args, env=env)
    out, err = finish(proc, timeout)
    return proc.returncode, out, err


def summary(err):
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith("runpilot: "), err[-3000:]
    return last


def read_line(proc, timeout=20):
    """The next line of the wrapper's stdout, without hanging the test if it never comes."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output from the pilot"
    return proc.stdout.readline()


def private_dirs(folder):
    return [name for name in os.listdir(folder) if name.startswith("runpilot.")]


def stub_pilot(tmp_path, body, name="stub"):
    """A stand-in pilot: DIR/pilot.py (the given code) and an empty DIR/pilot/ package dir."""
    folder = tmp_path / name
    (folder / "pilot").mkdir(parents=True)
    (folder / "pilot.py").write_text(body)
    return folder


def sleeping_job(tmp_path, jobdir, panda_id):
    write_job(jobdir, job_definition(panda_id, pars="-c 'sleep 300'"))
    return ["-q", "LOCAL", "--job-source", f"local:{jobdir}", "-a", str(tmp_path)]


def tree(pid):
    return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]


def wait_for_child(proc, name, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = []
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if child.name() == name:
                    found.append(child)
            except psutil.NoSuchProcess:  # a short-lived helper of the wrapper
                pass
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {name} process under the wrapper")


def nothing_left(pids, timeout=5):
    deadline = time.time() + timeout
    while True:
        alive = alive_pids(pids)
        if not alive or time.time() > deadline:
            return not alive
        time.sleep(0.05)


# --- success path -----------------------------------------------------------------------------------------------

def test_builtin_job_succeeds_with_summary_line(tmp_path):
    env = dict(ENV)
    if os.path.exists(os.path.join(REPO, ".venv", "bin", "python")):
        env.pop("PILOT_PYTHON")  # then the wrapper must find the checkout's .venv by itself
    proc = start(tmp_path, "-q", "LOCAL", "--job-source", "local", "-a", "run", "--log-format", "json", env=env)
    out, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert summary(err).startswith("runpilot: pilot exit 0 after ") and ", queue LOCAL, host " in summary(err)
    assert '"level": "INFO"' in err  # --log-format json reached the pilot
    if "PILOT_PYTHON" not in env:
        assert "(from the pilot's .venv)" in err
    result = PilotRun(str(tmp_path / "run"), proc, out, err)  # the relative -a went to the launch dir
    assert result.main
    (panda_id,) = os.listdir(os.path.join(result.main, "reports"))
    assert result.final(panda_id)["state"] == "finished"
    assert private_dirs(tmp_path) == []  # private work dir removed


def test_pass_through_options_and_paths(tmp_path):
    stub = stub_pilot(tmp_path, "import json, os, sys\n"
                                "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}))\n")
    (tmp_path / "pandaJobData.out").write_text("{}")
    code, out, err = run(tmp_path, "--piloturl", str(stub), "--keep", "--mute", "--container",
                         "--pilotversion", "3.9", "--pythonversion", "3", "-q", "Q1", "-j", "managed",
                         "-i", "PR", "-t", "--queuedata-url", "qd.json", "--queuedata-url=https://h/q.json",
                         "--job-source", "local:jobs", "-a", "/abs/dir", "--weird-option", "x", "--",
                         "--config", "kept.cfg")
    assert code == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["argv"] == ["-q", "Q1", "-j", "managed", "-i", "PR", "-t", "--queuedata-url",
                            str(tmp_path / "qd.json"), "--queuedata-url=https://h/q.json", "--job-source",
                            f"local:{tmp_path / 'jobs'}", "-a", "/abs/dir", "--weird-option", "x", "--config",
                            "kept.cfg"]
    kept = private_dirs(tmp_path)
    assert len(kept) == 1 and seen["cwd"] == str(tmp_path / kept[0])  # --keep, and the pilot ran in it
    assert (tmp_path / kept[0] / "pandaJobData.out").exists()
    assert "option --mute is not used by this wrapper: ignored" in err
    assert "X509 proxy: not checked (-t)" in err
    assert summary(err).startswith("runpilot: pilot exit 0 after ")


def test_harvester_mode_runs_in_the_launch_dir(tmp_path):
    stub = stub_pilot(tmp_path, "import json, os, sys\n"
                                "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
                                " 'workdir': os.environ.get('HARVESTER_PILOT_WORKDIR')}))\n")
    code, out, err = run(tmp_path, "--harvester", "13", "--piloturl", str(stub), "-q", "Q", "-z",
                         "--harvester-submit-mode", "PUSH")
    assert code == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"argv": ["-q", "Q", "-z", "--harvester-submit-mode", "PUSH"], "cwd": str(tmp_path),
                    "workdir": str(tmp_path)}
    assert private_dirs(tmp_path) == []


def test_exit_code_and_credentials_are_reported(tmp_path):
    stub = stub_pilot(tmp_path, "import json, os, sys\n"
                                "names = ('X509_USER_PROXY', 'OIDC_AUTH_DIR')\n"
                                "print(json.dumps({k: os.environ.get(k) for k in names}))\n"
                                "sys.exit(65)\n")
    env = dict(ENV, OIDC_AUTH_TOKEN="token.jwt")
    exp = int(time.time()) + 2 * 3600 + 600
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    (tmp_path / "token.jwt").write_text(f"eyJhbGciOiJub25lIn0.{payload}.sig\n")
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=proxy",
                        "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "proxy.pem")],
                       check=True, capture_output=True, timeout=30)
        env["X509_USER_PROXY"] = "proxy.pem"
    code, out, err = run(tmp_path, "--piloturl", str(stub), "-q", "Q2", env=env)
    assert code == 65, err[-3000:]
    assert summary(err).startswith("runpilot: pilot exit 65 after ")
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["OIDC_AUTH_DIR"] == str(tmp_path)  # a relative token stays findable from the private dir
    assert f"token {tmp_path}/token.jwt: 2 h " in err
    if "X509_USER_PROXY" in env:
        assert seen["X509_USER_PROXY"] == str(tmp_path / "proxy.pem")
        assert f"X509 proxy {tmp_path}/proxy.pem valid until " in err and " h " in err


# --- signals ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code, pilot_error", [(signal.SIGTERM, 143, 1201), (signal.SIGINT, 130, 1208)])
def test_signal_to_the_wrapper_only_is_forwarded(tmp_path, jobdir, sig, code, pilot_error):
    proc = start(tmp_path, *sleeping_job(tmp_path, jobdir, 1001))
    payload = wait_for_child(proc, "sleep")
    pids = tree(proc.pid)
    sent = time.time()
    proc.send_signal(sig)  # only the wrapper (scancel --batch, or a batch system that signals the job's shell)
    out, err = finish(proc)
    took = time.time() - sent
    assert proc.returncode == code, err[-3000:]
    assert took < 10
    assert f"caught {sig.name}: forwarded it to the pilot" in err
    assert summary(err).startswith(f"runpilot: pilot exit {code} ({sig.name}) after ")
    final = PilotRun(str(tmp_path), proc, out, err).final(1001)
    assert final["state"] == "failed" and final["pilotErrorCode"] == pilot_error
    assert nothing_left(pids + [p.pid for p in payload])


def test_a_signal_ignored_at_start_is_reported(tmp_path):
    """bash cannot trap a signal that was ignored when it started: the wrapper says so instead of losing it."""
    proc = start(tmp_path, "--help", ignored=(signal.SIGINT,))
    out, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "WARNING: SIGINT was ignored when the wrapper started and cannot be trapped" in err
    assert "SIGQUIT was ignored" not in err and "SIGTERM was ignored" not in err
    proc = start(tmp_path, "--help")
    assert "was ignored when the wrapper started" not in finish(proc)[1]


def test_sigterm_to_the_whole_job_like_scancel(tmp_path, jobdir):
    proc = start(tmp_path, *sleeping_job(tmp_path, jobdir, 1002))
    payload = wait_for_child(proc, "sleep")
    pids = tree(proc.pid)
    # Slurm's scancel: SIGCONT then SIGTERM to every process of the job (wrapper, pilot and payload)
    os.killpg(proc.pid, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGTERM)
    for p in payload:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:  # the pilot was quicker
            pass
    out, err = finish(proc)
    assert proc.returncode == 143, err[-3000:]  # the pilot's code, not 146 (128 + SIGCONT)
    assert summary(err).startswith("runpilot: pilot exit 143 (SIGTERM) after ")
    assert PilotRun(str(tmp_path), proc, out, err).final(1002)["state"] == "failed"
    assert nothing_left(pids)


def test_signals_racing_a_quick_pilot(tmp_path):
    """A pilot that ends at once on SIGTERM, while the wrapper is still handling the signal: the wrapper must
    neither stay blocked (bash can miss the end of a child that ends while a trap runs) nor lose the status.
    Over 10 s: sixteen wrapper runs (eight rounds of two ways to signal), each starting a pilot."""
    stub = stub_pilot(tmp_path, "import signal, sys, time\n"
                                "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
                                "print('up', flush=True)\n"
                                "time.sleep(60)\n")
    for round_ in range(8):
        for how in ("scancel", "wrapper twice"):
            proc = start(tmp_path, "--piloturl", str(stub), "--grace", "20", "-q", "X")
            assert read_line(proc).strip() == "up"
            sent = time.time()
            if how == "scancel":
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGTERM)
            out, err = finish(proc)
            assert (proc.returncode, how) == (143, how), err[-3000:]
            assert time.time() - sent < 5, (how, err[-3000:])


def test_pilot_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    stub = stub_pilot(tmp_path, "import signal, subprocess, time\n"
                                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                                "print('stubborn pilot up', child.pid, flush=True)\n"
                                "time.sleep(300)\n")
    proc = start(tmp_path, "--piloturl", str(stub), "--grace", "1", "-q", "X")
    line = read_line(proc).split()
    assert line[:3] == ["stubborn", "pilot", "up"]
    pids = tree(proc.pid)
    assert int(line[3]) in pids
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 137, err[-3000:]
    assert 1 <= time.time() - sent < 8
    assert "still running 1 s after SIGTERM: SIGKILL" in err
    assert summary(err).startswith("runpilot: pilot exit 137 (SIGKILLed by the wrapper 1 s after SIGTERM) after ")
    assert nothing_left(pids)  # the pilot and the process it started
    assert private_dirs(tmp_path) == []


# --- failures before the pilot starts ---------------------------------------------------------------------------

def test_python_without_the_dependencies(tmp_path):
    fake = tmp_path / "python-without-deps"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # no site-packages: no psutil, requests
    fake.chmod(0o755)
    code, out, err = run(tmp_path, "--python", str(fake), "-q", "LOCAL")
    assert code == 1
    assert "cannot import the pilot's dependencies psutil and requests" in err and "pip install" in err
    assert summary(err).startswith("runpilot: wrapper exit 1, pilot not started (")
    assert private_dirs(tmp_path) == []


def test_signal_before_the_pilot_starts(tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/sh\nsleep 5\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    stub = stub_pilot(tmp_path, "open('pilot-ran', 'w').close()\n")
    proc = start(tmp_path, "--python", str(slow), "--piloturl", str(stub), "-q", "Q")
    (checking,) = wait_for_child(proc, "sleep")  # the wrapper is checking the Python
    sent = time.time()
    proc.send_signal(signal.SIGUSR1)
    out, err = finish(proc)
    checking.kill()  # what the stand-in Python left
    assert proc.returncode == 128 + signal.SIGUSR1, err[-3000:]
    assert time.time() - sent < 3  # acted on at once, not after the check
    assert "caught SIGUSR1 before the pilot started: exiting" in err
    assert summary(err).startswith("runpilot: wrapper exit 138, pilot not started (SIGUSR1 before the pilot started)")
    assert not (tmp_path / "pilot-ran").exists() and private_dirs(tmp_path) == []


def test_no_python(tmp_path):
    code, out, err = run(tmp_path, "--python", str(tmp_path / "nope"), "-q", "LOCAL")
    assert code == 1 and "no Python: " in err


def test_not_enough_space(tmp_path):
    code, out, err = run(tmp_path, "--min-space-mb", str(10 ** 12), "-q", "LOCAL")
    assert code == 69
    assert "not enough local space in " in err and f"{10 ** 12} MB needed" in err
    assert "wrapper exit 69, pilot not started" in summary(err)


def test_usage(tmp_path):
    code, out, err = run(tmp_path, "--job-source", "local")
    assert code == 1 and "no queue: -q QUEUE is required" in err and "usage: runpilot.sh" in err
    code, out, err = run(tmp_path, "--help")
    assert code == 0 and out.startswith("runpilot.sh - batch wrapper") and "--piloturl" in out


# --- pilot code from a tarball ----------------------------------------------------------------------------------

def make_tarball(path, top=""):
    """The repo's pilot (pilot.py, pilot/, default.cfg) as a tarball, optionally under one top directory."""
    def skip_cache(info):
        return None if "__pycache__" in info.name else info

    with tarfile.open(path, "w:gz") as tar:
        tar.add(os.path.join(REPO, "pilot.py"), arcname=top + "pilot.py")
        tar.add(os.path.join(REPO, "pilot"), arcname=top + "pilot", filter=skip_cache)
        tar.add(os.path.join(REPO, "default.cfg"), arcname=top + "default.cfg")
    return path


@pytest.mark.parametrize("top", ["", "pilot3/"])
def test_tarball_mode(tmp_path, top):
    tarball = make_tarball(tmp_path / "pilot-test.tar.gz", top)
    code, out, err = run(tmp_path, "--piloturl", str(tarball), "-q", "LOCAL", "--job-source", "local", "-a", "run")
    assert code == 0, err[-3000:]
    code_dir = [line for line in err.splitlines() if "[wrapper] pilot code in " in line][0]
    assert "/runpilot." in code_dir and "/pilot-code" in code_dir  # the unpacked copy ran, not the checkout
    assert f"{code_dir.split('pilot code in ')[1].split(',')[0]}/pilot.py -q LOCAL" in err
    assert summary(err).startswith("runpilot: pilot exit 0 after ")
    assert private_dirs(tmp_path) == []


def test_tarball_over_http(tmp_path):
    tarball = make_tarball(tmp_path / "pilot-test.tar.gz")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
        code, out, err = run(tmp_path, "--piloturl", url, "-q", "LOCAL", "--job-source", "local", "-a", "run")
        assert code == 0, err[-3000:]
        assert f"downloading the pilot from {url}" in err
        code, out, err = run(tmp_path, "--piloturl", url + ".missing", "-q", "LOCAL")
        assert code == 64 and "cannot get the pilot from " in err
    finally:
        server.shutdown()
        server.server_close()


def test_tarball_without_pilot(tmp_path):
    (tmp_path / "junk").write_text("not a pilot")
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "junk", arcname="junk")
    code, out, err = run(tmp_path, "--piloturl", "bad.tar.gz", "-q", "LOCAL")
    assert code == 64 and "no pilot.py in the pilot code from bad.tar.gz" in err
    assert private_dirs(tmp_path) == []
