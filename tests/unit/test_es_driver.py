"""The event-service driver with a real payload process (the example payload) and a scripted range source:
every range answered and reported once, outputs stored per range, in-flight ranges failed on a stop, time-short
stop, bad outputs. The server side is tested in tests/integration/test_eventservice.py."""

import os
import subprocess
import sys
import threading
import time
import types

import pytest

from pilot.settings import Settings
from pilot.config import load_config
from pilot.eventservice import example_payload
from pilot.eventservice.driver import EventServiceDriver
from pilot.eventservice.kinds import refusal
from pilot.job import Job
from pilot.queuedata import from_dict
from pilot.trigger import Trigger

PAYLOAD = example_payload.__file__


class Source:
    def __init__(self, n):
        self.ranges = [{"eventRangeID": f"1-2-3-{i}-1", "startEvent": i * 10, "lastEvent": i * 10 + 9,
                        "LFN": "in.root", "GUID": "g", "scope": "s"} for i in range(n)]
        self.updates, self.fetches = [], 0
        self.lock = threading.Lock()

    def fetch(self, count):
        with self.lock:
            self.fetches += 1
            got, self.ranges = self.ranges[:count], self.ranges[count:]
            return got

    def update(self, updates):
        with self.lock:
            self.updates += updates
        return True, []


def make(tmp_path, n, **cfg):
    env = {f"PILOT_CFG_EVENTSERVICE_{k.upper()}": str(v) for k, v in cfg.items()}
    env["PILOT_CFG_EVENTSERVICE_UPDATE_INTERVAL"] = "0.1"
    workdir, out = tmp_path / "work", tmp_path / "storage"
    workdir.mkdir()
    queue = from_dict({"nickname": "Q", "acopytools": {"es_events": ["mv"], "write_lan": ["mv"]}}, "Q")
    abort = Trigger("abort")
    started = time.monotonic()
    ctx = types.SimpleNamespace(config=load_config(env=env), queuedata=queue, abort=abort, storage={},
                                paths=types.SimpleNamespace(main=str(tmp_path), output_dir=str(out)),
                                remaining=lambda: 3600.0, delivery_deadline=lambda: started + 60,
                                stageout_deadline=lambda share=2 / 3: float("inf"),
                                settings=Settings(queue="Q", use_rucio_traces=False, capath=None))
    job = Job(jobid="42", jobset_id="7", es_kind="eventservice", workdir=str(workdir), started_at=time.time())
    source = Source(n)
    return ctx, job, source, EventServiceDriver(ctx, job, None, source=source)


def run_payload(driver, job, *args, on_start=None):
    env = dict(os.environ, **driver.prepare())
    driver.start()
    proc = subprocess.Popen([sys.executable, PAYLOAD, *args], cwd=job.workdir, env=env)
    if on_start:
        on_start(proc)
    code = proc.wait(timeout=30)
    driver.finish(code)
    return code


def test_all_ranges_answered_stored_and_reported_once(tmp_path):
    ctx, job, source, driver = make(tmp_path, 25, lookahead_per_core=3, fetch_batch=4)
    assert run_payload(driver, job, "--fail-every", "5") == 0
    ids = [u["eventRangeID"] for u in source.updates]
    assert sorted(ids) == sorted(f"1-2-3-{i}-1" for i in range(25)) and len(set(ids)) == 25
    finished = [u for u in source.updates if u["eventStatus"] == "finished"]
    failed = [u for u in source.updates if u["eventStatus"] == "failed"]
    assert len(finished) == 20 and len(failed) == 5 and all(u["errorCode"] == 1224 for u in failed)
    stored = os.listdir(tmp_path / "storage")
    assert len(stored) == 20 and all(name.endswith(".dat") for name in stored)
    assert not [n for n in os.listdir(job.workdir) if n.startswith(("1-2-3", "pilot_es"))]
    assert job.nevents == 200 and not job.failed
    assert not os.path.exists(driver.reporter.path)  # spool emptied once acknowledged


def test_stop_fails_in_flight_ranges(tmp_path):
    ctx, job, source, driver = make(tmp_path, 100, lookahead_per_core=2, fetch_batch=2)

    def stop_later(proc):
        def fire():
            while len([u for u in source.updates if u["eventStatus"] == "finished"]) < 3:
                time.sleep(0.02)
            ctx.abort.fire(1201, "SIGTERM")
            proc.terminate()
        threading.Thread(target=fire, daemon=True).start()

    run_payload(driver, job, "--sleep", "0.05", on_start=stop_later)
    states = {u["eventRangeID"]: u for u in source.updates}
    assert len(states) == len(source.updates)  # each range reported once
    failed = [u for u in states.values() if u["eventStatus"] == "failed"]
    assert failed and all(u["errorCode"] == 1201 for u in failed)
    fetched = 100 - len(source.ranges)
    assert len(states) == fetched  # everything taken from the server got a final state
    assert fetched < 100


def test_no_ranges_and_time_short(tmp_path):
    ctx, job, source, driver = make(tmp_path, 0)
    assert run_payload(driver, job) == 0
    assert job.error_code == 1238
    (tmp_path / "b").mkdir()
    ctx, job, source, driver = make(tmp_path / "b", 10)
    ctx.remaining = lambda: 10.0  # less than the stop margin: not one range is asked for
    assert run_payload(driver, job) == 0
    assert source.fetches == 0 and job.error_code == 1238


def test_softkill_finishes_what_is_in_flight_then_ends(tmp_path):
    ctx, job, source, driver = make(tmp_path, 50, lookahead_per_core=2, fetch_batch=2, update_batch=1)
    plain_update = source.update

    def update(updates):
        plain_update(updates)
        return True, ["softkill"]

    source.update = update
    assert run_payload(driver, job, "--sleep", "0.02") == 0  # told "end", exited by itself
    states = [u["eventStatus"] for u in source.updates]
    assert 0 < len(states) < 50 and states.count("finished") >= len(states) - 4, states
    assert not job.kill.is_set()


def test_output_outside_workdir_fails_the_range(tmp_path):
    ctx, job, source, driver = make(tmp_path, 1)
    env = dict(os.environ, **driver.prepare())
    driver.start()
    script = ("import json,os\nr=open(os.environ['PILOT_ES_RANGES']);w=open(os.environ['PILOT_ES_REPLIES'],'w')\n"
              "m=json.loads(r.readline())\nos.symlink('/etc/passwd','link')\n"
              "w.write(json.dumps({'eventRangeID':m['eventRangeID'],'status':'finished','output':'link'})+'\\n')\n"
              "w.flush()\nassert json.loads(r.readline())['type']=='end'\n")
    code = subprocess.run([sys.executable, "-c", script], cwd=job.workdir, env=env, timeout=30).returncode
    driver.finish(code)
    assert [u["eventStatus"] for u in source.updates] == ["failed"] and source.updates[0]["errorCode"] == 1165


@pytest.mark.parametrize("kind,code", [("hpo", 1300), ("finegrained", 1300), ("eventservice", None),
                                       ("esmerge", None), ("", None)])
def test_refused_kinds(kind, code):
    job = Job(jobid="1", es_kind=kind, jobset_id="5")
    channel = types.SimpleNamespace(name="panda", api_call=None)
    found = refusal(job, channel)
    assert (found[0] if found else None) == code
    if kind == "eventservice":
        assert refusal(job, types.SimpleNamespace(name="local"))[0] == 1300
        assert refusal(Job(jobid="1", es_kind=kind, jobset_id="NULL"), channel)[0] == 1228
