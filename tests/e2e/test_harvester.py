"""End-to-end: the pilot in Harvester mode, with the test playing Harvester's side strictly by the file contract
(spec launchers.md §2.3): it writes the job file, reads worker_attributes.json, event_status.dump.json and the
kill file, and never sees a half-written file."""

import json
import os
import subprocess
import sys
import threading
import time

from tests.e2e.pilotrun import PILOT, adler32_of, job_definition, write_input


def harvester_cmd(ap, *extra):
    return [sys.executable, PILOT, "-q", "LOCAL", "-z", "--harvester-workdir", str(ap), *extra]


class AttributeWatcher(threading.Thread):
    """Reads worker_attributes.json as fast as it can while the pilot runs: every read must be whole JSON."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.states = []
        self.bad_reads = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                with open(self.path) as handle:
                    text = handle.read()
            except FileNotFoundError:
                time.sleep(0.001)
                continue
            try:
                state = json.loads(text).get("jobStatus")
            except ValueError:
                self.bad_reads += 1
                continue
            if state is None:  # the pilot's exit report when it never had a job
                continue
            if not self.states or self.states[-1] != state:
                self.states.append(state)


def run_harvester_pilot(ap, *extra, env=None, timeout=60, feed=None):
    watcher = AttributeWatcher(os.path.join(str(ap), "worker_attributes.json"))
    watcher.start()
    proc = subprocess.Popen(harvester_cmd(ap, *extra), cwd=str(ap), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)
    if feed:
        feed()
    out, err = proc.communicate(timeout=timeout)
    watcher.done.set()
    watcher.join()
    return proc.returncode, err, watcher


def test_push_mode_success(tmp_path):
    ap = tmp_path / "ap"
    ap.mkdir()
    size, checksum = write_input(ap, "in.dat", b"harvester pre-placed input\n" * 50)
    job = job_definition(801, pars="-c 'wc -l in.dat > out.dat'", inputs=[("in.dat", (size, checksum))],
                         outputs=["out.dat"])
    (ap / "HPCJobs.json").write_text(json.dumps({"801": job}))
    code, err, watcher = run_harvester_pilot(ap, "--harvester-submit-mode", "PUSH")
    assert code == 0, err[-3000:]
    assert watcher.bad_reads == 0
    assert watcher.states[0] == "starting" and watcher.states[-1] == "finished"
    attributes = json.loads((ap / "worker_attributes.json").read_text())
    assert attributes["jobId"] == "801" and attributes["transExitCode"] == 0 and "xml" not in attributes
    events = json.loads((ap / "event_status.dump.json").read_text())["801"]
    by_type = {entry["type"]: entry for entry in events}
    assert set(by_type) == {"output", "log"}
    for entry in events:
        assert os.path.dirname(entry["path"]) == str(ap)
        assert entry["chksum"] == adler32_of(entry["path"]) and entry["fsize"] == os.path.getsize(entry["path"])
    assert (ap / "out.dat").read_text().strip().startswith("50")
    assert not (ap / "HPCJobs.json").exists()  # taken
    assert (ap / "kill_worker").exists() and (ap / "kill_worker.json").exists()
    assert not (ap / "worker_requestjob.json").exists()


def test_push_mode_failure_reported(tmp_path):
    ap = tmp_path / "ap"
    ap.mkdir()
    (ap / "pandaJobData.out").write_text(json.dumps({"802": job_definition(802, pars="-c 'exit 7'")}))
    code, err, watcher = run_harvester_pilot(ap, "--harvester-submit-mode", "PUSH", "--harvester-datadir", str(ap))
    assert code == 0, err[-3000:]
    attributes = json.loads((ap / "worker_attributes.json").read_text())
    assert attributes["jobStatus"] == "failed" and attributes["pilotErrorCode"] == 1305
    assert attributes["transExitCode"] == 7 and watcher.bad_reads == 0
    events = json.loads((ap / "event_status.dump.json").read_text())["802"]
    assert [entry["type"] for entry in events] == ["log"]


def test_legacy_url_encoded_job_file(tmp_path):
    from urllib.parse import urlencode

    ap = tmp_path / "ap"
    ap.mkdir()
    (ap / "pandaJobData.out").write_text(urlencode(job_definition(803)))
    code, err, _ = run_harvester_pilot(ap, "--harvester-submit-mode", "PUSH", "--harvester-datadir", str(ap))
    assert code == 0 and json.loads((ap / "worker_attributes.json").read_text())["jobStatus"] == "finished", err


def test_pull_mode_requests_a_job_and_waits_for_it(tmp_path):
    ap = tmp_path / "ap"
    ap.mkdir()
    request = ap / "worker_requestjob.json"

    def harvester_feeds_after_request():
        deadline = time.time() + 20
        while time.time() < deadline and not request.exists():
            time.sleep(0.02)
        assert json.loads(request.read_text()) == {"nJobs": 1}
        # Harvester's feed_jobs: write the job file, then delete the request
        temp = ap / ".HPCJobs.json.tmp"
        temp.write_text(json.dumps({"804": job_definition(804)}))
        os.rename(temp, ap / "HPCJobs.json")
        request.unlink()

    env = {"PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL": "0.1", "PILOT_CFG_HARVESTER_JOB_WAIT_LIMIT": "15"}
    code, err, watcher = run_harvester_pilot(ap, "--harvester-submit-mode", "PULL", env=env,
                                             feed=harvester_feeds_after_request)
    assert code == 0, err[-3000:]
    assert watcher.states[-1] == "finished"


def test_push_mode_without_job_file_ends_quickly(tmp_path):
    ap = tmp_path / "ap"
    ap.mkdir()
    started = time.time()
    code, err, _ = run_harvester_pilot(ap, "--harvester-submit-mode", "PUSH", "-x", "2",
                                       env={"PILOT_CFG_HARVESTER_JOB_POLL_INTERVAL": "0.2"})
    assert code == 0 and "no job file from Harvester" in err
    assert time.time() - started < 15
    assert json.loads((ap / "kill_worker.json").read_text())["pilotExitCode"] == 0
    assert json.loads((ap / "worker_attributes.json").read_text())["pilotExitCode"] == 0
