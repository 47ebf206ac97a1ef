"""SIGTERM while the log tarball runs longer than the abort grace: the final report still goes out within the
grace, the job failed with 1201. (A long mv stage-out stopped at its share of the grace, with its `.part` removed,
is tests/unit/test_transfer.py::test_copy_out_stops_at_the_stageout_deadline_and_removes_the_part: through
pilot.py its duration depends on the disk more than on the pilot; remote copytools are killed at once.)"""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job

GRACE = 9


@pytest.fixture
def dirs(tmp_path):
    jobs, storage = tmp_path / "jobs", tmp_path / "storage"
    jobs.mkdir()
    storage.mkdir()
    return jobs, storage


def start_pilot(tmp_path, jobs, storage, grace=GRACE):
    cmd = [sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path), "--job-source", f"local:{jobs}",
           "--input-dir", str(storage), "--output-dir", str(storage)]
    env = dict(os.environ, PILOT_CFG_PILOT_ABORT_GRACE=str(grace), PILOT_CFG_PILOT_KILL_GRACE="1")
    return subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def wait_for(condition, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition never met (pilot exit {proc.poll()})")


def sigterm_and_finish(tmp_path, proc, panda_id, grace=GRACE):
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    run = PilotRun(str(tmp_path), proc, out, err)
    assert run.returncode == 143, err[-3000:]
    assert took < grace + 0.5, f"the pilot took {took:.1f} s after SIGTERM (abort grace {grace} s)"
    final = run.final(panda_id)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1201, final
    assert "Traceback" not in err
    return run, final


@pytest.mark.slow
def test_sigterm_during_slow_log_tarball(tmp_path, dirs):
    """About 12 s: 180 MB of random data to tar, so that the tarball takes longer than the grace.
    An incompressible work dir takes longer to tar than the grace: the tarball stops at a third of the grace,
    what did not fit is listed, the tarball is shipped, and the final report goes out."""
    jobs, storage = dirs
    # 60 incompressible files of 3 MB: the tarball stops between files (no big file to pad with zeros)
    script = "for i in $(seq 60); do head -c 3000000 /dev/urandom > part$i.bin; done"
    write_job(jobs, job_definition(1622, pars=f"-c '{script}'"))
    proc = start_pilot(tmp_path, jobs, storage)
    wait_for(lambda: glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "PanDA_Pilot-1622",
                                            "1622.job.log.tgz.part")), proc)
    run, final = sigterm_and_finish(tmp_path, proc, 1622)
    assert "log tarball cut at the abort grace" in final["pilotErrorDiag"]
    assert os.path.exists(storage / "1622.job.log.tgz")
    assert "no time left" in run.stderr
    assert not glob.glob(str(storage / "*.part"))
