"""End-to-end: how the payload is built and how its end is read (transformation download, reports, codes)."""

import functools
import http.server
import json
import threading

import pytest

from tests.e2e.pilotrun import job_definition, run_pilot, write_job


@pytest.fixture
def trf_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving transformations from a directory."""
    root = tmp_path / "www" / "trf" / "user"
    root.mkdir(parents=True)
    (root / "runme.sh").write_text("#!/bin/sh\necho \"trf ran with: $*\"\necho '{\"nEvents\": 42}' > jobReport.json\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_transformation_downloaded_from_allowed_base_url(tmp_path, jobdir, trf_server):
    write_job(jobdir, job_definition(701, trf=f"{trf_server}/trf/user/runme.sh", pars="--in a --out b"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", "-g", f"{trf_server}/trf/user/")
    final = run.final(701)
    assert final["state"] == "finished", run.stderr[-2000:]
    assert final["nEvents"] == 42 and "nEvents=42" in final["jobMetrics"]


def test_transformation_outside_allowed_urls_is_1149(tmp_path, jobdir, trf_server):
    write_job(jobdir, job_definition(702, trf=f"{trf_server}/trf/user/runme.sh"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", "-g", "https://elsewhere.example/trf/")
    final = run.final(702)
    assert final["pilotErrorCode"] == 1149 and "allowed base URL" in final["pilotErrorDiag"]


def test_transformation_download_failure_is_1149(tmp_path, jobdir, trf_server):
    write_job(jobdir, job_definition(703, trf=f"{trf_server}/trf/user/missing.sh"))
    run = run_pilot(tmp_path, "--job-source", f"local:{jobdir}", "-g", f"{trf_server}/trf/user")
    final = run.final(703)
    assert final["pilotErrorCode"] == 1149 and "404" in final["pilotErrorDiag"]


def test_command_not_found_is_1346(tmp_path, jobdir):
    write_job(jobdir, job_definition(704, trf="no-such-program-xyz"))
    final = run_pilot(tmp_path, "--job-source", f"local:{jobdir}").final(704)
    assert final["pilotErrorCode"] == 1346 and final["transExitCode"] == 127


def test_payload_error_report_and_segfault(tmp_path, jobdir):
    report = json.dumps({"error_code": 65, "error_diag": "athena crashed"})
    write_job(jobdir, job_definition(705, pars=f"-c 'echo {json.dumps(report)} > payload_error_report.json; "
                                                 f"kill -SEGV $$'"))
    final = run_pilot(tmp_path, "--job-source", f"local:{jobdir}").final(705)
    assert final["pilotErrorCode"] == 1328 and final["transExitCode"] == 139
    assert final["exeErrorCode"] == 65 and final["exeErrorDiag"] == "athena crashed"
