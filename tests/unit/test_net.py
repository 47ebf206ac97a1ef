"""pilot/net.py: TLS trust, JSON from a file or a URL, downloads, and the one retry policy."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pilot import net
from pilot.errors import PilotError
from tests.conftest import REPO
from tests.unit.helpers import TlsServer


class Server:
    """Serves a per-path list of (status, body bytes); counts requests per path."""

    def __init__(self, plan):
        self.plan, self.hits = plan, {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                replies = owner.plan.get(self.path, [(404, b"no")])
                status, body = replies.pop(0) if len(replies) > 1 else replies[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def make(plan):
        made.append(Server(plan))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_trust_order_cacert_then_capath_then_env_then_system(tmp_path, monkeypatch):
    bundle, folder, env_dir = tmp_path / "ca.pem", tmp_path / "certs", tmp_path / "envcerts"
    bundle.write_text("x")
    folder.mkdir()
    env_dir.mkdir()
    monkeypatch.setenv("X509_CERT_DIR", str(env_dir))
    assert net.trust(str(bundle), str(folder)).verify == str(bundle)
    assert net.trust("", str(folder)).verify == str(folder)
    assert net.trust(None, None).verify == str(env_dir)
    assert net.trust(str(tmp_path / "missing.pem"), "").verify == str(env_dir)  # a missing file is not trusted
    monkeypatch.delenv("X509_CERT_DIR")
    assert net.trust().verify is True and net.trust().where == "system CAs"


def test_client_certificate_is_the_proxy_only_when_asked(tmp_path, monkeypatch):
    proxy = tmp_path / "x509up"
    proxy.write_text("cert+key")
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    assert net.trust().cert is None
    assert net.trust(proxy="").cert == (str(proxy), str(proxy))
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "none"))
    assert net.trust(proxy="").cert is None


def test_get_json_from_file_and_file_url(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"a": 1}))
    assert net.get_json(str(path), "thing", 1116) == {"a": 1}
    assert net.get_json(f"file://{path}", "thing", 1116) == {"a": 1}
    with pytest.raises(PilotError) as info:
        net.get_json(str(tmp_path / "missing.json"), "thing", 1116, 1117)
    assert info.value.code == 1116
    path.write_text("{bad")
    with pytest.raises(PilotError) as info:
        net.get_json(str(path), "thing", 1116, 1117)
    assert info.value.code == 1117


def test_get_json_from_url_retries_transient_failures_only(server, monkeypatch):
    monkeypatch.setattr(net.time, "sleep", lambda s: None)
    srv = server({"/ok": [(503, b"busy"), (500, b"boom"), (200, b'{"x": 2}')], "/gone": [(404, b"nope")],
                  "/bad": [(200, b"<html>")]})
    assert net.get_json(srv.url + "/ok", "doc", 1116, attempts=3) == {"x": 2}
    assert srv.hits["/ok"] == 3
    with pytest.raises(PilotError) as info:
        net.get_json(srv.url + "/gone", "doc", 1116, attempts=3)
    assert info.value.code == 1116 and "HTTP 404" in info.value.diag and srv.hits["/gone"] == 1  # not transient
    with pytest.raises(PilotError) as info:
        net.get_json(srv.url + "/bad", "doc", 1116, 1117)
    assert info.value.code == 1117


def test_with_retries_gives_up_after_attempts_with_growing_waits():
    waits, calls = [], []

    def failing():
        calls.append(1)
        raise net.NetError("no route", None, transient=True)

    with pytest.raises(net.NetError):
        net.with_retries(failing, "x", attempts=4, initial=1.0, maximum=3.0, wait=waits.append)
    assert len(calls) == 4 and len(waits) == 3
    assert 0.75 <= waits[0] <= 1.25 and 1.5 <= waits[1] <= 2.5 and waits[2] <= 3.75


def test_unreachable_server_is_a_transient_net_error():
    with net.Client(timeout=2) as client:
        with pytest.raises(net.NetError) as info:
            client.get("http://127.0.0.1:9/nothing")
    assert info.value.transient and info.value.status is None


def test_download_streams_with_a_size_limit_and_leaves_no_partial_file(server, tmp_path):
    srv = server({"/f": [(200, b"x" * 3000)], "/missing": [(404, b"")]})
    dest = tmp_path / "out"
    assert net.download(srv.url + "/f", str(dest), 1246, "sandbox") == 3000 and dest.read_bytes() == b"x" * 3000
    with pytest.raises(PilotError) as info:
        net.download(srv.url + "/f", str(dest), 1246, "sandbox", limit_bytes=1000)
    assert info.value.code == 1246 and not dest.exists()
    with pytest.raises(PilotError) as info:
        net.download(srv.url + "/missing", str(dest), 1149, "transformation")
    assert info.value.code == 1149 and "HTTP 404" in info.value.diag and not dest.exists()


def test_credentials_in_urls_never_reach_messages(tmp_path):
    with pytest.raises(PilotError) as info:
        net.download("http://user:secret@127.0.0.1:9/f", str(tmp_path / "o"), 1246, "sandbox", timeout=2,
                     shown="http://***@127.0.0.1:9/f")
    assert "secret" not in info.value.diag


def test_importing_the_pilot_does_not_import_requests():
    """Start-up cost: requests is loaded at the first request, never by an import (local channel included)."""
    code = ("import sys; import pilot.main, pilot.pipeline, pilot.net, pilot.queuedata, pilot.channels.local, "
            "pilot.channels.panda, pilot.channels.picas, pilot.payload.sandbox, pilot.payload.command, "
            "pilot.transfer.traces, pilot.transfer.storage, pilot.selfcheck; "
            "print('requests' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.fixture
def tls_server(tmp_path):
    made = []

    def make(**kwargs):
        folder = tmp_path / f"tls{len(made)}"
        folder.mkdir()
        made.append(TlsServer(folder, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_a_certificate_that_does_not_verify_is_not_retried(tls_server, monkeypatch):
    """The same trust fails the same way: one handshake, a TLSVerificationFailed that says what was trusted, and
    get_json's retry policy gives up at once (PilotError with the code, no back-off)."""
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    server = tls_server()
    with pytest.raises(net.TLSVerificationFailed) as caught:
        net.Client(net.trust("", "")).get(server.url)
    assert not caught.value.transient and "trusting system CAs" in caught.value.message
    assert "self-signed certificate" in caught.value.message  # openssl's reason, not the whole requests text
    before = server.handshakes
    waits = []
    with pytest.raises(net.TLSVerificationFailed):
        net.with_retries(lambda: net.Client().get(server.url), "doc", attempts=3, wait=waits.append)
    assert server.handshakes - before == 1 and waits == []
    with pytest.raises(PilotError, match="TLS certificate verification failed") as failed:
        net.get_json(server.url, "queue data", 1116, attempts=3)
    assert failed.value.code == 1116
    # with the server's certificate trusted, the same request works
    assert net.get_json(server.url, "doc", 1116, trust_=net.trust(server.cert, "")) == {"a": True}


def test_a_handshake_cut_short_is_transient(tls_server):
    server = tls_server(cut_handshake=True)
    with pytest.raises(net.NetError) as caught:
        net.Client().get(server.url, timeout=5)
    assert caught.value.transient and not isinstance(caught.value, net.TLSVerificationFailed)
