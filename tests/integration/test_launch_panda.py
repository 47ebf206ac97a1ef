"""Launch files and getJob behaviour of issue 13 against the real PanDA server: the server's schedconfig as the
queue data source (with the on-disk cache), pandaJobData.out handed over by a wrapper, jobs of the same task on a
multi-job queue (--allow-same-user), and asking again after "no jobs" while the time floor lasts."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun

pytestmark = pytest.mark.slow


def queue_file(tmp_path, **fields):
    path = tmp_path / "queue.json"
    data = {"nickname": "TEST_QUEUE", "panda_resource": "TEST_QUEUE", "state": "ACTIVE", "status": "online",
            "maxrss": 16000, "maxwdir": 20000, "copytools": {"mv": {}}, "acopytools": {"default": ["mv"]}}
    data.update(fields)
    path.write_text(json.dumps(data))
    return str(path)


def pilot(panda, tmp_path, *extra, env=None, launch=None, wait=True):
    cmd = [sys.executable, PILOT, "-q", panda.queue, "--url", panda.url, "-j", "managed", "-a", str(tmp_path),
           *extra]
    environ = dict(os.environ, **panda.pilot_env(tmp_path), PILOT_CFG_PILOT_GETJOB_RETRY_INITIAL="0.5",
                   PILOT_CFG_PILOT_GETJOB_RETRY_MAX="1", PILOT_CFG_INFORMATION_QUEUES_URL="")
    environ.pop("QUEUEDATA_SERVER_URL", None)
    environ.update(env or {})
    proc = subprocess.Popen(cmd, cwd=str(launch or tmp_path), env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=120)
    return PilotRun(str(tmp_path), proc, out, err)


def test_queue_data_from_the_servers_schedconfig_then_from_the_cache(panda, tmp_path):
    """No launch-dir file, no --queuedata-url: the server's /cache/schedconfig/<queue>.all.json, then the cache."""
    url = f"{panda.url.rstrip('/')}/cache/schedconfig/{panda.queue}.all.json"
    first = pilot(panda, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"queue data for {panda.queue} from {url}" in first.stderr
    cache = tmp_path / ".pilot-cache" / f"schedconfig-{panda.queue}.json"
    assert json.loads(cache.read_text())["nickname"] == panda.queue
    second = pilot(panda, tmp_path)
    assert second.returncode == 0 and f"from cache {cache}" in second.stderr, second.stderr[-3000:]
    expired = pilot(panda, tmp_path, env={"PILOT_CFG_INFORMATION_QUEUEDATA_CACHE_AGE": "0"})
    assert f"from {url}" in expired.stderr, expired.stderr[-3000:]


def test_queue_unknown_to_the_server_is_1116(panda, tmp_path):
    run = pilot(panda, tmp_path, "-q", "NO_SUCH_QUEUE")
    assert run.returncode == 71, run.stderr[-3000:]
    assert "NO_SUCH_QUEUE.all.json" in run.stderr and "404" in run.stderr


def test_pandajobdata_from_a_wrapper_is_run_and_reported_to_the_server(panda, tmp_path):
    """The wrapper (or Harvester's truePilot PUSH) got the job; the pilot runs it and reports it to the server."""
    panda_id = panda.submit_job(job_pars="-c 'echo from the launch dir'")
    reply = panda.acquire_jobs(node="wrapper-node")
    job = reply["data"]["jobs"][0]
    assert int(job["PandaID"]) == panda_id and panda.job_status(panda_id) == "sent"
    launch = tmp_path / "launch"
    launch.mkdir()
    (launch / "pandaJobData.out").write_text(json.dumps({str(panda_id): job}))
    run = pilot(panda, tmp_path, "--queuedata-url", queue_file(tmp_path), "-v", "1", launch=launch)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"job(s) {panda_id} taken from {launch / 'pandaJobData.out'}" in run.stderr
    assert not (launch / "pandaJobData.out").exists()
    record = panda.job_record(panda_id)
    assert record["jobStatus"] == "holding" and record["transExitCode"] == 0, dict(record)
    assert "acquire_jobs" not in run.stderr.split("taken from")[0]  # no job was asked for before it


def test_multi_job_pilot_asks_for_the_same_task(panda, tmp_path):
    """--allow-same-user (default true): the second job request carries task_id = the first job's task."""
    first = panda.submit_job(taskID=9001, jediTaskID=9001, job_pars="-c 'exit 0'")
    other = panda.submit_job(taskID=9002, jediTaskID=9002, job_pars="-c 'exit 0'")
    same = panda.submit_job(taskID=9001, jediTaskID=9001, job_pars="-c 'exit 0'")
    run = pilot(panda, tmp_path, "--queuedata-url", queue_file(tmp_path, timefloor=1), "-v", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert panda.job_status(first) == "holding" and panda.job_status(same) == "holding"
    assert panda.job_status(other) == "activated"


def test_multi_job_pilot_without_same_user_takes_the_next_job(panda, tmp_path):
    first = panda.submit_job(taskID=9011, jediTaskID=9011)
    other = panda.submit_job(taskID=9012, jediTaskID=9012)
    run = pilot(panda, tmp_path, "--queuedata-url", queue_file(tmp_path, timefloor=1), "-v", "2",
                "--allow-same-user=False")
    assert run.returncode == 0, run.stderr[-3000:]
    assert panda.job_status(first) == "holding" and panda.job_status(other) == "holding"


def test_multi_job_pilot_asks_again_after_no_jobs(panda, tmp_path):
    """Time floor 1 min: an empty queue is asked again (back-off 0.5 s, then 1 s) and a job arriving later runs.

    About 20 s: the pilot asks until -x 20 empty replies, 1 s apart, before and after the job (the job is
    submitted after the first one, and activating it takes the server a few seconds)."""
    proc = pilot(panda, tmp_path, "--queuedata-url", queue_file(tmp_path, timefloor=1), "-v", "50", "-x", "20",
                 wait=False)
    deadline = time.time() + 30
    seen = ""
    while time.time() < deadline and "asking again" not in seen:
        logs = [os.path.join(folder, "pilotlog.txt") for folder in os.listdir(tmp_path)
                if folder.startswith("PanDA_Pilot3_")]
        seen = open(os.path.join(tmp_path, logs[0])).read() if logs and os.path.exists(
            os.path.join(tmp_path, logs[0])) else ""
        time.sleep(0.1)
    panda_id = panda.submit_job()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert panda.job_status(panda_id) == "holding"
    assert "asking again" in err and "20 empty job request(s) (-x 20)" in err
