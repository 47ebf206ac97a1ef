"""Real pilot.py processes against a real CouchDB-compatible server (pouchdb-server): PiCaS token pools."""

import io
import json
import os
import signal
import subprocess
import tarfile
import time

import psutil
import pytest

from tests.e2e.pilotrun import alive_pids, pilot_cmd
from tests.integration.couchdb import token

pytestmark = pytest.mark.slow

QUEUE = "PICAS_TEST"


def picas_cmd(base, couchdb, db, *extra):
    """A pilot that keeps taking tokens until the todo view is empty (a time floor allows more than one job)."""
    queuedata = os.path.join(str(base), "queuedata.json")
    with open(queuedata, "w") as handle:
        json.dump({QUEUE: {"nickname": QUEUE, "state": "ACTIVE", "status": "online", "timefloor": 60,
                           "maxtime": 3600, "copytools": {"mv": {"setup": ""}},
                           "acopytools": {"pl": ["mv"], "default": ["mv"]}}}, handle)
    cmd = pilot_cmd(base, "--job-source", couchdb.source(db), "--queuedata-url", queuedata, "-v", "1000", *extra)
    cmd[cmd.index("LOCAL")] = QUEUE
    return cmd


def start_pilot(base, couchdb, db, env=None, *extra):
    os.makedirs(str(base), exist_ok=True)
    return subprocess.Popen(picas_cmd(base, couchdb, db, *extra), cwd=str(base), env=env or couchdb.pilot_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def test_fifty_tokens_three_pilots_each_token_exactly_once(tmp_path, couchdb):
    """Three pilots share fifty tokens: each runs exactly once. Over 10 s: fifty payloads, each claimed, run and
    reported through pouchdb, by three pilots on two cores."""
    db = couchdb.new_db()
    ran = tmp_path / "ran.txt"
    ids = [f"L229507_SB{n:03d}" for n in range(50)]
    # each run appends its token id (one short line: O_APPEND writes do not interleave)
    couchdb.add_tokens(db, [token(tid, command=f'echo "$TOKEN" >> {ran}; echo processed $TOKEN; exit 0',
                                  OBSID="L229507") for n, tid in enumerate(ids)])
    pilots = [start_pilot(tmp_path / f"p{i}", couchdb, db) for i in range(3)]
    outputs = [proc.communicate(timeout=240) for proc in pilots]
    for proc, (_, err) in zip(pilots, outputs):
        assert proc.returncode == 0, err[-3000:]
    lines = ran.read_text().split()
    assert sorted(lines) == sorted(ids), "a token ran twice or never"
    assert couchdb.view_ids(db, "todo") == [] and couchdb.view_ids(db, "locked") == []
    assert couchdb.view_ids(db, "done") == sorted(ids)
    hosts_per_pilot = [err.count("PiCaS: claimed token") for _, err in outputs]
    assert sum(hosts_per_pilot) == 50 and all(count > 0 for count in hosts_per_pilot), hosts_per_pilot
    for n, tid in enumerate(ids):
        doc = couchdb.doc(db, tid)
        assert doc["status"] == "done" and doc["done"] > 0 and doc["lock"] > 0
        assert doc["output"] == 0 and doc["exit_code"] == 0 and doc["scrub_count"] == 0
        assert f"processed {tid}" in couchdb.attachment(db, tid, "payload.log").decode()
    assert couchdb.overview(db) == {"done": 50}


def test_exit_codes_failing_payload_error_record_and_log(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("ok", command="echo fine"),
                            token("bad", command="echo some output; echo 'prefactor: bad_alloc' >&2; exit 98"),
                            token("nocmd")])
    proc = start_pilot(tmp_path, couchdb, db)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert couchdb.view_ids(db, "done") == ["ok"] and couchdb.view_ids(db, "error") == ["bad", "nocmd"]
    bad = couchdb.doc(db, "bad")
    assert bad["lock"] == -1 and bad["done"] == -1 and bad["status"] == "error"
    assert bad["output"] == 98 and bad["exit_code"] == 98  # the payload's own (GRID_LRT-style) exit code
    record = bad["error"][-1]
    assert record["pilot_error_code"] == bad["pilot_error_code"] != 0 and record["grid_lrt_code"] == 99
    assert record["exception"] and record["message"] and record["time"] > 0
    log = couchdb.attachment(db, "bad", "payload.log").decode()
    assert "some output" in log and "bad_alloc" in log and "pilotErrorCode=" in log
    nocmd = couchdb.doc(db, "nocmd")
    assert nocmd["pilot_error_code"] == 1008 and "neither a command nor a script" in nocmd["error"][-1]["message"]
    assert nocmd["output"] == 99


def _sandbox(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data, linkname in members:
            info = tarfile.TarInfo(name)
            if linkname:
                info.type, info.linkname = tarfile.SYMTYPE, linkname
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_sandboxes_good_empty_and_unsafe(tmp_path, couchdb):
    good = _sandbox(tmp_path / "good.tgz", [
        ("launch.sh", b'#!/bin/bash\necho "step=$STEP obsid=$OBSID token=$TOKEN arg=$1"\n'
                      b'echo gsiftp://gridftp.grid.sara.nl:2811/pnfs/out/$OBSID > results_location.txt\n', None),
        ("tokvar.cfg", b"STEP=pref_cal1\nOBSID\n", None)])
    (tmp_path / "empty.tgz").write_bytes(b"")
    escaping = _sandbox(tmp_path / "evil.tgz", [("launch.sh", b"echo hi\n", None), ("../escape.sh", b"x", None)])
    absolute = _sandbox(tmp_path / "abs.tgz", [("/tmp/pilot-test-abs.sh", b"x", None)])
    link = _sandbox(tmp_path / "link.tgz", [("etc", b"", "../../../../etc")])
    db = couchdb.new_db()
    couchdb.add_tokens(db, [
        token("good", script="launch.sh", parameters=["x y"], SBXloc=good, OBSID="L229507"),
        token("empty", script="launch.sh", SBXloc=str(tmp_path / "empty.tgz")),
        token("dotdot", script="launch.sh", SBXloc=escaping),
        token("absolute", script="launch.sh", SBXloc=absolute),
        token("symlink", script="launch.sh", SBXloc=link),
        token("novar", script="launch.sh", SBXloc=good)])  # tokvar.cfg wants OBSID, which this token lacks
    proc = start_pilot(tmp_path / "run", couchdb, db)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert couchdb.view_ids(db, "done") == ["good"]
    doc = couchdb.doc(db, "good")
    assert doc["Results_location"] == "gsiftp://gridftp.grid.sara.nl:2811/pnfs/out/L229507"
    assert "step=pref_cal1 obsid=L229507 token=good arg=x y" in couchdb.attachment(db, "good", "payload.log").decode()
    expected = {"empty": (1246, -2, "empty (0 bytes"), "dotdot": (1110, 12, "outside the job dir"),
                "absolute": (1110, 12, "absolute path"), "symlink": (1110, 12, "leaves the job dir"),
                "novar": (1110, 1, "OBSID is not set")}
    for tid, (code, lrt, text) in expected.items():
        doc = couchdb.doc(db, tid)
        assert doc["status"] == "error" and doc["pilot_error_code"] == code, (tid, doc)
        assert doc["output"] == lrt and doc["grid_lrt_code"] == lrt and text in doc["pilot_error_diag"], (tid, doc)
    assert not (tmp_path / "run" / "escape.sh").exists() and not os.path.exists("/tmp/pilot-test-abs.sh")


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_pilot_leaves_a_lock_that_a_later_scrub_resets(tmp_path, couchdb):
    """A SIGKILLed pilot's lock stays until a pilot with a shorter lease than its age resets it. Over 10 s on a
    loaded machine: three pilot runs one after the other (killed, default lease, short lease), each ~2 s idle."""
    db = couchdb.new_db()
    marker = tmp_path / "first-run"
    # the first run hangs (the pilot is killed under it); the second finishes at once
    couchdb.add_tokens(db, [token("long", command=f"if [ -e {marker} ]; then echo second run; exit 0; fi; "
                                                  f"touch {marker}; exec sleep 300")])
    first = start_pilot(tmp_path / "a", couchdb, db)
    _wait_for(lambda: couchdb.doc(db, "long").get("status") == "running", 60, "the first pilot's payload")
    payload = [child.pid for child in psutil.Process(first.pid).children(recursive=True)]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    for pid in alive_pids(payload):  # the orphaned payload is ours to clean up, not the next pilot's
        os.kill(pid, signal.SIGKILL)
    assert couchdb.view_ids(db, "locked") == ["long"]
    # a pilot with the default lease (2 days) leaves the lock alone
    proc = start_pilot(tmp_path / "b", couchdb, db)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "no token in the todo view" in err, err[-3000:]
    assert couchdb.view_ids(db, "locked") == ["long"]
    # one with a 2 s lease resets it (scrub_count + 1) and runs it; the lock is made 10 s old rather than waited for
    stale = couchdb.doc(db, "long")
    stale["lock"] = stale["heartbeat"] = min(stale["lock"], stale.get("heartbeat") or stale["lock"]) - 10
    couchdb.http.put(f"{couchdb.url}/{db}/long", json=stale).raise_for_status()
    proc = start_pilot(tmp_path / "c", couchdb, db, couchdb.pilot_env(PILOT_CFG_PICAS_LEASE="2"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "without a heartbeat (lease 2 s): reset, scrub_count 1" in err
    doc = couchdb.doc(db, "long")
    assert doc["status"] == "done" and doc["scrub_count"] == 1 and doc["output"] == 0
    assert "second run" in couchdb.attachment(db, "long", "payload.log").decode()


def test_credentials_missing_or_wrong(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("t1", command="true")])
    env = couchdb.pilot_env()
    for name in ("PICAS_USER", "PICAS_PASSWORD"):
        env.pop(name)
    proc = start_pilot(tmp_path / "none", couchdb, db, env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "PiCaS credentials missing" in err and "1364" in err, err[-2000:]
    proc = start_pilot(tmp_path / "wrong", couchdb, db, couchdb.pilot_env(PICAS_PASSWORD="wrong-secret"), "-x", "3")
    _, err = proc.communicate(timeout=60)
    # refused credentials: 1163 (exit 68) at the first refusal, not -x attempts
    assert proc.returncode == 68 and "401" in err and "check PICAS_USER/PICAS_PASSWORD" in err, err[-2000:]
    assert err.count("PiCaS refused our credentials") == 1 and "not retried" in err
    assert "wrong-secret" not in err
    assert couchdb.view_ids(db, "todo") == ["t1"]


def test_running_token_carries_live_progress(tmp_path, couchdb):
    """While the payload runs, the token's `progress` gets the same usage a PanDA running update carries (CPU
    time, memory, I/O, cores), as docs/picas.md promises; read from pouchdb before the payload ends."""
    db = couchdb.new_db()
    stop = tmp_path / "stop"
    # busy until the test has seen the progress (60 s at most): the payload must burn CPU while it is watched
    busy = f'end=$(($(date +%s)+60)); i=0; while [ ! -e {stop} ] && [ $(date +%s) -lt $end ]; do i=$((i+1)); done'
    couchdb.add_tokens(db, [token("busy", command=busy)])
    proc = start_pilot(tmp_path, couchdb, db, couchdb.pilot_env(PILOT_CFG_PILOT_HEARTBEAT="1",
                                                               PILOT_CFG_PILOT_MEMORY_USAGE_VERIFICATION_TIME="1"))
    progress = None
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        doc = couchdb.doc(db, "busy")
        seen = doc.get("progress") or {}
        if doc.get("status") == "running" and seen.get("cpuConsumptionTime", 0) > 0 and seen.get("maxRSS"):
            progress = seen
            break
        time.sleep(0.2)
    stop.touch()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert progress is not None, "no progress with usage on the token while the payload ran"
    assert progress["state"] == "running" and progress["maxPSS"] > 0 and progress["maxVMEM"] >= progress["maxRSS"]
    assert progress["meanCoreCount"] > 0 and progress["coreCount"] == 1
    assert "totRCHAR" in progress and "avgPSS" in progress and "maxSWAP" in progress
    assert couchdb.doc(db, "busy")["status"] == "done"
