"""End-to-end: payloads in real containers (bubblewrap, podman, and apptainer's command line through a bwrap
shim, since apptainer itself cannot be installed on this kind of machine)."""

import json
import os
import shutil
import subprocess

import pytest

from tests.e2e.pilotrun import PilotRun, job_definition, pilot_cmd, write_job

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
APPLETS = ("sh", "echo", "cat", "tr", "wc", "ls", "sleep", "test", "id", "mkdir", "sha1sum", "head")


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    """A minimal image: busybox-static and its applets (no bash), like a sandbox image unpacked on disk."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is installed by .ci/install-deps test"
    root = tmp_path_factory.mktemp("rootfs")
    for sub in ("bin", "proc", "dev", "tmp", "etc", "sys"):
        (root / sub).mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "os-release").write_text('NAME="pilot test image"\n')
    os.chmod(root, 0o755)
    return str(root)


def queue(tmp_path, runtime, options=""):
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({"nickname": "CTR", "state": "ACTIVE", "status": "online",
                                "container_type": f"{runtime}:pilot", "container_options": options,
                                "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}))
    return str(path)


def run(tmp_path, jobdir, queue_path, env=None):
    cmd = pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}", "--queuedata-url", queue_path)
    cmd[cmd.index("LOCAL")] = "CTR"
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)
    return PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)


PAYLOAD = "-c 'cat /etc/os-release > inside.txt; echo $PandaID >> inside.txt; tr a-z A-Z < inside.txt'"


def _check_inside(run_result, panda_id):
    final = run_result.final(panda_id)
    assert final["state"] == "finished", run_result.stderr[-3000:]
    assert "pilot test image" not in open("/etc/os-release").read()
    stdout_path = os.path.join(run_result.main, "storage")
    return final, stdout_path


def test_bwrap_payload(tmp_path, jobdir, rootfs):
    write_job(jobdir, job_definition(601, trf="sh", pars=PAYLOAD, container_name=rootfs))
    result = run(tmp_path, jobdir, queue(tmp_path, "bwrap"))
    _check_inside(result, 601)
    assert "runs in bwrap container" in result.stderr


def test_apptainer_command_line_through_shim(tmp_path, jobdir, rootfs):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.join(DATA, "apptainer-shim.sh"), bindir / "apptainer")
    write_job(jobdir, job_definition(602, trf="sh", pars=f"--containerImage {rootfs} " + PAYLOAD))
    result = run(tmp_path, jobdir, queue(tmp_path, "apptainer", "--cleanenv"),
                 env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    _check_inside(result, 602)


def test_podman_payload(tmp_path, jobdir, rootfs):
    write_job(jobdir, job_definition(603, trf="sh", pars=PAYLOAD, container_name=rootfs))
    result = run(tmp_path, jobdir, queue(tmp_path, "podman"),
                 env={"CONTAINERS_CONF": os.path.join(DATA, "containers.conf")})
    _check_inside(result, 603)
    assert result.final(603)["transExitCode"] == 0


def test_broken_image_gives_container_code(tmp_path, jobdir, rootfs):
    broken = tmp_path / "broken"
    for sub in ("proc", "dev", "tmp", "bin"):
        (broken / sub).mkdir(parents=True)  # an image with no shell in it
    write_job(jobdir, job_definition(604, trf="sh", pars="-c 'echo hi'", container_name=str(broken)))
    result = run(tmp_path, jobdir, queue(tmp_path, "bwrap"))
    final = result.final(604)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1360, final
    assert "execvp" in final["pilotErrorDiag"]


def test_image_that_cannot_be_mounted(tmp_path, jobdir):
    empty = tmp_path / "empty"
    empty.mkdir()  # no /proc mount point in a read-only image
    write_job(jobdir, job_definition(607, trf="sh", pars="-c 'echo hi'", container_name=str(empty)))
    result = run(tmp_path, jobdir, queue(tmp_path, "bwrap"))
    assert result.final(607)["pilotErrorCode"] == 1309


def test_container_required_but_queue_not_set_up(tmp_path, jobdir, rootfs):
    write_job(jobdir, job_definition(605, container_name=rootfs))
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"nickname": "CTR", "state": "ACTIVE", "copytools": {"mv": {}},
                                "acopytools": {"default": ["mv"]}}))
    result = run(tmp_path, jobdir, str(path))
    assert result.final(605)["pilotErrorCode"] == 1384


def test_sigterm_kills_containerised_payload(tmp_path, jobdir, rootfs):
    import signal
    import time

    import psutil

    write_job(jobdir, job_definition(606, trf="sh", pars="-c 'sleep 300'", container_name=rootfs))
    cmd = pilot_cmd(tmp_path, "--job-source", f"local:{jobdir}", "--queuedata-url", queue(tmp_path, "bwrap"))
    cmd[cmd.index("LOCAL")] = "CTR"
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pilot = psutil.Process(proc.pid)
    deadline = time.time() + 20
    sleepers = []
    while time.time() < deadline and not sleepers:
        sleepers = [p for p in pilot.children(recursive=True) if p.name() == "sleep"]
        time.sleep(0.05)
    assert sleepers
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert PilotRun(str(tmp_path), proc, out, err).final(606)["pilotErrorCode"] == 1201
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in sleepers if psutil.pid_exists(p.pid))
