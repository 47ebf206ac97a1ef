"""The PanDA channel against a scripted HTTP server: what acquire_jobs carries, and refused credentials.

The real server's side of the same rules is in tests/integration/test_panda_channel.py; these pin the request
contents and the number of attempts, which the real server cannot report.
"""

import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pilot.channels.panda import PandaChannel
from pilot.config import load_config
from pilot.errors import CredentialsRefused, ServerNotTrusted, shell_exit_code
from pilot.job import parse_job
from pilot.settings import Settings
from pilot.queuedata import from_dict
from pilot.trigger import Trigger
from tests.unit.helpers import TlsServer

NO_JOBS = {"success": False, "message": "No jobs in PanDA", "data": None}


def job_reply(panda_id):
    job = {"PandaID": panda_id, "transformation": "sh", "jobPars": "-c true", "StatusCode": 0}
    return {"success": True, "message": "", "data": {"StatusCode": 0, "jobs": [job]}}


class Scripted:
    """Replies from a per-path list of (status, body); records (path, headers, json body) of every request."""

    def __init__(self):
        self.plan, self.calls = {}, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode()
                owner.calls.append((self.path, dict(self.headers), body))
                queue = owner.plan.get(self.path.split("?")[0].split("/")[-1]) or [(200, NO_JOBS)]
                status, reply = queue.pop(0) if len(queue) > 1 else queue[0]
                data = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self, method):
        return [body for path, _headers, body in self.calls if path.endswith(method)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    scripted = Scripted()
    yield scripted
    scripted.close()


def make_channel(tmp_path, url, lifetime=86400.0, **cfg):
    env = {"PILOT_CFG_PILOT_UPDATE_RETRY_INITIAL": "0.05", "PILOT_CFG_PILOT_UPDATE_RETRY_MAX": "0.1",
           "PILOT_CFG_PILOT_HTTP_MAXTIME": "5"}
    env.update({f"PILOT_CFG_PILOT_{key.upper()}": str(value) for key, value in cfg.items()})
    settings = Settings(queue="Q", url=url, capath="", cacert="", job_label="managed", workerpilotstatusupdate=False)
    started = time.monotonic()
    abort = Trigger("abort")
    ctx = types.SimpleNamespace(
        config=load_config(env=env), settings=settings, queuedata=from_dict({"maxtime": int(lifetime)}, "Q"),
        paths=types.SimpleNamespace(main=str(tmp_path)), abort=abort, lifetime=lifetime,
        elapsed=lambda: time.monotonic() - started, remaining=lambda: lifetime - (time.monotonic() - started),
        delivery_deadline=lambda: started + 3.0)
    return PandaChannel(ctx, str(tmp_path / "spool"))


@pytest.fixture(autouse=True)
def token_env(monkeypatch, tmp_path):
    """A token file and origin, and none of the host's Harvester or token variables."""
    for name in ("PANDA_AUTH_TOKEN", "PANDA_AUTH_ORIGIN", "HARVESTER_ID", "HARVESTER_WORKER_ID",
                 "OIDC_REFRESHED_AUTH_TOKEN", "X509_USER_PROXY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "token").write_text("header.payload.signature\n")
    monkeypatch.setenv("OIDC_AUTH_TOKEN", str(tmp_path / "token"))
    monkeypatch.setenv("OIDC_AUTH_ORIGIN", "atlas.production")


def test_remaining_time_only_on_follow_up_requests(tmp_path, server):
    """First request: no remaining_time (a job as long as the queue's maxtime must match); after a job was taken
    (time floor), remaining_time is what is left of the lifetime, so a follow-up job must fit in it."""
    server.plan["acquire_jobs"] = [(200, job_reply(11)), (200, NO_JOBS)]
    channel = make_channel(tmp_path, server.url, lifetime=86400)
    assert [job.jobid for job in channel.fetch(1)] == ["11"]
    assert channel.fetch(1) == []
    first, second = server.bodies("acquire_jobs")
    assert "remaining_time" not in first
    assert 86300 < second["remaining_time"] < 86400


def test_an_empty_answer_does_not_count_as_a_job(tmp_path, server):
    channel = make_channel(tmp_path, server.url)
    assert channel.fetch(1) == [] and channel.fetch(1) == []
    assert all("remaining_time" not in body for body in server.bodies("acquire_jobs"))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_on_acquire_is_1163_after_one_request(tmp_path, server, status):
    server.plan["acquire_jobs"] = [(status, "ERROR : Token authentication failed. Signature verification failed")]
    channel = make_channel(tmp_path, server.url)
    with pytest.raises(CredentialsRefused) as info:
        channel.fetch(1)
    assert info.value.code == 1163 and not info.value.retry and shell_exit_code(info.value.code) == 68
    assert f"HTTP {status}" in info.value.diag and "token" in info.value.diag
    assert "header.payload" not in info.value.diag  # never the token itself
    assert len(server.calls) == 1


def test_missing_production_role_is_a_credentials_error(tmp_path, server):
    server.plan["acquire_jobs"] = [(200, {"success": False, "data": None,
                                          "message": "no production/pilot role in VOMS FQANs or non pilot owner"})]
    with pytest.raises(CredentialsRefused):
        make_channel(tmp_path, server.url).fetch(1)


def test_bearer_token_echoed_by_a_server_is_masked(tmp_path, server):
    server.plan["acquire_jobs"] = [(403, "denied for Authorization: Bearer abc.def.ghi")]
    with pytest.raises(CredentialsRefused) as info:
        make_channel(tmp_path, server.url).fetch(1)
    assert "abc.def" not in info.value.diag and "Bearer ***" in info.value.diag


def test_refused_final_update_is_tried_once_and_stays_in_the_spool(tmp_path, server):
    server.plan["update_job"] = [(403, "ERROR : Token authentication failed. expired")]
    channel = make_channel(tmp_path, server.url)
    job = parse_job({"PandaID": 5, "transformation": "sh"})
    reply = channel.update(job, {"jobId": "5", "state": "finished"}, final=True)
    assert not reply.ok and "spooled in" in reply.where
    assert len(server.bodies("update_job")) == 1  # no pointless retries
    spooled = list((tmp_path / "spool").iterdir())
    assert len(spooled) == 1 and spooled[0].name.endswith(".final.update.json")  # replayable, not .refused


def test_refused_heartbeat_keeps_the_job_going(tmp_path, server):
    server.plan["update_job"] = [(403, "ERROR : Token authentication failed. expired")]
    channel = make_channel(tmp_path, server.url)
    job = parse_job({"PandaID": 6, "transformation": "sh"})
    reply = channel.update(job, {"jobId": "6", "state": "running"}, final=False)
    assert not reply.ok and not job.kill.is_set()
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_server_certificate_that_does_not_verify_is_1318_at_once(tmp_path, monkeypatch):
    """No retry of the job request (the same CA fails the same way); a heartbeat leaves the job running; the final
    update is tried once and stays spooled (not .refused) for a pilot that trusts the server."""
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    folder = tmp_path / "tls"
    folder.mkdir()
    tls = TlsServer(folder)
    try:
        channel = make_channel(tmp_path, tls.url.rsplit("/", 1)[0])
        with pytest.raises(ServerNotTrusted) as info:
            channel.fetch(1)
        assert info.value.code == 1318 and not info.value.retry and tls.handshakes == 1
        assert "TLS certificate verification failed (self-signed certificate), trusting system CAs" in info.value.diag
        assert "--cacert" in info.value.diag
        job = parse_job({"PandaID": 8, "transformation": "sh"})
        assert not channel.update(job, {"jobId": "8", "state": "running"}, final=False).ok
        assert not job.kill.is_set()
        reply = channel.update(job, {"jobId": "8", "state": "finished"}, final=True)
        assert not reply.ok and "spooled in" in reply.where and tls.handshakes == 3
        spooled = list((tmp_path / "spool").iterdir())
        assert len(spooled) == 1 and spooled[0].name.endswith(".final.update.json")
    finally:
        tls.close()


def test_transient_final_update_failure_is_retried_then_acknowledged(tmp_path, server):
    ok = {"success": True, "message": "", "data": {"StatusCode": 0, "command": None}}
    server.plan["update_job"] = [(500, "boom"), (503, "busy"), (200, ok)]
    channel = make_channel(tmp_path, server.url)
    job = parse_job({"PandaID": 7, "transformation": "sh"})
    assert channel.update(job, {"jobId": "7", "state": "finished"}, final=True).ok
    assert len(server.bodies("update_job")) == 3 and list((tmp_path / "spool").iterdir()) == []


@pytest.mark.parametrize("answer, expected", [
    ({"success": True, "data": [{"status": "running", "command": "tobekilled"}]}, ["tobekilled"]),
    ({"success": True, "data": [{"status": "running", "command": None}]}, []),
    ({"success": True, "data": [{"status": "running", "command": "tail -n 5 payload.stdout,softkill"}]},
     ["softkill"]),  # a debug command's output travels with a heartbeat: left to it
    ({"success": True, "data": [{"status": "unknown", "command": "tobekilled"}]}, []),  # not found: the heartbeat decides
    ({"success": False, "message": "time out", "data": {"code": 10}}, []),
])
def test_command_check_reads_job_get_status(tmp_path, server, answer, expected):
    server.plan["get_status"] = [(200, answer)]
    channel = make_channel(tmp_path, server.url)
    assert channel.commands(parse_job({"PandaID": 42, "transformation": "sh"})) == expected
    path, headers, _body = server.calls[-1]
    assert path == "/api/v1/job/get_status?job_ids=42" and headers["Authorization"].startswith("Bearer ")


def test_command_check_survives_an_unreachable_server(tmp_path):
    channel = make_channel(tmp_path, "http://127.0.0.1:9", http_connect_timeout=1)
    assert channel.commands(parse_job({"PandaID": 42, "transformation": "sh"})) == []


def test_fetch_credential_answers_and_refusals(tmp_path, server):
    """creds/get_access_token and get_proxy: the credential from data.user_proxy, else why not (never raised)."""
    server.plan["get_access_token"] = [(200, {"success": True, "message": "", "data": {"user_proxy": "a.b.c"}}),
                                       (200, {"success": False, "message": "'token' not found for x", "data": None}),
                                       (403, "Token authentication failed"), (200, {"success": True, "data": {}})]
    channel = make_channel(tmp_path, server.url)
    assert channel.fetch_credential("get_access_token", {"client_name": "pilot_server"}) == ("a.b.c", "")
    assert channel.fetch_credential("get_access_token", {}) == (None, "'token' not found for x")
    value, why = channel.fetch_credential("get_access_token", {})
    assert value is None and why.startswith("HTTP 403")
    assert channel.fetch_credential("get_access_token", {}) == (None, "the answer holds no credential")
    path, headers, _body = server.calls[0]
    assert path == "/api/v1/creds/get_access_token?client_name=pilot_server"
    assert headers["Authorization"] == "Bearer header.payload.signature" and headers["Origin"] == "atlas.production"
    server.close()
    value, why = channel.fetch_credential("get_proxy", {"role": "production"})  # nobody listening
    assert value is None and why
