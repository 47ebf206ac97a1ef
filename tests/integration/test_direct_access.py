"""Direct access (remote I/O) through pilot.py against the real XRootD and nginx WebDAV servers: LAN inputs the
queue and job allow are not copied, the payload reads them through their root:// turl, the turl was checked
(size) and traced with FOUND_ROOT; WAN inputs, library tarballs and uncheckable files are copied."""

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.e2e.pilotrun import PILOT, PilotRun, job_definition, write_job

pytestmark = pytest.mark.slow


class _Traces(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = json.loads(body)
        self.received.extend(data if isinstance(data, list) else [data])
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def trace_server():
    _Traces.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Traces)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/traces/", _Traces.received
    server.shutdown()
    server.server_close()


def run(storage, tmp_path, job, queue_extra, env=None):
    jobdir = tmp_path / "jobs"
    jobdir.mkdir()
    write_job(jobdir, job)
    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps(dict({
        "nickname": "DAQ", "state": "ACTIVE", "status": "online", "copytools": {"xrdcp": {}, "gfal": {}},
        "acopytools": {"read_lan": ["xrdcp", "gfal"], "write_lan": ["xrdcp"], "pl": ["xrdcp"]},
        "astorages": {"read_lan": ["XRD_ROOT"], "write_lan": ["XRD_ROOT"], "pl": ["XRD_ROOT"]}}, **queue_extra)))
    cmd = [sys.executable, PILOT, "-q", "DAQ", "--queuedata-url", str(queue), "--job-source", f"local:{jobdir}",
           "--storagedata-url", storage.storage_data(tmp_path / "ddm.json"), "--capath", storage.cert_dir,
           "-a", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, **storage.env(), **(env or {})))
    return PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)


# the payload reads a.dat through the turl the pilot gave it and writes what it read as an output
READ_BACK = ("-c 'set -e; turl=$(python3 -c \"import json; print(json.load(open(\\\"pilot_inputs.json\\\"))"
             "[\\\"a.dat\\\"])\"); echo \"turl=$turl\"; test ! -e a.dat; xrdcp -s -f \"$turl\" readback.dat; "
             "test -e b.dat; test -e c.lib.tgz; grep -q \"$turl\" PoolFileCatalog.xml'")


def test_lan_input_read_in_place_others_copied(storage, tmp_path, trace_server):
    url, traces = trace_server
    blobs = {"a.dat": os.urandom(70_000), "b.dat": os.urandom(1000), "c.lib.tgz": os.urandom(500)}
    where = {"a.dat": "XRD_ROOT", "b.dat": "NGINX_DAVS", "c.lib.tgz": "XRD_ROOT"}
    inputs = []
    for lfn, data in blobs.items():
        _path, checksum = storage.place(where[lfn], "test", lfn, data)
        inputs.append((lfn, (len(data), checksum)))
    job = job_definition(6001, pars=READ_BACK, inputs=inputs, outputs=["readback.dat"], transferType="direct",
                         ddmEndPointIn="XRD_ROOT,NGINX_DAVS,XRD_ROOT")
    result = run(storage, tmp_path, job, {"direct_access_lan": True, "direct_access_wan": False},
                 env={"PILOT_CFG_RUCIO_URL": url})
    final = result.final(6001)
    assert final["state"] == "finished", (final.get("pilotErrorDiag"), result.stderr[-3000:])
    with open(storage.stored("XRD_ROOT", "test", "readback.dat"), "rb") as handle:
        assert handle.read() == blobs["a.dat"]
    gets = {t["filename"]: t for t in traces if t["eventType"].startswith("get_sm")}
    assert gets["a.dat"]["clientState"] == "FOUND_ROOT" and gets["a.dat"]["url"].startswith(storage.root)
    assert gets["b.dat"]["clientState"] == "DONE" and gets["c.lib.tgz"]["clientState"] == "DONE"
    assert "direct access: a.dat will be read from root://" in result.pilotlog()


def test_copy_when_not_allowed_or_not_checkable(storage, tmp_path):
    data = os.urandom(5000)
    _path, checksum = storage.place("XRD_ROOT", "test", "e.dat", data)
    # the catalogue size is wrong: the remote check fails, the file is copied, and the copy's own check fails
    job = job_definition(6002, pars="-c 'test -e e.dat'", inputs=[("e.dat", (len(data) + 1, checksum))],
                         transferType="direct", ddmEndPointIn="XRD_ROOT")
    result = run(storage, tmp_path, job, {"direct_access_lan": True})
    final = result.final(6002)
    assert final["state"] == "failed" and final["pilotErrorCode"] == 1099, final.get("pilotErrorDiag")
    assert "copying it instead" in result.pilotlog()
    # the job says copy (--useLocalIO): the input is copied although the queue allows direct access
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    job = job_definition(6003, pars="-c 'test -e e.dat && test ! -e pilot_inputs.json' --useLocalIO",
                         inputs=[("e.dat", (len(data), checksum))], transferType="direct", ddmEndPointIn="XRD_ROOT")
    result = run(storage, tmp2, job, {"direct_access_lan": True})
    assert result.final(6003)["state"] == "finished", result.stderr[-3000:]
