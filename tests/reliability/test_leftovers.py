"""Processes a payload leaves behind are all killed after the job, whatever they did to hide; nothing else is.

Membership comes from the pilot's subreaper ancestry (and a cgroup v2 per job where the node allows it), never
from what the payload can change: its session, its environment (the per-job token) or its process group.
"""

import os
import subprocess
import time
import uuid

import psutil
import pytest

from pilot.payload.cgroup import JobCgroup, own_cgroup_dir
from tests.e2e.pilotrun import job_definition, write_job
from tests.e2e.test_monitoring import run

CGROUP_DIR = own_cgroup_dir()


@pytest.fixture
def jobdir(tmp_path):
    path = tmp_path / "jobs"
    path.mkdir()
    return path

CGROUPS = pytest.mark.parametrize("cgroup", ["auto", "off"])


def survivors(tag):
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and tag in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def kill_all(tag):
    for proc in survivors(tag):
        try:
            proc.kill()
        except psutil.Error:
            pass


def cgroup_expected(cgroup):
    return cgroup == "auto" and CGROUP_DIR is not None and os.access(CGROUP_DIR, os.W_OK)


@CGROUPS
def test_escaped_processes_are_killed(tmp_path, jobdir, cgroup):
    """`env -u` the token, `env -i`, `setsid -f` and a double fork: none of them outlives the job."""
    tag = f"escapee-{uuid.uuid4().hex}"
    loop = f"sh -c \"while :; do sleep 1; done\" {tag}"
    script = (f"env -u PILOT_PAYLOAD_TOKEN setsid -f {loop}; env -i /usr/bin/setsid -f {loop}; "
              f"( ( env -i {loop} & ) & ); setsid -f env -i {loop}; sleep 0.3; exit 0")
    write_job(jobdir, job_definition(1601, pars=f"-c '{script}'"))
    try:
        result = run(tmp_path, jobdir, {"PILOT_CFG_PAYLOAD_CGROUP": cgroup}, timeout=60)
        assert result.final(1601)["state"] == "finished", result.stderr[-3000:]
        assert survivors(tag) == [], result.stderr[-3000:]
        assert "left behind" in result.stderr
        assert ("payload cgroup" in result.stderr) == cgroup_expected(cgroup)
    finally:
        kill_all(tag)


@CGROUPS
def test_sigterm_ignoring_forkers_are_killed_until_none_is_left(tmp_path, jobdir, cgroup):
    """Children that ignore SIGTERM and keep forking: the kill repeats until a scan finds nothing."""
    tag = f"forker-{uuid.uuid4().hex}"
    forker = (f"setsid -f env -i sh -c \"trap \\\"\\\" TERM; while :; do (trap \\\"\\\" TERM; sleep 30) & "
              f"sleep 0.02; done\" {tag}")
    write_job(jobdir, job_definition(1602, pars=f"-c '{forker}; {forker}; sleep 0.5; exit 0'"))
    try:
        result = run(tmp_path, jobdir, {"PILOT_CFG_PAYLOAD_CGROUP": cgroup},
                     timeout=60)
        assert result.final(1602)["state"] == "finished", result.stderr[-3000:]
        assert survivors(tag) == [], result.stderr[-3000:]
        assert "SIGKILL" in result.stderr
    finally:
        kill_all(tag)


@pytest.mark.skipif(CGROUP_DIR is None or not os.access(CGROUP_DIR, os.W_OK),
                    reason="this node gives no writable cgroup v2 (the degraded path is tested above with off)")
def test_cgroup_kill_empties_the_job_cgroup():
    """The cgroup is the containment of record: a setsid'd grandchild with a clean environment is in it."""
    group = JobCgroup.create(CGROUP_DIR, f"pilot-test.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    assert group is not None
    proc = subprocess.Popen(group.shim(["sh", "-c", f"setsid -f env -i sleep 30.{os.getpid()}; sleep 30"]))
    try:
        deadline = time.monotonic() + 5
        escaped = []
        while not escaped and time.monotonic() < deadline:
            escaped = [pid for pid in group.pids() if psutil.Process(pid).cmdline() == ["sleep", f"30.{os.getpid()}"]]
            time.sleep(0.01)
        assert escaped and proc.pid in group.pids(), "the shim puts the payload and what it starts in the cgroup"
        assert os.getsid(escaped[0]) != os.getsid(proc.pid)
        assert group.kill()
        proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while group.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert group.pids() == []
    finally:
        group.kill()
        if proc.poll() is None:
            proc.kill()
        assert group.remove()
    assert not os.path.exists(group.path)
