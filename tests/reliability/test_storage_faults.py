"""Storage faults a local site can have: a read-only output area. (Remote storage faults -- server down, hung
transfers, corrupted and missing replicas -- are in tests/integration/test_copytools.py; disk full in
tests/e2e/test_monitoring.py.)"""

import json
import subprocess
import sys

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job


def test_read_only_output_dir_fails_stageout_with_a_code(tmp_path):
    jobs, readonly = tmp_path / "jobs", tmp_path / "readonly"
    jobs.mkdir()
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], check=True)
    try:
        write_job(jobs, job_definition(1801, pars="-c 'echo result > out.dat'", outputs=["out.dat"]))
        proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(tmp_path / "run"), "--job-source",
                               f"local:{jobs}", "--output-dir", str(readonly)], capture_output=True, text=True,
                              timeout=60)
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    run = PilotRun(str(tmp_path / "run"), proc, proc.stdout, proc.stderr)
    final = run.final(1801)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1137, final
    assert "Read-only file system" in final["pilotErrorDiag"]
    assert json.loads(final["xml"]) == {}  # nothing claimed as stored
