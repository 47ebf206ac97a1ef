"""Real storage servers for the copytool tests: XRootD (root://, https/davs) and nginx WebDAV (dav/davs)."""

import json
import os
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(os.path.dirname(HERE), "servers", "storage")


class Storage:
    def __init__(self, base="/tmp/pilot-test-storage"):
        self.base = base
        self.root = "root://127.0.0.1:21094"
        self.xrd_https = "davs://localhost:21095"
        self.dav = "dav://127.0.0.1:21080"
        self.davs = "davs://localhost:21443"
        self.xrd_data = os.path.join(base, "xrootd", "data")
        self.dav_data = os.path.join(base, "nginx", "data")
        self.cert_dir = os.path.join(base, "pki", "certificates")

    def up(self):
        done = subprocess.run(["bash", os.path.join(SCRIPTS, "up.sh"), self.base], capture_output=True, text=True,
                              timeout=600, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"storage up failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    def down(self):
        subprocess.run(["bash", os.path.join(SCRIPTS, "down.sh"), self.base], timeout=60)

    def env(self):
        return {"X509_CERT_DIR": self.cert_dir, "GFAL_PYTHONBIN": "/usr/bin/python3"}

    def storage_data(self, path):
        """A CRIC-style ddmendpoints file with one deterministic RSE per server and protocol."""
        def rse(endpoint, prefix):
            protocol = [{"endpoint": endpoint, "path": prefix, "flavour": endpoint.split(":")[0]}]
            return {"is_deterministic": True, "type": "DATADISK",
                    "arprotocols": {"read_lan": protocol, "write_lan": protocol}}
        data = {"XRD_ROOT": rse(self.root, "//rucio"), "XRD_DAVS": rse(self.xrd_https, "//rucio"),
                "NGINX_DAVS": rse(self.davs, "/rucio"), "NGINX_DAV": rse(self.dav, "/rucio")}
        with open(path, "w") as handle:
            json.dump(data, handle)
        return str(path)

    def place(self, rse, scope, lfn, data):
        """Put a replica where a deterministic RSE keeps it (written directly into the server's data dir)."""
        from pilot.transfer.storage import deterministic_path

        root = {"XRD_ROOT": self.xrd_data, "XRD_DAVS": self.xrd_data, "NGINX_DAVS": self.dav_data,
                "NGINX_DAV": self.dav_data}[rse]
        path = os.path.join(root, "rucio", deterministic_path(scope, lfn))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        owner = os.stat(root)
        for folder, _dirs, files in os.walk(os.path.join(root, "rucio")):
            os.chown(folder, owner.st_uid, owner.st_gid)
            for name in files:
                os.chown(os.path.join(folder, name), owner.st_uid, owner.st_gid)
        return path, f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"

    def stored(self, rse, scope, lfn):
        from pilot.transfer.storage import deterministic_path

        root = self.xrd_data if rse.startswith("XRD") else self.dav_data
        return os.path.join(root, "rucio", deterministic_path(scope, lfn))
