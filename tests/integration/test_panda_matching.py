"""pilot.py against the real PanDA server with jobs as production submits them: maxWalltime equal to the queue's
maxtime, several cores, the queue's memory, a resource type. What the pilot asks for decides what it gets, so these
go through the server's own matching (acquire_jobs SQL), not a stub. Also: a refused token, and kill latency."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun

pytestmark = pytest.mark.slow

MAXTIME = 86400  # a common production queue maxtime (s)
MAXRSS = 16000  # MB


def queue_file(tmp_path, **extra):
    data = {"nickname": "TEST_QUEUE", "panda_resource": "TEST_QUEUE", "state": "ACTIVE", "status": "online",
            "maxtime": MAXTIME, "maxrss": MAXRSS, "maxwdir": 20000, "corecount": 8, "timefloor": 0,
            "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}
    data.update(extra)
    path = tmp_path / "queue.json"
    path.write_text(json.dumps(data))
    return str(path)


def run_pilot(panda, tmp_path, *extra, env=None, queue=None, timeout=180):
    cmd = [sys.executable, PILOT, "-q", panda.queue, "--url", panda.url, "--queuedata-url",
           queue or queue_file(tmp_path), "-j", "managed", "-a", str(tmp_path), *extra]
    environ = dict(os.environ, **panda.pilot_env(tmp_path), PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5",
                   PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.5")
    environ.update(env or {})
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    return proc


def finish(proc, tmp_path, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    return PilotRun(str(tmp_path), proc, out, err)


def production_job(panda, walltime=MAXTIME, priority=1000, job_pars="-c 'exit 0'", **attrs):
    """A job as JEDI makes it for an 8-core queue: walltime up to the queue's maxtime, 8 cores, the queue's memory."""
    values = dict(maxWalltime=walltime, coreCount=8, minRamCount=MAXRSS, resource_type="MCORE",
                  currentPriority=priority, assignedPriority=priority)
    values.update(attrs)
    return panda.submit_job(job_pars=job_pars, **values)


def test_job_as_long_as_the_queue_maxtime_is_taken(panda, tmp_path):
    """The usual case: maxWalltime == the queue's maxtime. Sending remaining_time (lifetime - elapsed, i.e.
    maxtime - 1 at start) on the first request would hide it: the pilot would say "No jobs" and exit 0."""
    panda_id = production_job(panda)
    run = finish(run_pilot(panda, tmp_path, "--resource-type", "MCORE"), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"job {panda_id} received" in run.stderr, run.stderr[-3000:]
    record = panda.job_record(panda_id)
    assert record["jobStatus"] == "holding" and record["pilotErrorCode"] == 0, record
    assert int(record["coreCount"]) == 8 and record["resource_type"] == "MCORE"


def test_follow_up_job_must_fit_in_what_is_left_of_the_lifetime(panda, tmp_path):
    """Under a time floor the next request carries remaining_time: a second maxtime-long job (higher priority)
    no longer fits and stays activated; a short one is taken instead."""
    first = production_job(panda, priority=3000, job_pars="-c 'sleep 1'")
    too_long = production_job(panda, priority=2000)
    short = production_job(panda, walltime=600, priority=1000)
    run = finish(run_pilot(panda, tmp_path, queue=queue_file(tmp_path, timefloor=10)), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert panda.job_status(first) == "holding" and panda.job_status(short) == "holding", run.stderr[-3000:]
    assert panda.job_status(too_long) == "activated"
    received = [line for line in run.stderr.splitlines() if " received (" in line]
    assert len(received) == 2, received


def test_refused_token_is_1163_without_retries(panda, tmp_path):
    """A token the server cannot verify (HTTP 403 "Token authentication failed"): one request, code 1163, exit 68
    -- not 1318 "no answer" after -x attempts with back-off."""
    panda.submit_job()
    token = tmp_path / "bad_token"
    good = panda.mint_token()
    token.write_text(good[:-8] + ("A" * 8 if not good.endswith("A" * 8) else "B" * 8))  # signature broken
    started = time.monotonic()
    run = finish(run_pilot(panda, tmp_path, "-x", "5", env={"OIDC_AUTH_TOKEN": str(token)}), tmp_path)
    elapsed = time.monotonic() - started
    assert run.returncode == 68, run.stderr[-3000:]
    assert "1163 NOPROXY" in run.stderr and "HTTP 403" in run.stderr, run.stderr[-3000:]
    assert run.stderr.count("refused the pilot's token") == 1  # the first refusal ends it: no retries
    assert "job received" not in run.stderr
    assert good[:20] not in run.stderr  # never the token
    print(f"refused token: exit {run.returncode} after {elapsed:.2f} s")


@pytest.mark.parametrize("check", [2])
def test_kill_latency_with_command_check(panda, tmp_path, check):
    """A server kill reaches the payload through the command check between heartbeats (job/get_status), not
    with the next heartbeat (here 1800 s away). Prints the measured latency: kill request -> pilot exit."""
    panda_id = production_job(panda, job_pars="-c 'sleep 300'")
    proc = run_pilot(panda, tmp_path, env={"PILOT_CFG_PILOT_HEARTBEAT": "1800",
                                           "PILOT_CFG_PILOT_COMMAND_CHECK": str(check)})
    panda.wait_for(panda_id, {"running"}, timeout=60)
    killed_at = time.monotonic()
    panda.kill_job(panda_id)
    run = finish(proc, tmp_path, timeout=60)
    latency = time.monotonic() - killed_at
    assert run.returncode == 0, run.stderr[-3000:]
    assert "command check found tobekilled" in run.stderr, run.stderr[-3000:]
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 1144, record
    assert latency < check + 15, latency
    print(f"kill latency: {latency:.2f} s to pilot exit (command_check {check} s, heartbeat 1800 s)")
