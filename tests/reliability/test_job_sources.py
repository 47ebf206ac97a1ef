"""Hostile job sources through a real pilot (local:DIR): each ends with a coded outcome, no job is lost, none runs
twice, and the pilot neither blocks nor shows a traceback."""

import glob
import json
import os
import subprocess
import sys

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition


def _pilot(tmp_path, jobs, *extra, timeout=60):
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-a", str(run_dir), "--job-source", f"local:{jobs}",
                           *extra], capture_output=True, text=True, timeout=timeout, cwd=str(tmp_path),
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _finals(tmp_path):
    """PandaID -> list of final reports, over every pilot run in tmp_path/run."""
    found = {}
    for path in glob.glob(str(tmp_path / "run" / "*" / "reports" / "*" / "*.final.json")):
        data = json.load(open(path))
        found.setdefault(int(data["jobId"]), []).append(data)
    return found


def test_job_file_nested_100000_levels_is_reported_failed(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    deep = "[" * 100_000 + "]" * 100_000
    (jobs / "deep.json").write_text(f'{{"PandaID": "1701", "transformation": "sh", "jobPars": {deep}}}')
    proc = _pilot(tmp_path, jobs)
    assert proc.returncode == 0
    run = PilotRun(str(tmp_path / "run"), proc, proc.stdout, proc.stderr)
    final = run.final(1701)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1302, final
    assert "nested too deeply" in final["pilotErrorDiag"]


def test_multi_job_file_loses_no_job(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    ids = [1711, 1712, 1713, 1714]
    (jobs / "many.json").write_text(json.dumps({str(i): job_definition(i, log=False) for i in ids}))
    for _ in ids:  # -q LOCAL runs one job per pilot: each of the others is put back for the next pilot
        assert _pilot(tmp_path, jobs).returncode == 0
    finals = _finals(tmp_path)
    assert sorted(finals) == ids and all(len(f) == 1 and f[0]["state"] == "finished" for f in finals.values())
    assert not glob.glob(str(jobs / "*.json")), "every job file was taken"


def test_fifo_and_directory_named_json_are_skipped(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    os.mkfifo(jobs / "a_fifo.json")  # sorted first: it would block a reader for the pilot's lifetime
    (jobs / "b_dir.json").mkdir()
    (jobs / "c_job.json").write_text(json.dumps(job_definition(1721, log=False)))
    proc = _pilot(tmp_path, jobs, timeout=30)
    assert proc.returncode == 0 and "is not a regular file; skipped" in proc.stderr
    assert _finals(tmp_path)[1721][0]["state"] == "finished"
    assert (jobs / "a_fifo.json").exists(), "the FIFO is left alone"


def test_same_pandaid_in_two_files_runs_once(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "a.json").write_text(json.dumps(job_definition(1731, log=False)))
    (jobs / "b.json").write_text(json.dumps(job_definition(1731, log=False, jobPars="-c 'exit 3'")))
    first = _pilot(tmp_path, jobs)
    second = _pilot(tmp_path, jobs)  # another pilot sharing the dir
    assert first.returncode == 0 and second.returncode == 0
    finals = _finals(tmp_path)
    assert len(finals[1731]) == 1 and finals[1731][0]["state"] == "finished", finals
    assert "duplicate PandaID refused" in second.stderr


def test_missing_job_dir_is_a_configuration_error(tmp_path):
    proc = _pilot(tmp_path, tmp_path / "nonexistent", timeout=20)
    assert proc.returncode == 67  # 1103 NOSUCHFILE, not retried
    assert "1103" in proc.stderr and "does not exist" in proc.stderr and "getJob failed" not in proc.stderr


def test_harvester_job_file_nested_100000_levels_is_reported_failed(tmp_path):
    """Harvester mode: the job file is taken (deleted) before it is parsed, so its job must still be reported."""
    ap = tmp_path / "ap"
    ap.mkdir()
    deep = "[" * 100_000 + "]" * 100_000
    (ap / "HPCJobs.json").write_text(f'{{"1741": {{"PandaID": "1741", "transformation": "sh", "jobPars": {deep}}}}}')
    proc = subprocess.run([sys.executable, PILOT, "-q", "LOCAL", "-z", "--harvester-workdir", str(ap),
                           "--harvester-submit-mode", "PUSH"], capture_output=True, text=True, timeout=60,
                          cwd=str(ap), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    attributes = json.loads((ap / "worker_attributes.json").read_text())
    assert attributes["jobId"] == "1741" and attributes["jobStatus"] == "failed"
    assert attributes["pilotErrorCode"] == 1302, attributes
