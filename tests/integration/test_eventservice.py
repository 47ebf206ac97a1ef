"""Event-service jobs through pilot.py, the real PanDA server (event ranges in its JEDI_Events table) and a real
S3 server (moto_server) for the range outputs: the acceptance runs of issue 14."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pilot.eventservice import example_payload
from tests.e2e.pilotrun import PILOT, PilotRun

pytestmark = pytest.mark.slow

FINISHED, SENT, RUNNING, READY, FAILED = "3", "1", "2", "0", "7"


def es_job(panda, task_id, jobset_id, n_ranges, pars):
    """An event-service job as JEDI makes one: eventService=1 + specialHandling 'eventservice', its ranges
    waiting (status ready, PandaID = the jobset) in JEDI_Events."""
    panda_id = panda.submit_job(transformation="python3", job_pars=f"{example_payload.__file__} {pars}",
                                outputs=[f"HITS.{task_id}.pool.root"],  # made by the merge job, not here
                                eventService=1, specialHandling="eventservice", jediTaskID=task_id,
                                jobsetID=jobset_id, lockedby="jedi")
    panda.sql("insert into doma_panda.jedi_events (jeditaskid, pandaid, fileid, job_processid, datasetid, status, "
              "def_min_eventid, def_max_eventid, attemptnr, event_offset) "
              f"select {task_id}, {jobset_id}, 1, g, 1, 0, g * 10, g * 10 + 9, 1, {jobset_id} "
              f"from generate_series(1, {n_ranges}) g")
    return panda_id


def range_states(panda, task_id):
    rows = panda.sql(f"select status, count(*) from doma_panda.jedi_events where jeditaskid={task_id} group by 1")
    return {status: int(count) for status, count in rows}


def start_pilot(panda, s3, tmp_path, env=None, *extra):
    return subprocess.Popen(pilot_cmd(panda, s3, tmp_path, *extra), cwd=str(tmp_path),
                            env=pilot_env(panda, s3, tmp_path, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def pilot_env(panda, s3, tmp_path, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    environ = dict(clean, **panda.pilot_env(tmp_path), **s3.env(), AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                   PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.5", PILOT_CFG_EVENTSERVICE_UPDATE_INTERVAL="1")
    environ.update(env or {})
    return environ


def pilot_cmd(panda, s3, tmp_path, *extra):
    """pilot.py for the test server's queue, range outputs and logs on the S3 server."""
    ddm = tmp_path / "ddm.json"
    ddm.write_text(json.dumps({"OS_ES_TEST": s3.storage_entry("pilot-es", "OS_ES"),
                               "OS_LOGS_TEST": s3.storage_entry("pilot-logs", "OS_LOGS")}))
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({
        "nickname": panda.queue, "panda_resource": panda.queue, "state": "ACTIVE", "status": "online",
        "maxrss": 16000, "maxwdir": 20000, "copytools": {"s3": {}},
        "acopytools": {"es_events": ["s3"], "pl": ["s3"], "write_lan": ["s3"], "read_lan": ["s3"]},
        "astorages": {"es_events": ["OS_ES_TEST"], "pl": ["OS_LOGS_TEST"], "write_lan": ["OS_ES_TEST"]}}))
    return [sys.executable, PILOT, "-q", panda.queue, "--url", panda.url, "--queuedata-url", str(queue),
            "--storagedata-url", str(ddm), "-j", "managed", "-a", str(tmp_path), *extra]


def test_hundred_ranges_all_finished_outputs_on_s3(panda, s3, tmp_path):
    """Acceptance: 100 ranges through the real server, every output on the S3 server, every range finished.
    Over 10 s: 100 ranges and their updates through the werkzeug test server (~0.1 s per request here)."""
    task_id, jobset_id = 91001, 71001
    panda_id = es_job(panda, task_id, jobset_id, 100, "--sleep 0.02")
    proc = start_pilot(panda, s3, tmp_path)
    out, err = proc.communicate(timeout=300)
    run = PilotRun(str(tmp_path), proc, out, err)
    assert proc.returncode == 0, err[-4000:]
    assert range_states(panda, task_id) == {FINISHED: 100}, err[-4000:]
    objects = [key for key in s3.keys_of("pilot-es", f"{panda.queue}/") if f"{task_id}-{panda_id}-" in key]
    assert len(objects) == 100
    sample = s3.get("pilot-es", objects[0]).decode()
    assert sample.startswith(objects[0].split("/")[-1].rsplit(".", 2)[0])  # the range's own output
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 0 and int(record["nEvents"]) == 1000, (record["nEvents"], err[-3000:])
    assert any(key.endswith(".log.tgz") for key in s3.keys_of("pilot-logs", f"{panda.queue}/"))
    log_line = [line for line in run.stderr.splitlines() if "event ranges:" in line]
    assert log_line and "100 finished, 0 failed, 0 update(s) undelivered" in log_line[-1], log_line


def test_sigterm_halfway_leaves_finished_ranges_finished(panda, s3, tmp_path):
    """Acceptance: a pilot SIGTERMed halfway: the ranges it finished stay finished (their outputs on S3), the
    ones in flight are failed, the rest still ready for another pilot; none is left sent/running. Over 10 s: it
    waits for 30 ranges of 0.1 s to be finished in the database before the signal."""
    task_id, jobset_id = 91002, 71002
    panda_id = es_job(panda, task_id, jobset_id, 100, "--sleep 0.1")
    proc = start_pilot(panda, s3, tmp_path)
    deadline = time.monotonic() + 120
    while range_states(panda, task_id).get(FINISHED, 0) < 30:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-4000:] if proc.poll() else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    states = range_states(panda, task_id)
    assert SENT not in states and RUNNING not in states, (states, err[-4000:])
    assert states.get(FINISHED, 0) >= 30 and states.get(FAILED, 0) >= 1, (states, err[-4000:])
    assert states.get(READY, 0) >= 1 and sum(states.values()) == 100, (states, err[-4000:])
    objects = [key for key in s3.keys_of("pilot-es", f"{panda.queue}/") if f"{task_id}-{panda_id}-" in key]
    assert len(objects) == states[FINISHED], err[-4000:]  # a range is finished only once its output is stored
    failed = panda.sql(f"select distinct error_code from doma_panda.jedi_events where jeditaskid={task_id} "
                       f"and status=7")
    assert failed == [["1201"]], (failed, err[-4000:])
    record = panda.job_record(panda_id)
    assert record["pilotErrorCode"] == 1201, err[-3000:]
    assert f"{panda.queue}/{record['jobName']}.log.tgz" in s3.keys_of("pilot-logs", f"{panda.queue}/")  # log got out


def test_sigkilled_pilot_range_updates_replayed_from_the_spool(panda, s3, tmp_path):
    """No range update is lost: a pilot SIGKILLed while its finished ranges wait in the spool (updates held back
    by a long update interval) leaves them in <main dir>/spool/events-<PandaID>.jsonl; the next pilot given
    --replay-spool delivers them and the server marks those ranges finished. Over 10 s: two pilots and a real
    server."""
    task_id, jobset_id = 91003, 71003
    panda_id = es_job(panda, task_id, jobset_id, 40, "--sleep 0.05")
    first = tmp_path / "first"
    first.mkdir()
    proc = start_pilot(panda, s3, first, env={"PILOT_CFG_EVENTSERVICE_UPDATE_INTERVAL": "3600",
                                               "PILOT_CFG_EVENTSERVICE_UPDATE_BATCH": "1000"})
    deadline = time.monotonic() + 120
    spooled = []
    while len(spooled) < 10:
        assert proc.poll() is None and time.monotonic() < deadline, "pilot ended before spooling 10 updates"
        spooled = [line for path in first.glob(f"PanDA_Pilot3_*/spool/events-{panda_id}.jsonl")
                   for line in path.read_text().splitlines() if '"finished"' in line]
        time.sleep(0.1)
    proc.kill()
    proc.communicate(timeout=30)
    spooled = [json.loads(line) for path in first.glob(f"PanDA_Pilot3_*/spool/events-{panda_id}.jsonl")
               for line in path.read_text().splitlines()]
    assert range_states(panda, task_id).get(FINISHED, 0) == 0  # nothing was sent before the kill
    finished_ids = {u["eventRangeID"] for u in spooled if u["eventStatus"] == "finished"}
    main_dir = next(first.glob("PanDA_Pilot3_*"))
    second = tmp_path / "second"
    second.mkdir()
    done = subprocess.run(pilot_cmd(panda, s3, second, "--replay-spool", str(main_dir)), cwd=str(second),
                          capture_output=True, text=True, timeout=120, env=pilot_env(panda, s3, second))
    assert "spooled event range update(s)" in done.stderr, done.stderr[-3000:]
    rows = panda.sql(f"select {task_id} || '-' || {panda_id} || '-' || fileid || '-' || job_processid || '-' "
                     f"|| attemptnr from doma_panda.jedi_events where jeditaskid={task_id} and status=3")
    assert finished_ids and finished_ids <= {row[0] for row in rows}
    assert not list(main_dir.glob("spool/events-*.jsonl"))
