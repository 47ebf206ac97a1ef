"""Smoke test of the storage harness: every server answers the real clients (xrdcp/xrdfs, gfal-*, curl)."""

import datetime as dt
import json
import os
import subprocess

import pytest

from tests.integration.backends import adler32

pytestmark = pytest.mark.slow
TIMEOUT = 60


def run(servers, *cmd, check=True, **extra_env):
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env=servers.client_env(**extra_env))
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} -> rc {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture
def payload(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data, adler32(data)


def test_xrootd_root_upload_download_with_server_checksum(storage_servers, payload, tmp_path):
    src, data, cks = payload
    url = storage_servers.url("harness/up.bin")
    assert url == storage_servers.xrootd_root + "/harness/up.bin" and url.startswith("root://127.0.0.1:")
    out = run(storage_servers, "xrdcp", "-np", "-f", "--cksum", "adler32:print", str(src), url)
    printed = (out.stdout + out.stderr).split()                            # "adler32: 36d1316 URL SIZE"
    assert int(printed[printed.index("adler32:") + 1], 16) == int(cks, 16)   # note: ':print' drops leading zeros
    assert storage_servers.xrootd_checksum("harness/up.bin") == cks          # computed by the server
    assert storage_servers.read_file("harness/up.bin") == data              # on disk in xrootd_data
    run(storage_servers, "xrdcp", "-np", "-f", "--cksum", "adler32:" + cks, url, str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    bad = run(storage_servers, "xrdcp", "-np", "-f", "--cksum", "adler32:deadbeef", str(src),
              storage_servers.url("harness/bad.bin"), check=False)
    assert bad.returncode == 53                                              # checksum mismatch


def test_put_file_replicas_are_served(storage_servers, tmp_path):
    url, cks = storage_servers.put_file("harness/pre/placed.bin", b"pre-placed replica\n")
    assert cks == adler32(b"pre-placed replica\n")
    assert storage_servers.xrootd_checksum("harness/pre/placed.bin") == cks
    run(storage_servers, "xrdcp", "-f", url, str(tmp_path / "p.bin"))
    assert (tmp_path / "p.bin").read_bytes() == b"pre-placed replica\n"
    url2, cks2 = storage_servers.put_file("harness/pre/placed.bin", b"overwritten")   # no stale cached checksum
    assert url2 == url and storage_servers.xrootd_checksum("harness/pre/placed.bin") == cks2
    dav_url, _ = storage_servers.put_file("harness/pre/dav.bin", b"webdav replica", server="webdav_https")
    assert dav_url == storage_servers.webdav_https + "harness/pre/dav.bin"
    body = run(storage_servers, "curl", "-sSf", "--max-time", "20", "--capath", storage_servers.ca_dir, dav_url)
    assert body.stdout == "webdav replica"


def test_gfal_to_xrootd_davs_and_nginx_webdav(storage_servers, payload, tmp_path):
    """gfal2's command-line tools against XrdHttp (davs, server checksums) and nginx WebDAV (davs, http). Over 10 s:
    several gfal-copy/gfal-sum processes, each loading gfal2 and its plug-ins (~1.5 s)."""
    src, data, cks = payload
    # XrdHttp over TLS (davs): checksum computed by the server, so gfal-copy -K and gfal-sum work
    davs = storage_servers.url("harness/gfal.bin", "xrootd_davs")
    run(storage_servers, "gfal-copy", "-f", "-t", "60", "-K", "ADLER32:" + cks, "file://" + str(src), davs)
    assert cks in run(storage_servers, "gfal-sum", davs, "ADLER32").stdout
    assert storage_servers.read_file("harness/gfal.bin") == data
    # nginx WebDAV on https (davs) and http: no checksum support server side
    for server in ("webdav_davs", "webdav_http"):
        url = storage_servers.url(f"harness/{server}.bin", server)
        run(storage_servers, "gfal-copy", "-f", "-t", "60", "file://" + str(src), url)
        assert storage_servers.read_file(f"harness/{server}.bin", server) == data
        back = tmp_path / f"{server}.back"
        run(storage_servers, "gfal-copy", "-f", "-t", "60", url, "file://" + str(back))
        assert back.read_bytes() == data
    listing = run(storage_servers, "gfal-ls", storage_servers.url("harness/", "webdav_davs")).stdout.split()
    assert {"webdav_davs.bin", "webdav_http.bin"} <= set(listing)
    nosum = run(storage_servers, "gfal-sum", storage_servers.url("harness/webdav_davs.bin", "webdav_davs"),
                "ADLER32", check=False)
    assert nosum.returncode != 0
    run(storage_servers, "gfal-rm", storage_servers.url("harness/webdav_http.bin", "webdav_http"))
    assert not os.path.exists(storage_servers.path("harness/webdav_http.bin", "webdav"))
    # the python3-gfal2 bindings of Debian's python (what GFAL_PYTHONBIN points at)
    code = ("import gfal2, sys; print(gfal2.creat_context().checksum(sys.argv[1], 'ADLER32'))")
    root = storage_servers.url("harness/gfal.bin")
    assert run(storage_servers, "/usr/bin/python3", "-c", code, root).stdout.strip() == cks


def _not_after(path):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(open(path, "rb").read())
    end = cert.not_valid_after_utc if hasattr(cert, "not_valid_after_utc") else \
        cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
    return (end - dt.datetime.now(dt.timezone.utc)).total_seconds()


def test_proxies(storage_servers):
    verify = ["openssl", "verify", "-CApath", storage_servers.ca_dir, "-untrusted", storage_servers.user_cert,
              "-allow_proxy_certs"]
    assert 10 * 3600 < _not_after(storage_servers.proxy) <= 12 * 3600        # made by up.sh: 12 h
    run(storage_servers, *verify, storage_servers.proxy)
    short = storage_servers.make_proxy(minutes=5)
    assert 290 < _not_after(short) <= 300
    run(storage_servers, *verify, short)
    expired = storage_servers.make_proxy(expired=True)
    assert _not_after(expired) < 0
    assert run(storage_servers, *verify, expired, check=False).returncode != 0
    assert run(storage_servers, "openssl", "x509", "-in", expired, "-noout", "-checkend", "0",
               check=False).returncode == 1
    # VOMS-style: default X509_USER_PROXY carries an AC; custom lifetimes of proxy and AC
    assert storage_servers.env["X509_USER_PROXY"] == storage_servers.voms_proxy
    info = run(storage_servers, "voms-proxy-info", "--file", storage_servers.voms_proxy, "--fqan").stdout
    assert "/testvo/Role=production" in info
    voms = storage_servers.make_proxy(minutes=30, voms=True, ac_seconds=600)
    left = run(storage_servers, "voms-proxy-info", "--file", voms, "--timeleft", "--actimeleft").stdout.split()
    assert 1790 <= int(left[0]) <= 1800 and 590 <= int(left[1]) <= 600
    old = storage_servers.make_proxy(expired=True, voms=True)
    assert run(storage_servers, "voms-proxy-info", "--file", old, "--exists", check=False).returncode != 0
    # a proxy is accepted by a TLS client like any client cert (nginx does not ask for one, so just the handshake)
    run(storage_servers, "curl", "-sSf", "--max-time", "20", "--capath", storage_servers.ca_dir,
        "--cert", short, "--key", short, storage_servers.webdav_https)


def test_rucio_upload_download_on_local_rses(rucio_server, tmp_path):
    """Opt-in Rucio: pilot-style upload + download through the rucio-clients API on the XRootD and nginx RSEs.
    Over 10 s: Rucio makes several server round trips per file on each of the two RSEs."""
    assert {"XRD_TEST", "DAVS_TEST", "WEBDAV_TEST", "POSIX_TEST"} <= set(rucio_server.rses)
    script = r'''
import json, logging, os, sys, uuid, zlib
from rucio.client import Client
from rucio.client.downloadclient import DownloadClient
from rucio.client.uploadclient import UploadClient
rse, work = sys.argv[1], sys.argv[2]
lfn = "h_%s_%s.bin" % (rse, uuid.uuid4().hex[:8]); path = os.path.join(work, lfn); data = os.urandom(100000)
open(path, "wb").write(data)
client = Client(); log = logging.getLogger("x")
UploadClient(_client=client, logger=log).upload([{"path": path, "rse": rse, "did_scope": "test", "did_name": lfn}])
res = DownloadClient(client=client, logger=log).download_dids(
    [{"did": "test:" + lfn, "base_dir": os.path.join(work, "dl"), "rse": rse, "no_subdir": True}])
pfn = list(client.list_replicas([{"scope": "test", "name": lfn}]))[0]["rses"][rse][0]
print(json.dumps({"state": str(res[0]["clientState"]), "same": open(os.path.join(work, "dl", lfn), "rb").read() == data,
                  "pfn": pfn, "adler32": "%08x" % zlib.adler32(data)}))
'''
    for rse in ("XRD_TEST", "WEBDAV_TEST"):
        done = subprocess.run([rucio_server.python, "-c", script, rse, str(tmp_path)], capture_output=True, text=True,
                              timeout=120, env=rucio_server.client_env(), stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["same"] and result["state"].endswith("DONE"), result
        if rse == "XRD_TEST":
            assert result["pfn"].startswith(rucio_server.servers.xrootd_root)
            name = result["pfn"][len(rucio_server.servers.xrootd_root):]
            assert rucio_server.servers.xrootd_checksum(name) == result["adler32"]
