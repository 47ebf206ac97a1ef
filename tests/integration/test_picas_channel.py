"""The PiCaS channel in-process against a real pouchdb-server: claiming races, lost tokens, views, srm.txt
inputs, and final updates that survive an unreachable server (spooled, replayed)."""

import os
import threading
import time
import types

import pytest

from pilot.channels.picas import PicasChannel
from pilot.config import load_config
from pilot.errors import PilotError
from pilot.job import JobState
from pilot.jobwire import update_dict
from pilot.trigger import Trigger
from tests.integration.couchdb import PASSWORD, USER, token
from pilot.settings import Settings

SARA = "srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/L229507/L229507_SB{:03d}_uv.MS_f6.tar"


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("PICAS_USER", USER)
    monkeypatch.setenv("PICAS_PASSWORD", PASSWORD)


def make_ctx(tmp_path, **picas):
    env = {f"PILOT_CFG_PICAS_{key.upper()}": str(value) for key, value in picas.items()}
    env.update(PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL="0.05", PILOT_CFG_PILOT_UPDATE_RETRY_MAX="0.1")
    deadline = [float("inf")]
    ctx = types.SimpleNamespace(config=load_config(env=env), abort=Trigger("abort"),
                                settings=Settings(queue="Q", capath=None, cacert=None),
                                paths=types.SimpleNamespace(main=str(tmp_path)))
    ctx.delivery_deadline = lambda: deadline[0]
    ctx.deadline = deadline
    return ctx


def channel(tmp_path, couchdb, db, name="spool", **picas):
    return PicasChannel(make_ctx(tmp_path, **picas), f"{couchdb.url}/{db}", str(tmp_path / name))


def test_concurrent_claims_never_share_a_token(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token(f"t{n:02d}", command="true") for n in range(40)])
    claimed, errors = [], []

    def worker(index):
        chan = channel(tmp_path, couchdb, db, f"spool{index}", view_window=5)
        try:
            while True:
                jobs = chan.fetch(1)
                if not jobs:
                    return
                claimed.append(chan.claims[jobs[0].jobid].token_id)
        except Exception as exc:  # reported below: a thread must not hide a failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and sorted(claimed) == [f"t{n:02d}" for n in range(40)]
    assert couchdb.view_ids(db, "locked") == sorted(claimed)


def test_a_stale_copy_loses_with_409_and_the_next_token_is_tried(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("a", command="true"), token("b", command="true")])
    chan = channel(tmp_path, couchdb, db)
    stale = couchdb.doc(db, "a")
    other = dict(stale, lock=int(time.time()), hostname="elsewhere")
    couchdb.http.put(f"{couchdb.url}/{db}/a", json=other).raise_for_status()
    assert chan._try_claim(dict(stale)) is None  # the rev moved on: 409, not a double claim
    assert couchdb.doc(db, "a")["hostname"] == "elsewhere"
    jobs = chan.fetch(1)
    assert [chan.claims[job.jobid].token_id for job in jobs] == ["b"] and chan.fetch(1) == []


def test_lost_token_stops_the_payload_and_is_never_overwritten(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("a", command="true")])
    chan = channel(tmp_path, couchdb, db)
    job = chan.fetch(1)[0]
    # another pilot scrubbed and re-claimed it
    doc = couchdb.doc(db, "a")
    doc.update(lock=doc["lock"] + 5, pilot_claim="someone-else", scrub_count=1)
    couchdb.http.put(f"{couchdb.url}/{db}/a", json=doc).raise_for_status()
    reply = chan.update(job, update_dict(job, "running", {}, False), False)
    assert not reply.ok and job.kill.is_set() and job.kill.code == 1144
    job.state = JobState.FINISHED
    assert not chan.update(job, update_dict(job, "finished", {}, True), True).ok
    assert couchdb.doc(db, "a")["pilot_claim"] == "someone-else" and couchdb.doc(db, "a")["done"] == 0
    assert [name for name in os.listdir(tmp_path / "spool") if name.endswith(".refused")]


def test_views_are_created_only_when_allowed(tmp_path, couchdb):
    db = couchdb.new_db(views=False)
    couchdb.add_tokens(db, [token("a", command="true")])
    with pytest.raises(PilotError) as info:
        channel(tmp_path, couchdb, db).fetch(1)
    assert info.value.code == 1008 and "create_views" in info.value.diag
    with pytest.raises(PilotError, match="cannot be created"):  # a plain user may not write design documents
        channel(tmp_path, couchdb, db, create_views="True").fetch(1)
    admin_db = couchdb.new_db(views=False, db_admin=True)
    couchdb.add_tokens(admin_db, [token("a", command="true")])
    assert len(channel(tmp_path, couchdb, admin_db, create_views="True").fetch(1)) == 1
    assert couchdb.view_ids(admin_db, "locked") == ["a"]
    with pytest.raises(PilotError) as info:
        channel(tmp_path, couchdb, "no_such_db").fetch(1)
    assert "does not exist" in info.value.diag


def test_srm_txt_attachment_gives_the_inputs(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("a", command="true")])
    couchdb.attach(db, "a", "srm.txt", f"{SARA.format(1)}\n{SARA.format(2)}\n".encode())
    job = channel(tmp_path, couchdb, db, surl_form="gsiftp").fetch(1)[0]
    assert [spec.lfn for spec in job.inputs] == ["L229507_SB001_uv.MS_f6.tar", "L229507_SB002_uv.MS_f6.tar"]
    assert job.inputs[0].turl.startswith("gsiftp://gridftp.grid.sara.nl:2811/pnfs/grid.sara.nl/")


def test_final_update_is_spooled_while_the_server_is_away_and_replayed(tmp_path, couchdb):
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("a", command="true")])
    chan = channel(tmp_path, couchdb, db)
    job = chan.fetch(1)[0]
    job.state, job.trans_exit_code = JobState.FINISHED, 0
    data = update_dict(job, "finished", {}, True)
    good_base = chan.couch.base
    chan.couch.base = "http://127.0.0.1:9/" + db  # nothing listens on the discard port
    chan.ctx.deadline[0] = 0.0  # one attempt, then it stays in the spool
    reply = chan.update(job, data, True)
    assert not reply.ok and "spooled" in reply.where
    assert couchdb.doc(db, "a")["done"] == 0
    chan.couch.base = good_base
    later = channel(tmp_path, couchdb, db, name="other-spool")
    assert later.replay(str(tmp_path / "spool")) == 1
    doc = couchdb.doc(db, "a")
    assert doc["status"] == "done" and doc["output"] == 0
    assert not [name for name in os.listdir(tmp_path / "spool") if name.endswith(".json")]
    assert later.replay(str(tmp_path / "spool")) == 0


@pytest.mark.slow
@pytest.mark.parametrize("tool,rse", [("xrdcp", "XRD_ROOT"), ("gfal", "XRD_DAVS")])
def test_token_inputs_fetched_from_real_storage_through_pilot(couchdb, storage, tmp_path, tool, rse):
    """A token naming its inputs by URL (as GRID_LRT tokens do) on the real XRootD server: the pilot stages them
    in with the queue's copytool and the payload reads them; a token naming a missing file ends in error 1331."""
    import json
    import subprocess
    import sys
    import zlib

    from tests.e2e.pilotrun import PILOT
    from tests.integration.couchdb import token

    base = storage.root if rse == "XRD_ROOT" else storage.xrd_https
    data = {f"L229507_SB00{n}_uv.MS.tar": os.urandom(40_000 + n) for n in range(2)}
    urls = []
    for name, blob in data.items():
        storage.servers.put_file(f"lofar/ops/{tool}/{name}", blob)
        urls.append(f"{base}/lofar/ops/{tool}/{name}" if rse == "XRD_DAVS" else f"{base}//lofar/ops/{tool}/{name}")
    sums = " ".join(f"{zlib.adler32(blob) & 0xFFFFFFFF:08x}" for blob in data.values())
    check = " && ".join(f"test $(wc -c < {name}) -eq {len(blob)}" for name, blob in data.items())
    db = couchdb.new_db()
    couchdb.add_tokens(db, [token("fetch", command=f"{check} && echo inputs ok {sums}", input=urls, OBSID="L229507"),
                            token("gone", command="true", input=[urls[0].replace("SB000", "SB999")])])
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": "PICAS_STORE", "state": "ACTIVE", "status": "online", "timefloor": 60,
                                 "copytools": {tool: {}, "mv": {}},
                                 "acopytools": {"read_lan": [tool], "pl": ["mv"], "default": ["mv"]}}))
    cmd = [sys.executable, PILOT, "-q", "PICAS_STORE", "--queuedata-url", str(queue), "-v", "10", "-a",
           str(tmp_path), "--job-source", couchdb.source(db), "--output-dir", str(tmp_path / "out")]
    env = dict(couchdb.pilot_env(), **storage.env())
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = couchdb.doc(db, "fetch")
    assert done["status"] == "done" and done["output"] == 0, proc.stderr[-3000:]
    assert f"inputs ok {sums}" in couchdb.attachment(db, "fetch", "payload.log").decode()
    gone = couchdb.doc(db, "gone")
    assert gone["status"] == "error" and gone["lock"] == gone["done"] == -1
    assert "1331" in json.dumps(gone["error"]), gone["error"]
