"""Request building and reply decoding for the PanDA dispatcher, against replies recorded from real servers."""

import json

from pilot.channels import panda_protocol as proto
from pilot.channels.panda import server_url

# recorded from panda-server 1.0.4 (spec panda-server.md A.3, B.5), abridged
V1_ACQUIRE = json.dumps({"success": True, "message": "", "data": {"StatusCode": 0, "jobs": [{
    "StatusCode": 0, "PandaID": 4, "prodSourceLabel": "managed", "transformation": "https://x/trf.sh",
    "jobPars": "--echo hello --sleep 1", "attemptNr": 0, "inFiles": "input_0.root,input_1.root",
    "GUID": "01ef,6e52", "checksum": "ad:00000001,ad:00000001", "fsize": "1024,1024", "scopeIn": "test,test",
    "outFiles": "out.root,log.tgz", "logFile": "log.tgz", "logGUID": "fac4", "scopeOut": "panda",
    "scopeLog": "panda", "ddmEndPointIn": ",", "ddmEndPointOut": ",", "taskID": "NULL", "coreCount": 1,
    "maxWalltime": 3600, "ioIntensity": None}]}})
V1_NO_JOBS = '{"success": false, "message": "No jobs in PanDA", "data": null}'
V1_UPDATE_KILL = '{"success": true, "message": "", "data": {"StatusCode": 0, "command": "tobekilled"}}'
V1_UPDATE_DEBUG = ('{"success": true, "message": "", "data": {"StatusCode": 0, '
                   '"command": "debug,tail -n 50 payload.stdout", "pilotSecrets": "{}"}}')
V1_UPDATE_NULL = '{"success": true, "message": "", "data": {"StatusCode": 0, "command": "NULL"}}'
V1_META_FAIL = '{"success": true, "message": "", "data": {"StatusCode": 30, "ErrorDiag": "Failed to add meta_data"}}'
V1_BAD_STATE = '{"success": false, "message": "invalid job_status", "data": {"StatusCode": 50}}'
LEGACY_GETJOB = "StatusCode=0&PandaID=7&transformation=sh&jobPars=-c+true&inFiles=&outFiles=l.tgz&logFile=l.tgz"
LEGACY_NOJOBS = "StatusCode=20&errorDialog=No+jobs+in+PanDA"
LEGACY_UPDATE = "StatusCode=0&command=tobekilled"


def test_v1_acquire_reply():
    reply = proto.decode_reply(V1_ACQUIRE)
    assert reply.ok and reply.status_code == 0 and len(reply.jobs) == 1
    assert reply.jobs[0]["PandaID"] == 4
    assert not proto.is_no_jobs(reply)


def test_v1_no_jobs():
    reply = proto.decode_reply(V1_NO_JOBS)
    assert not reply.ok and proto.is_no_jobs(reply)


def test_v1_update_commands():
    assert proto.decode_reply(V1_UPDATE_KILL).commands == ["tobekilled"]
    assert proto.decode_reply(V1_UPDATE_DEBUG).commands == ["debug", "tail -n 50 payload.stdout"]
    assert proto.decode_reply(V1_UPDATE_NULL).commands == []


def test_v1_status_code_inside_data_is_failure():
    reply = proto.decode_reply(V1_META_FAIL)
    assert not reply.ok and reply.status_code == 30 and "meta_data" in reply.message
    reply = proto.decode_reply(V1_BAD_STATE)
    assert not reply.ok and reply.message == "invalid job_status" and not proto.is_no_jobs(reply)


def test_legacy_replies():
    reply = proto.decode_reply(LEGACY_GETJOB)
    assert reply.ok and reply.jobs[0]["PandaID"] == "7" and reply.jobs[0]["jobPars"] == "-c true"
    assert proto.is_no_jobs(proto.decode_reply(LEGACY_NOJOBS))
    assert proto.decode_reply(LEGACY_UPDATE).commands == ["tobekilled"]
    assert proto.decode_reply("Succeeded").ok
    legacy_json = proto.decode_reply('{"StatusCode": 0, "command": "NULL"}')
    assert legacy_json.ok and legacy_json.commands == []
    bulk = proto.decode_reply("StatusCode=0&jobs=" + json.dumps([{"PandaID": 1}, {"PandaID": 2}]))
    assert [job["PandaID"] for job in bulk.jobs] == [1, 2]


def test_garbage_replies_are_failures_not_exceptions():
    for text in ("", "<html>Internal Server Error</html>", "{not json", "[1, 2]", "null", '{"success": true}'):
        reply = proto.decode_reply(text)
        assert isinstance(reply, proto.ServerReply)
        assert not reply.jobs


def test_v1_update_body_types_and_names():
    update = {"jobId": "4242", "state": "finished", "attemptNr": 1, "timestamp": "2026-01-01T00:00:00Z",
              "transExitCode": 0, "pilotErrorCode": 0, "pilotErrorDiag": "", "coreCount": 1,
              "cpuConsumptionTime": 12, "cpuConversionFactor": 1, "startTime": "2026-01-01 00:00:00",
              "xml": "{}", "metaData": '{"a": 1}', "pilotTiming": "1|2|3|4|5|6", "unknownKey": "x",
              "siteName": "Q", "node": "wn1", "batchID": ""}
    body = proto.v1_update_body(update)
    assert body["job_id"] == 4242 and isinstance(body["job_id"], int)
    assert body["job_status"] == "finished" and body["attempt_nr"] == 1
    assert body["job_output_report"] == "{}" and body["meta_data"] == '{"a": 1}'
    assert body["cpu_conversion_factor"] == 1.0 and isinstance(body["cpu_conversion_factor"], float)
    assert "timestamp" not in body and "unknownKey" not in body  # v1 rejects unknown names
    assert "batch_id" not in body and "pilot_error_diag" not in body  # empty strings are not sent
    assert body["pilot_error_code"] == 0 and body["trans_exit_code"] == 0


def test_legacy_forms():
    form = proto.legacy_update_form({"jobId": "1", "state": "running", "timestamp": "t", "bogus": 1})
    assert form == {"jobId": "1", "state": "running", "timestamp": "t"}
    acquire = proto.legacy_acquire_form({"site_name": "Q", "memory": 2000, "n_jobs": 1, "prod_source_label": "x"})
    assert acquire == {"siteName": "Q", "mem": "2000", "nJobs": "1", "prodSourceLabel": "x"}


def test_server_url_normalisation():
    assert server_url("", 25443, "https://pandaserver.cern.ch:25443") == "https://pandaserver.cern.ch:25443"
    assert server_url("https://host", 25443, "") == "https://host:25443"
    assert server_url("http://127.0.0.1:25080/", 25443, "") == "http://127.0.0.1:25080"
    assert server_url("host.example", 1234, "") == "https://host.example:1234"
