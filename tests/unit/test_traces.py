"""Rucio trace records and their delivery (a real HTTP server on 127.0.0.1; no Rucio needed)."""

import json
import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pilot.config import load_config
from pilot.job import FileSpec
from pilot.queuedata import from_dict
from pilot.transfer import traces
from pilot.settings import Settings


def ctx_for(url="", use=True, timeout="5"):
    config = load_config(env={"PILOT_CFG_RUCIO_URL": url, "PILOT_CFG_RUCIO_TRACE_TIMEOUT": timeout})
    return types.SimpleNamespace(config=config, settings=Settings(queue="Q", use_rucio_traces=use, capath=None),
                                 queuedata=from_dict({"nickname": "Q", "site": "SITE"}, "Q"))


def job(label="managed"):
    return types.SimpleNamespace(jobid="77", taskid="5", prodsourcelabel=label)


@pytest.fixture
def trace_server():
    received, mode = [], {"lists": True}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if isinstance(body, list) and not mode["lists"]:
                self.send_response(400)
            else:
                received.extend(body if isinstance(body, list) else [body])
                self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/traces/", received, mode
    server.shutdown()
    server.server_close()


def test_records_follow_pilot3_vocabulary():
    ok = FileSpec(lfn="a.root", role="input", scope="mc", filesize=10, ddmendpoint="XRD", status="transferred",
                  turl="root://h//a.root", transfer_seconds=2.0)
    bad = FileSpec(lfn="b.root", role="output", scope="mc", status="failed", status_code=1152, diag="timed out")
    record = traces.build(ok, job(), ctx_for(), "in", ended=1000.0)
    assert record["eventType"] == "get_sm" and record["clientState"] == "DONE" and record["protocol"] == "root"
    assert record["transferStart"] == 998.0 and record["transferEnd"] == 1000.0 and record["appid"] == "77"
    failed = traces.build(bad, job("user"), ctx_for(), "out")
    assert failed["eventType"] == "put_sm_a" and failed["clientState"] == "CP_TIMEOUT"
    assert failed["stateReason"] == "timed out" and failed["localSite"] == "SITE"


def test_off_unless_a_url_is_set_and_the_flag_allows():
    assert not traces.enabled(ctx_for())
    assert traces.enabled(ctx_for("http://x/traces/"))
    assert not traces.enabled(ctx_for("http://x/traces/", use=False))


def test_one_post_for_a_stage_and_one_by_one_when_lists_are_refused(trace_server):
    url, received, mode = trace_server
    records = [{"uuid": str(n)} for n in range(3)]
    assert traces.send(records, ctx_for(url)) == 3 and len(received) == 3
    mode["lists"] = False
    assert traces.send(records, ctx_for(url)) == 3 and len(received) == 6


def test_an_unreachable_trace_server_costs_a_warning_only(caplog):
    assert traces.send([{"uuid": "1"}], ctx_for("http://127.0.0.1:1/traces/", timeout="2")) == 0
    assert "Rucio traces not sent" in caplog.text
