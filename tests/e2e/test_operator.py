"""Operator experience: `pilot --check`, the installable package, the reproducible tarball, JSON logs."""

import glob
import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.e2e.pilotrun import PILOT, REPO


def check(tmp_path, *extra, env=None, path=None):
    environ = dict(os.environ, **(env or {}))
    if path is not None:
        environ["PATH"] = path
    return subprocess.run([sys.executable, PILOT, "--check", "-a", str(tmp_path), *extra], capture_output=True,
                          text=True, timeout=60, env=environ, cwd=str(tmp_path))


def queue(tmp_path, **fields):
    data = {"nickname": "CHK", "state": "ACTIVE", "status": "online", "copytools": {"mv": {}},
            "acopytools": {"default": ["mv"]}}
    data.update(fields)
    path = tmp_path / "queue.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_check_passes_on_a_good_node(tmp_path):
    done = check(tmp_path, "-q", "LOCAL")
    assert done.returncode == 0, done.stdout + done.stderr
    for item in ("python", "requests", "psutil", "free disk", "memory", "cores", "queue data", "copytool mv"):
        assert item in done.stdout
    assert "node can run jobs of queue LOCAL" in done.stdout


def test_check_finds_missing_container_runtime(tmp_path):
    qd = queue(tmp_path, container_type="bwrap:pilot")
    missing = check(tmp_path, "-q", "CHK", "--queuedata-url", qd, path=str(tmp_path / "empty-bin"))
    assert missing.returncode == 1 and "container bwrap" in missing.stdout and "[1360]" in missing.stdout
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\nexit 0\n")
    (fake / "bwrap").chmod(0o755)
    present = check(tmp_path, "-q", "CHK", "--queuedata-url", qd, path=str(fake))
    assert present.returncode == 0, present.stdout


def test_check_finds_missing_copytool(tmp_path):
    qd = queue(tmp_path, copytools={"xrdcp": {}}, acopytools={"default": ["xrdcp"]})
    done = check(tmp_path, "-q", "CHK", "--queuedata-url", qd, path=str(tmp_path / "empty-bin"))
    assert done.returncode == 1 and "xrdcp not on PATH" in done.stdout


def test_check_exit_codes(tmp_path):
    """Each failed check has its Pilot 3 exit code. Over 10 s on a loaded machine: five pilot --check runs, one
    after the other (~1 s each idle)."""
    assert check(tmp_path, "-q", "X", "--queuedata-url", str(tmp_path / "none.json")).returncode == 71
    assert check(tmp_path, "-q", "CHK", "--queuedata-url", queue(tmp_path, state="OFFLINE")).returncode == 78
    full = check(tmp_path, "-q", "LOCAL", env={"PILOT_CFG_PILOT_FREE_SPACE_LIMIT_MB": str(10 ** 9)})
    assert full.returncode == 69 and "[1098]" in full.stdout
    server = check(tmp_path, "-q", "LOCAL", "--url", "http://127.0.0.1:9")
    assert server.returncode == 79 and "PanDA server" in server.stdout
    from tests.unit.test_proxy import make_cert

    expired = check(tmp_path, "-q", "LOCAL", env={"X509_USER_PROXY": make_cert(tmp_path / "p", -10)})
    assert expired.returncode == 68 and "[1373]" in expired.stdout


def test_json_log_format(tmp_path):
    done = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path), "--log-format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "thread", "logger", "message"} <= set(line) for line in lines)
    pilotlog = glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "pilotlog.txt"))[0]
    assert all(json.loads(line)["message"] for line in open(pilotlog))


def test_tarball_is_reproducible_and_runs(tmp_path):
    first = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_dist.py"), "--out",
                            str(tmp_path / "a")], capture_output=True, text=True, timeout=60, check=True)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_dist.py"), "--out", str(tmp_path / "b")],
                   capture_output=True, text=True, timeout=60, check=True)
    tarball = first.stdout.strip()
    assert open(tarball, "rb").read() == open(tarball.replace("/a/", "/b/"), "rb").read()
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        tar.extractall(unpacked)
    assert {"pilot.py", "PILOTVERSION", "default.cfg", "pilot/default.cfg", "pilot/main.py"} <= set(names)
    run = subprocess.run([sys.executable, str(unpacked / "pilot.py"), "-q", "LOCAL", "-a", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    version = subprocess.run([sys.executable, str(unpacked / "pilot.py"), "--version"], capture_output=True,
                             text=True, timeout=30)
    assert version.stdout.strip() == "pilot " + (unpacked / "PILOTVERSION").read_text().strip()


@pytest.mark.slow
def test_pip_install_into_fresh_venv_and_run_console_script(tmp_path):
    """The package installs into a fresh venv and its console script runs a job. Over 10 s: a venv is made and pip
    builds and installs the package from a copy of the source (15-40 s)."""
    import shutil

    source = tmp_path / "src"  # a copy: pip builds in the source tree
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "dist"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    run = subprocess.run([str(venv / "bin" / "pilot"), "-q", "LOCAL", "-a", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    finals = glob.glob(os.path.join(str(tmp_path), "run", "PanDA_Pilot3_*", "reports", "*", "*.final.json"))
    assert len(finals) == 1 and json.load(open(finals[0]))["state"] == "finished"
    assert "pilot/default.cfg" not in run.stderr
