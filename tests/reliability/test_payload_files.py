"""Files the payload controls (jobReport.json, payload.stderr, payload_error_report.json) swapped for a symlink to
a file outside the job dir, or for a FIFO, through a real pilot: nothing of the outside file reaches the reports,
and the pilot neither blocks nor fails with a traceback."""

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition

SECRET = "SECRET-7f3a9c"

SWAPS = {
    # each: shell run by the payload in its work dir; {secret} is an absolute path outside the job dir
    "symlinks": "ln -sf {secret} jobReport.json; ln -sf {secret} payload_error_report.json; "
                "ln -sf {secret} payload.stderr",
    "fifos": "mkfifo jobReport.json payload_error_report.json; rm -f payload.stderr; mkfifo payload.stderr",
    "parent dir symlink": "ln -sfn {outside} sub",
}


@pytest.mark.parametrize("swap", list(SWAPS))
def test_payload_files_swapped_for_symlinks_or_fifos_are_not_read(tmp_path, swap):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.json"
    secret.write_text(json.dumps({"exitCode": 9, "exitMsg": SECRET, "error_code": 9, "error_diag": SECRET,
                                  "nEvents": 7}))
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    script = SWAPS[swap].format(secret=secret, outside=outside)
    job = job_definition(1601, pars=f"-c 'echo some error >&2; {script}; exit 3'", log=True)
    (jobs / "job.json").write_text(json.dumps(job))
    cfg = tmp_path / "cfg.ini"  # read the swapped files from a sub dir too: parents are checked as well
    cfg.write_text("[Payload]\njobreport = sub/secret.json\n" if swap == "parent dir symlink" else "[Payload]\n")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(run_dir), "--job-source", f"local:{jobs}",
                           "--config", str(cfg)], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                          stdin=subprocess.DEVNULL)
    run = PilotRun(str(run_dir), proc, proc.stdout, proc.stderr)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    final = run.final(1601)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1305, final
    reports = json.dumps([data for _name, data in run.reports(1601)])
    assert SECRET not in reports and SECRET not in proc.stderr and SECRET not in run.pilotlog()
    assert final.get("exeErrorCode", 0) != 9 and final.get("nEvents", 0) != 7


def test_symlinks_planted_under_files_the_pilot_writes_are_not_written_through(tmp_path):
    """The memory monitor's files and the log tarball's temporary are written by the pilot after the payload ran:
    a symlink planted under those names must not carry the pilot's writes outside the job dir."""
    outside = tmp_path / "outside"
    outside.mkdir()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    plant = "; ".join(f"ln -sf {outside}/victim-{n} {name}" for n, name in enumerate(
        ("memory_monitor_output.txt", "memory_monitor_summary.json", "1602.job.log.tgz.part")))
    (jobs / "job.json").write_text(json.dumps(job_definition(1602, pars=f"-c '{plant}; exit 0'", log=True)))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(run_dir), "--job-source", f"local:{jobs}"],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    final = PilotRun(str(run_dir), proc, proc.stdout, proc.stderr).final(1602)
    assert final["state"] == "finished", final  # the log tarball was still made and shipped
    assert os.listdir(outside) == [], "the pilot wrote through a planted symlink"
