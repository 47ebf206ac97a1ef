"""The pilot against the real PanDA server: acquire, heartbeats, final report, Adder, kill, outages, spool."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun

pytestmark = pytest.mark.slow


def queue_file(tmp_path):
    path = tmp_path / "queue.json"
    path.write_text(json.dumps({"nickname": "TEST_QUEUE", "panda_resource": "TEST_QUEUE", "state": "ACTIVE",
                                "status": "online", "maxrss": 16000, "maxwdir": 20000,
                                "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}))
    return str(path)


def start_pilot(panda, tmp_path, *extra, env=None):
    cmd = [sys.executable, PILOT, "-q", panda.queue, "--url", panda.url, "--queuedata-url", queue_file(tmp_path),
           "-j", "managed", "-a", str(tmp_path), *extra]
    environ = dict(os.environ, **panda.pilot_env(tmp_path), PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5",
                   PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.5")
    environ.update(env or {})
    return subprocess.Popen(cmd, cwd=str(tmp_path), env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def finish(proc, tmp_path, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return PilotRun(str(tmp_path), proc, out, err)


def test_job_cycle_starting_running_finished_archived(panda, tmp_path):
    """starting, running and finished updates acknowledged, archived by the Adder. About 10 s on a loaded machine:
    the payload runs 2 s, and the Adder loads the server's code (~3 s)."""
    panda_id = panda.submit_job(outputs=["result.dat"], job_pars="-c 'sleep 2; echo done > result.dat'")
    started = time.time()
    proc = start_pilot(panda, tmp_path, env={"HARVESTER_ID": "h1", "HARVESTER_WORKER_ID": "7"})
    seen = []
    while proc.poll() is None:
        status = panda.job_status(panda_id)
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.1)
    run = finish(proc, tmp_path)
    wall = time.time() - started
    assert run.returncode == 0, run.stderr[-3000:]
    seen.append(panda.job_status(panda_id))
    assert "running" in seen and seen[-1] == "holding", seen  # finished is stored as holding until the Adder
    acknowledged = [line.split("job %d: " % panda_id)[1].split()[0] for line in run.stderr.splitlines()
                    if f"job {panda_id}: " in line and "update acknowledged" in line]
    assert acknowledged[0] == "starting" and acknowledged[1] == "running" and acknowledged[-1] == "finished"
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 0 and record["transExitCode"] == 0
    assert panda.archive(panda_id) == "finished"
    assert "worker status started: ok" in run.stderr and "worker status finished: ok" in run.stderr
    assert "worker node map: Inserted new worker node" in run.stderr or "worker node map: Updated" in run.stderr
    assert "resource types from the server: MCORE" in run.stderr
    requests_line = [line for line in run.stderr.splitlines() if "request(s) to" in line]
    assert requests_line, run.stderr[-2000:]
    print(f"one job cycle: {requests_line[-1].split('|')[-1].strip()}, {wall:.2f} s wall")


def test_output_report_is_checked_by_the_server(panda, tmp_path):
    """A report that leaves out an output makes the server fail the job (the pilot's normal path passes above)."""
    import requests

    panda_id = panda.submit_job(outputs=["a.dat"])
    reply = requests.post(f"{panda.url}/api/v1/pilot/acquire_jobs",
                          json={"site_name": panda.queue, "prod_source_label": "managed", "node": "wn"},
                          headers={"Accept": "application/json", **panda.auth_headers()}, timeout=60).json()
    job = reply["data"]["jobs"][0]
    assert int(job["PandaID"]) == panda_id
    log_only = {job["logFile"]: {"guid": job["logGUID"], "fsize": 10, "adler32": "0a0b0c0d"}}
    panda.update_job({"job_id": panda_id, "job_status": "finished", "attempt_nr": int(job["attemptNr"]),
                      "job_output_report": json.dumps(log_only)})
    assert panda.archive(panda_id) == "failed"
    assert "missing" in panda.job_record(panda_id)["ddmErrorDiag"]


def test_server_kill_command_kills_the_payload_with_1144(panda, tmp_path):
    panda_id = panda.submit_job(job_pars="-c 'sleep 300'")
    proc = start_pilot(panda, tmp_path, env={"PILOT_CFG_PILOT_HEARTBEAT": "1"})
    panda.wait_for(panda_id, {"running"}, timeout=60)
    killed_at = time.time()
    panda.kill_job(panda_id)
    run = finish(proc, tmp_path)
    assert time.time() - killed_at < 10, "the payload must die within about one heartbeat"
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tobekilled" in run.stderr
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 1144, record
    assert panda.archive(panda_id) in ("failed", "cancelled")


def wait_until(predicate, timeout, what):
    """Poll `predicate` (files, logs, the database) every 0.1 s until it holds; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def pilot_log(tmp_path):
    logs = glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "pilotlog.txt"))
    return open(logs[0], errors="replace").read() if logs else ""


def test_server_down_during_final_update_then_back(panda, tmp_path):
    """The payload ends (when the test says so) while the server is cut: the final update is spooled and retried
    until the server is back, then delivered; nothing waits on a fixed sleep."""
    go = tmp_path / "go"
    panda_id = panda.submit_job(outputs=["o.dat"],
                                job_pars=f"-c 'while [ ! -e {go} ]; do sleep 0.05; done; echo x > o.dat'")
    proc = start_pilot(panda, tmp_path)
    panda.wait_for(panda_id, {"running"}, timeout=60)
    panda.cut()
    try:
        go.touch()
        wait_until(lambda: f"final update of job {panda_id}: attempt 1 failed" in pilot_log(tmp_path), 60,
                   "a failed delivery of the final update")
        assert proc.poll() is None, "the pilot must keep retrying its final update"
        spooled = glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "spool", "*.final.update.json"))
        assert spooled, "the final update must be on disk while undelivered"
    finally:
        panda.restore()
    run = finish(proc, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not glob.glob(os.path.join(str(tmp_path), "PanDA_Pilot3_*", "spool", "*.update.json"))
    assert panda.job_status(panda_id) == "holding"
    assert panda.archive(panda_id) == "finished"


def test_server_down_past_the_deadline_then_replayed(panda, tmp_path):
    """SIGTERM while the server is unreachable: the final update is retried until the abort grace (6 s here) is over
    and left in the spool, then a second pilot replays it. About 10 s: the grace is waited out, then a second run."""
    panda_id = panda.submit_job(outputs=["o.dat"], job_pars="-c 'sleep 2; echo x > o.dat'")
    first = tmp_path / "first"
    first.mkdir()
    proc = start_pilot(panda, first, env={"PILOT_CFG_PILOT_ABORT_GRACE": "6"})
    panda.wait_for(panda_id, {"running"}, timeout=60)
    panda.cut()
    try:
        proc.send_signal(signal.SIGTERM)  # the batch system ends the pilot while the server is away
        run = finish(proc, first, timeout=120)  # it gives up delivering when its abort grace is over
    finally:
        panda.restore()
    assert run.returncode == 143
    spooled = glob.glob(os.path.join(str(first), "PanDA_Pilot3_*", "spool", "*.final.update.json"))
    assert len(spooled) == 1, run.stderr[-3000:]
    assert json.load(open(spooled[0]))["data"]["pilotErrorCode"] == 1201
    main_dir = os.path.dirname(os.path.dirname(spooled[0]))
    second = tmp_path / "second"
    second.mkdir()
    replay = finish(start_pilot(panda, second, "--replay-spool", main_dir), second)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "replayed 1 spooled final update" in replay.stderr
    assert not os.path.exists(spooled[0])
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 1201 and record["jobStatus"] == "holding"


def test_no_jobs_ends_quickly_with_exit_0(panda, tmp_path):
    started = time.time()
    run = finish(start_pilot(panda, tmp_path), tmp_path)
    assert run.returncode == 0 and "No jobs" in run.stderr
    assert time.time() - started < 15


def test_token_without_production_role_is_refused(panda, tmp_path):
    """A valid token without the production role: 1163 (exit 68) at the first refusal, no retries."""
    panda.submit_job()
    proc = start_pilot(panda, tmp_path, "-x", "2", env=panda.pilot_env(tmp_path, role="user"))
    run = finish(proc, tmp_path)
    assert run.returncode == 68, run.stderr[-3000:]
    assert "1163 NOPROXY" in run.stderr and run.stderr.count("refused the pilot's token") == 1
