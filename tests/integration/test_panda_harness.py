"""The PanDA server harness itself, driven with plain `requests` as a pilot would: a job goes activated -> sent ->
starting -> running -> holding -> finished (archived by the Adder); kill, auth refusals, and cutting the server."""

import json
import uuid

import pytest
import requests

JSON = {"Accept": "application/json"}


def post(panda, method, body, auth):
    reply = requests.post(f"{panda.url}/api/v1/pilot/{method}", json=body, headers=dict(JSON, **auth), timeout=60)
    assert reply.status_code == 200, reply.text[:500]
    return reply.json()


def acquire(panda, auth):
    reply = post(panda, "acquire_jobs", {"site_name": panda.queue, "prod_source_label": "managed",
                                         "node": "wn1.test", "memory": 4000, "disk_space": 20000}, auth)
    assert reply["success"], reply
    return reply["data"]["jobs"][0]


def test_job_cycle_to_archived_finished(panda):
    panda_id = panda.submit_job(inputs=1, outputs=["out.root"], job_pars="-c 'echo hi > out.root'")
    assert panda.job_status(panda_id) == "activated"

    job = acquire(panda, panda.token_headers())  # token path: Authorization: Bearer + Origin: atlas.production
    assert job["PandaID"] == panda_id and job["inFiles"] == "input_0.root"
    assert job["transformation"] == "sh" and job["jobPars"] == "-c 'echo hi > out.root'"
    assert panda.job_status(panda_id) == "sent"

    x509 = panda.x509_headers()  # X509 emulation: X-Test-DN of the production robot
    base = {"job_id": panda_id, "attempt_nr": job["attemptNr"]}
    for state in ("starting", "running"):
        reply = post(panda, "update_job", dict(base, job_status=state, node="wn1.test"), x509)
        assert reply["success"] and reply["data"]["StatusCode"] == 0, reply
        assert panda.job_status(panda_id) == state

    report = {}
    for lfn in job["outFiles"].split(","):
        guid = job["logGUID"] if lfn == job["logFile"] else str(uuid.uuid4())  # the pilot makes output GUIDs
        report[lfn] = {"guid": guid, "fsize": 1234, "adler32": "0a1b2c3d", "surl": f"root://se.test//data/{lfn}"}
    assert set(report) == {"out.root", job["logFile"]}
    final = dict(base, job_status="finished", trans_exit_code=0, pilot_error_code=0, exe_error_code=0,
                 cpu_consumption_time=1, core_count=1, job_output_report=json.dumps(report))
    reply = post(panda, "update_job", final, x509)
    assert reply["success"] and reply["data"]["StatusCode"] == 0, reply
    assert panda.job_status(panda_id) == "holding"

    assert panda.run_adder(panda_id) == {panda_id: "finished"}
    record = panda.job_record(panda_id)
    assert record["table"] == "jobsarchived4" and record["jobStatus"] == "finished"
    assert record["transExitCode"] == 0 and record["pilotErrorCode"] == 0 and record["modificationHost"] == "wn1.test"
    out = [f for f in panda.job_files(panda_id) if f["lfn"] == "out.root"][0]
    assert out["fsize"] == 1234 and out["checksum"] == "ad:0a1b2c3d"


def test_kill_auth_and_server_cut(panda):
    panda_id = panda.submit_job()
    assert post(panda, "acquire_jobs", {"site_name": panda.queue}, panda.x509_headers(anonymous=True))[
        "message"] == "SSL secure connection is required"
    refused = requests.post(f"{panda.url}/api/v1/pilot/acquire_jobs", json={"site_name": panda.queue},
                            headers=dict(JSON, **panda.token_headers(role="user")), timeout=60)
    assert refused.status_code == 403 or not refused.json()["success"], refused.text[:300]
    assert panda.job_status(panda_id) == "activated"

    job = acquire(panda, panda.x509_headers())
    panda.kill_job(panda_id)
    reply = post(panda, "update_job", {"job_id": panda_id, "attempt_nr": job["attemptNr"], "job_status": "running"},
                 panda.token_headers())
    assert "tobekilled" in reply["data"]["command"], reply

    panda.stop()
    assert not panda.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{panda.url}/api/v1/system/is_alive", timeout=5)
    panda.start()
    assert panda.is_alive()
    assert panda.job_record(panda_id)["commandToPilot"] == "tobekilled"  # the database kept its state


def test_https_identity_is_the_client_certificate(panda):
    """The HTTPS listener verifies the server side with the test CA and takes the identity from the client
    certificate only: test headers claiming the robot DN give nothing there, the robot's proxy does."""
    url = f"{panda.https_url}/api/v1/pilot/acquire_jobs"
    body = {"site_name": panda.queue, "prod_source_label": "managed"}
    forged = requests.post(url, json=body, headers=dict(JSON, **panda.x509_headers()), verify=panda.ca_file,
                           timeout=60)
    assert forged.json()["message"] == "SSL secure connection is required"
    proxied = requests.post(url, json=body, headers=JSON, verify=panda.ca_file,
                            cert=(panda.robot_proxy, panda.robot_proxy), timeout=60)
    assert proxied.json()["message"] == "No jobs in PanDA", proxied.text[:300]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{panda.https_url}/api/v1/system/is_alive", timeout=10)  # system CAs: the test CA is unknown


def test_cut_and_restore_drop_even_open_connections(panda):
    """cut() makes the server unreachable as a stopped process would -- new connections refused, a kept-alive one
    dropped -- and restore() brings it back at once, its database untouched."""
    session = requests.Session()
    session.headers.update(JSON)
    assert session.get(f"{panda.url}/api/v1/system/is_alive", timeout=10).json()["success"]  # kept alive
    panda.cut()
    try:
        with pytest.raises(requests.ConnectionError):
            session.get(f"{panda.url}/api/v1/system/is_alive", timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{panda.https_url}/api/v1/system/is_alive", verify=panda.ca_file, timeout=5)
        assert not panda.is_alive()
    finally:
        panda.restore()
    assert panda.is_alive()
    assert session.get(f"{panda.url}/api/v1/system/is_alive", timeout=10).json()["success"]
