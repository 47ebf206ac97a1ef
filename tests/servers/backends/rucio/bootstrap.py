"""Create scopes and RSEs on a fresh local Rucio server (adapted from shared recipes/backends/rucio/rucio_bootstrap.py).
Run with the rucio-clients venv and RUCIO_CONFIG pointing at the client config.
usage: bootstrap.py XRD_PORT XRD_HTTP_PORT DAV_HTTPS_PORT POSIX_DIR
RSEs (deterministic, lfn2pfn 'hash'):
  XRD_TEST    root://127.0.0.1:XRD_PORT//rucio/         (rucio.rse.protocols.xrootd: xrdcp CLI)
  HTTPS_TEST  https://127.0.0.1:XRD_HTTP_PORT/rucio-https/  (webdav impl, python-requests; X509_USER_PROXY)
  DAVS_TEST   davs://127.0.0.1:XRD_HTTP_PORT/rucio-davs/    (gfal impl; needs the gfal2 module)
  WEBDAV_TEST davs://127.0.0.1:DAV_HTTPS_PORT/rucio/        (gfal impl on nginx: no server-side checksums,
                                                            so the RSE has verify_checksum=False)
  POSIX_TEST  file://POSIX_DIR
"""
import sys

from rucio.client import Client
from rucio.common.exception import Duplicate

xrd_port, http_port, dav_port, posix_dir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
posix_dir = posix_dir.rstrip("/") + "/"
client = Client()
domains = {"lan": {"read": 1, "write": 1, "delete": 1},
           "wan": {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1, "third_party_copy_write": 1}}
rses = {
    "XRD_TEST": dict(scheme="root", hostname="127.0.0.1", port=xrd_port, prefix="//rucio/",
                     impl="rucio.rse.protocols.xrootd.Default"),
    "POSIX_TEST": dict(scheme="file", hostname="localhost", port=0, prefix=posix_dir,
                       impl="rucio.rse.protocols.posix.Default"),
    "HTTPS_TEST": dict(scheme="https", hostname="127.0.0.1", port=http_port, prefix="/rucio-https/",
                       impl="rucio.rse.protocols.webdav.Default"),
}
try:
    import gfal2  # noqa: F401
    rses["DAVS_TEST"] = dict(scheme="davs", hostname="127.0.0.1", port=http_port, prefix="/rucio-davs/",
                             impl="rucio.rse.protocols.gfal.Default")
    rses["WEBDAV_TEST"] = dict(scheme="davs", hostname="127.0.0.1", port=dav_port, prefix="/rucio/",
                               impl="rucio.rse.protocols.gfal.Default")
except ImportError:
    print("gfal2 not importable: DAVS_TEST and WEBDAV_TEST skipped", file=sys.stderr)
for rse, protocol in rses.items():
    try:
        client.add_rse(rse, deterministic=True, volatile=False, rse_type="DISK")
    except Duplicate:
        pass
    try:
        client.add_protocol(rse, dict(protocol, domains=domains, extended_attributes=None))
    except Duplicate:
        pass
    if rse == "WEBDAV_TEST":
        client.add_rse_attribute(rse, "verify_checksum", False)
    client.add_rse_attribute(rse, "lfn2pfn_algorithm", "hash")
    client.add_rse_attribute(rse, "site", "LOCAL_CI")
    client.set_local_account_limit("root", rse, -1)
for scope in ("user.root", "test"):
    try:
        client.add_scope("root", scope)
    except Duplicate:
        pass
print(" ".join(sorted(r["rse"] for r in client.list_rses())))
