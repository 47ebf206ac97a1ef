"""A payload that fills the disk and exits 0: 1098, a delivered final report, no traceback, no lost files.

The pilot's main dir is on a small tmpfs the test mounts (as root, bounded size): the memory monitor files,
the timing file, pilotlog.txt, the log tarball and the report all meet ENOSPC.
"""

import json
import os
import subprocess

import pytest

from tests.e2e.pilotrun import PilotRun, job_definition, pilot_cmd, write_job


@pytest.fixture
def small_disk(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    try:
        yield small
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_payload_filling_the_disk_and_exiting_0_gives_1098_and_a_report(tmp_path, small_disk):
    jobdir, outdir = tmp_path / "jobs", tmp_path / "out"
    jobdir.mkdir()
    # fill the disk to the last byte, give the memory monitor a sample to write, then claim success
    write_job(jobdir, job_definition(1631, pars="-c 'head -c 100000000 /dev/zero > fill.dat; sleep 1.5; exit 0'"))
    cmd = pilot_cmd(small_disk, "--job-source", f"local:{jobdir}", "--output-dir", str(outdir))
    env = dict(os.environ, PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME="1")
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=90)
    run = PilotRun(str(small_disk), proc, proc.stdout, proc.stderr)
    final = run.final(1631)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1098, proc.stderr[-3000:]
    assert "disk full" in final["pilotErrorDiag"]
    assert proc.returncode == 0, proc.stderr[-3000:]  # a failed job that was reported
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr, proc.stderr[-3000:]
    assert "1319" not in json.dumps(final)
    assert not os.path.exists(os.path.join(run.main, "PanDA_Pilot-1631")), "the work dir must not be left"
    timing = json.load(open(os.path.join(run.main, "pilot_timing.json")))
    assert "1631" in timing
