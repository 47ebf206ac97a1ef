"""A pilot SIGKILLed while its payload runs: the next pilot recovers the job it claimed from local:DIR (failed,
1317) and sweeps its payload; the wrapper sweeps what its killed pilot left. Nothing that is not the dead
pilot's payload is touched."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from pilot.payload.cgroup import own_cgroup_dir
from tests.e2e.pilotrun import PILOT, job_definition, write_job
from tests.reliability.test_leftovers import kill_all, survivors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CGROUP_DIR = own_cgroup_dir()
HAS_CGROUP = CGROUP_DIR is not None and os.access(CGROUP_DIR, os.W_OK)


def payload_script(tag):
    loop = 'sh -c "while :; do sleep 1; done"'
    # with the token, in a new session; without the token, in a new session; the leader's own child
    return (f"setsid -f {loop} {tag}-a.; env -u PILOT_PAYLOAD_TOKEN setsid -f {loop} {tag}-b.; {loop} {tag}-c.")


def wait_until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def start_pilot(base, jobs, cgroup):
    env = dict(os.environ, PILOT_CFG_PAYLOAD_CGROUP=cgroup)
    return subprocess.Popen([sys.executable, PILOT, "-q", "LOCAL", "-a", str(base), "--job-source", f"local:{jobs}"],
                            cwd=str(base), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("cgroup", ["auto", "off"])
def test_next_pilot_recovers_the_job_and_sweeps_the_payload(tmp_path, cgroup):
    tag = f"orphan-{uuid.uuid4().hex}"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, job_definition(1641, pars=f"-c '{payload_script(tag)}'"))
    # a process of the same user that is not the pilot's: must survive everything below
    bystander = subprocess.Popen(["sh", "-c", "while :; do sleep 1; done", f"bystander-{tag}"],
                                 start_new_session=True)
    try:
        first = start_pilot(tmp_path, jobs, cgroup)
        assert wait_until(lambda: all(survivors(f"{tag}-{x}.") for x in "abc")), "the payload never started"
        first.kill()  # SIGKILL: nothing in the pilot runs
        first.communicate(timeout=30)
        assert survivors(f"{tag}-a.") and survivors(f"{tag}-c."), "what a SIGKILLed pilot leaves"
        old_main = glob.glob(os.path.join(str(tmp_path), f"PanDA_Pilot3_{first.pid}_*"))[0]

        second = start_pilot(tmp_path, jobs, cgroup)
        out, err = second.communicate(timeout=60)
        assert "Traceback" not in err, err[-3000:]
        finals = glob.glob(os.path.join(old_main, "reports", "1641", "*.final.json"))
        assert len(finals) == 1, err[-3000:]
        final = json.load(open(finals[0]))
        assert final["state"] == "failed" and final["pilotErrorCode"] == 1317, final
        assert survivors(f"{tag}-a.") == [] and survivors(f"{tag}-c.") == [], err[-3000:]
        # the one without the token in a new session: only its cgroup still names it
        assert (survivors(f"{tag}-b.") == []) == (cgroup == "auto" and HAS_CGROUP)
        assert bystander.poll() is None, "the next pilot killed a process that was not the dead pilot's"
        assert not glob.glob(os.path.join(old_main, "payloads", "*.json"))
        assert not glob.glob(os.path.join(str(jobs), ".claimed", "*.owner"))

        third = start_pilot(tmp_path, jobs, cgroup)  # recovery happens once: nothing more to report
        _out, err3 = third.communicate(timeout=60)
        assert len(glob.glob(os.path.join(old_main, "reports", "1641", "*.final.json"))) == 1, err3[-2000:]
    finally:
        bystander.kill()
        kill_all(tag)


def test_wrapper_sweeps_what_its_sigkilled_pilot_left(tmp_path):
    tag = f"wrapped-{uuid.uuid4().hex}"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, job_definition(1642, pars=f"-c '{payload_script(tag)}'"))
    env = dict(os.environ, PILOT_PYTHON=sys.executable, RUNPILOT_MIN_SPACE_MB="0")
    env.pop("TMPDIR", None)
    wrapper = subprocess.Popen(["bash", os.path.join(REPO, "wrapper", "runpilot.sh"), "-q", "LOCAL",
                                "--job-source", f"local:{jobs}", "-a", str(tmp_path)], cwd=str(tmp_path),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: all(survivors(f"{tag}-{x}.") for x in "ac")), "the payload never started"
        pilot = [p for p in psutil.Process(wrapper.pid).children() if "pilot.py" in " ".join(p.cmdline())]
        assert len(pilot) == 1
        pilot[0].kill()
        _out, err = wrapper.communicate(timeout=60)
        assert wrapper.returncode == 137, err[-3000:]
        assert survivors(f"{tag}-a.") == [] and survivors(f"{tag}-c.") == [], err[-3000:]
        assert "swept" in err
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.communicate()
        kill_all(tag)


def test_a_pilot_that_ends_normally_leaves_nothing_to_recover(tmp_path):
    """Owner and payload records go with the job's final report (and at the latest when the pilot ends), also for a
    file refused as a duplicate PandaID: a later pilot finds nothing to report twice."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, job_definition(1643))
    write_job(jobs, job_definition(1643), name="job_1643_again.json")  # the same PandaID: refused
    first = start_pilot(tmp_path, jobs, "auto")
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err[-3000:]
    assert not glob.glob(os.path.join(str(jobs), ".claimed", "*.owner")), err[-3000:]
    assert not glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "payloads", "*.json"))
    second = start_pilot(tmp_path, jobs, "auto")
    second.communicate(timeout=60)
    assert len(glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "reports", "1643", "*.final.json"))) == 1
