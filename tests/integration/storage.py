"""Storage as the copytool tests see it: deterministic RSEs on the real servers of tests/integration/backends.py
(XRootD root:// and davs, nginx WebDAV dav/davs), and where a file lives on each."""

import json
import zlib

from pilot.transfer.storage import deterministic_path

# RSE name -> (server URL attribute, backends server name for put_file/path, path prefix)
RSES = {"XRD_ROOT": ("xrootd_root", "xrootd", "//rucio"), "XRD_DAVS": ("xrootd_davs", "xrootd", "/rucio"),
        "NGINX_DAVS": ("webdav_davs", "webdav", "/rucio"), "NGINX_DAV": ("webdav_http", "webdav", "/rucio")}


class Storage:
    def __init__(self, servers):
        self.servers = servers
        self.root = servers.xrootd_root.rstrip("/")
        self.xrd_https = servers.xrootd_davs.rstrip("/")
        self.davs = servers.webdav_davs.rstrip("/")
        self.cert_dir = servers.ca_dir

    def env(self):
        return dict(self.servers.env)

    def storage_data(self, path):
        """A CRIC-style ddmendpoints file with one deterministic RSE per server and protocol."""
        data = {}
        for rse, (attr, _server, prefix) in RSES.items():
            endpoint = getattr(self.servers, attr).rstrip("/")
            protocol = [{"endpoint": endpoint.replace("http://", "dav://"), "path": prefix}]
            data[rse] = {"is_deterministic": True, "type": "DATADISK",
                         "arprotocols": {"read_lan": protocol, "write_lan": protocol}}
        with open(path, "w") as handle:
            json.dump(data, handle)
        return str(path)

    def place(self, rse, scope, lfn, data):
        """Put a replica where a deterministic RSE keeps it; returns (local path, adler32)."""
        server = RSES[rse][1]
        name = "rucio/" + deterministic_path(scope, lfn)
        self.servers.put_file(name, data, server)
        return self.servers.path(name, server), f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"

    def stored(self, rse, scope, lfn):
        return self.servers.path("rucio/" + deterministic_path(scope, lfn), RSES[rse][1])


def run_pilot_job(storage, tmp_path, jobdir, queue_name, read_tool, write_tool, read_rse, write_rse, env=None,
                  timeout=300):
    """pilot.py on the job files in `jobdir`, with a queue reading through `read_tool` from `read_rse` and writing
    outputs and log through `write_tool` to `write_rse`; returns the PilotRun."""
    import os
    import subprocess
    import sys

    from tests.e2e.pilotrun import PILOT, PilotRun

    queue = tmp_path / "queue.json"
    queue.write_text(json.dumps({"nickname": queue_name, "state": "ACTIVE", "status": "online",
                                 "copytools": {read_tool: {}, write_tool: {}},
                                 "acopytools": {"read_lan": [read_tool], "write_lan": [write_tool], "pl": [write_tool]},
                                 "astorages": {"read_lan": [read_rse], "write_lan": [write_rse], "pl": [write_rse]}}))
    cmd = [sys.executable, PILOT, "-q", queue_name, "--queuedata-url", str(queue), "--job-source", f"local:{jobdir}",
           "--storagedata-url", storage.storage_data(tmp_path / "ddm.json"), "--capath", storage.cert_dir,
           "-a", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **storage.env(), **(env or {})))
    return PilotRun(str(tmp_path), proc, proc.stdout, proc.stderr)
