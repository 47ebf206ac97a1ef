"""Job definitions as the PanDA server sends them (spec panda-server.md A.6/B.5, pilot3-reference §3.4), everything
that can be wrong with them, and the updateJob dict built from a job (pilot3-reference §3.5, panda-server.md A.5)."""

import calendar
import json
import random
import re
import struct
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot.errors import ERRORS, PilotError
from pilot.job import FileSpec, JobState
from pilot.jobparser import MAX_LFN_LENGTH, check_lfn, job_id_of, parse_job
from pilot.jobwire import file_info, update_dict

IN_GUIDS = ["01ef2c6a-9d0b-4b8e-8f5e-0c6f2b7d1a11", "6e52a1b4-3c2d-4e8f-9a0b-1c2d3e4f5a6b"]
LOG_GUID = "fac4b2d1-7e6f-4a5b-8c9d-0e1f2a3b4c5d"

# spec panda-server.md B.5, the observed acquire_jobs dict, with its placeholders filled in: mixed ints and
# strings, "NULL" for unset columns, comma-joined aligned lists, scopeOut without the log's entry
OBSERVED = {
    "StatusCode": 0, "PandaID": 4, "prodSourceLabel": "managed", "swRelease": "Atlas-24.0.0",
    "homepackage": "AtlasOffline/24.0.0", "transformation": "https://pandaserver.example.org/trf/user/runGen-00-00-02",
    "jobName": "pilot_it_8c1e", "jobDefinitionID": 9968, "cloud": "WORLD",
    "inFiles": "input_0.root,input_1.root", "dispatchDblock": "panda.test.dis,panda.test.dis",
    "dispatchDBlockToken": "NULL,NULL", "dispatchDBlockTokenForOut": "NULL,NULL",
    "outFiles": "panda.test.4.out.root,panda.test.4.log.tgz",
    "destinationDblock": "panda.test.out_sub01,panda.test.log_sub01", "destinationDBlockToken": "NULL,NULL",
    "prodDBlocks": "panda.test.input,panda.test.input", "prodDBlockToken": "NULL,NULL",
    "realDatasets": "panda.test.out,panda.test.log", "realDatasetsIn": "panda.test.input,panda.test.input",
    "fileDestinationSE": "TEST_QUEUE,TEST_QUEUE", "logFile": "panda.test.4.log.tgz", "logGUID": LOG_GUID,
    "jobPars": "--echo hello --sleep 1", "attemptNr": 0, "GUID": ",".join(IN_GUIDS),
    "checksum": "ad:00000001,ad:00000001", "fsize": "1024,1024", "scopeIn": "test,test", "scopeOut": "panda",
    "scopeLog": "panda", "ddmEndPointIn": ",", "ddmEndPointOut": ",", "destinationSE": "TEST_QUEUE",
    "prodUserID": "/DC=org/DC=example/CN=Test User", "maxCpuCount": 3600, "minRamCount": 2000, "maxDiskCount": 1000,
    "cmtConfig": "x86_64-el9-gcc13-opt", "processingType": "NULL", "transferType": "NULL", "sourceSite": "NULL",
    "currentPriority": 1000, "taskID": "NULL", "coreCount": 1, "jobsetID": "NULL", "reqID": "NULL", "nucleus": "NULL",
    "maxWalltime": 3600, "resource_type": "Undefined", "ioIntensity": None, "ioIntensityUnit": None, "nSent": 1,
}

BASE = {"PandaID": "7", "transformation": "run.sh"}


def observed(**changes):
    raw = dict(OBSERVED)
    raw.update(changes)
    return raw


def only_error(raw, **kwargs):
    """The job's first (code, diag); asserts there is one and that it is well formed."""
    job = parse_job(raw, **kwargs)
    assert job.errors, f"no error for {raw}"
    for code, diag in job.errors:
        assert code in ERRORS and isinstance(diag, str) and 0 < len(diag) <= 256
    return job.error_code, job.error_diag


def is_uuid4(text):
    try:
        return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text
    except ValueError:
        return False


# --- a realistic job ---------------------------------------------------------------------------------------

def test_observed_server_job_parses_without_errors():
    job = parse_job(observed())
    assert job.errors == [] and not job.failed and job.error_code == 0 and job.error_diag == ""
    assert job.jobid == "4" and job.state is JobState.STARTUP
    assert job.transformation.startswith("https://") and job.jobpars == "--echo hello --sleep 1"
    assert (job.corecount, job.attemptnr, job.maxcpucount, job.maxwalltime) == (1, 0, 3600, 3600)
    assert (job.minramcount, job.maxdiskcount) == (2000, 1000)
    assert job.prodsourcelabel == "managed" and job.swrelease == "Atlas-24.0.0"
    assert job.homepackage == "AtlasOffline/24.0.0" and job.cmtconfig == "x86_64-el9-gcc13-opt"
    assert not hasattr(job, "raw")  # only the parser reads the definition


def test_observed_inputs_are_aligned_by_position():
    first, second = parse_job(observed()).inputs
    assert (first.lfn, second.lfn) == ("input_0.root", "input_1.root")
    assert (first.guid, second.guid) == tuple(IN_GUIDS)
    for spec in (first, second):
        assert spec.role == "input" and spec.scope == "test" and spec.filesize == 1024
        assert spec.checksum == {"adler32": "00000001"} and spec.dataset == "panda.test.input"
        assert spec.dispatch_dblock == "panda.test.dis" and spec.prod_dblock == "panda.test.input"
        assert spec.ddmendpoint == "" and spec.storage_token == ""  # "," and "NULL,NULL" are empty
        assert spec.status == "" and spec.status_code == 0


def test_observed_outputs_and_log():
    job = parse_job(observed())
    [out] = job.outputs
    assert out.lfn == "panda.test.4.out.root" and out.role == "output" and out.scope == "panda"
    assert out.dataset == "panda.test.out" and out.destination_dblock == "panda.test.out_sub01"
    assert is_uuid4(out.guid)  # the server sends no output GUIDs: the pilot makes them
    log = job.logfile
    assert log.lfn == "panda.test.4.log.tgz" and log.role == "log" and log.guid == LOG_GUID
    assert log.scope == "panda" and log.dataset == "panda.test.log" and log.destination_dblock == "panda.test.log_sub01"
    assert [spec.lfn for spec in job.staged_files] == ["panda.test.4.out.root", "panda.test.4.log.tgz"]
    job.stageout_mode = "log"
    assert job.staged_files == [log]


def test_null_strings_and_json_nulls_mean_unset():
    job = parse_job(observed(taskID="NULL", cmtConfig=None, swRelease="NULL", coreCount="NULL", attemptNr=None,
                             maxWalltime="NULL", jobPars="NULL", secrets=None))
    assert job.errors == []
    assert (job.taskid, job.cmtconfig, job.swrelease, job.jobpars, job.secrets) == ("", "", "", "", "")
    assert (job.corecount, job.attemptnr, job.maxwalltime) == (1, 0, 0)


def test_numbers_arrive_as_ints_or_strings():
    job = parse_job(dict(BASE, PandaID=123, taskID=42, coreCount="8", attemptNr=3, maxWalltime="3600.0",
                         minRamCount=2000.0))
    assert job.errors == [] and job.jobid == "123" and job.taskid == "42"
    assert (job.corecount, job.attemptnr, job.maxwalltime, job.minramcount) == (8, 3, 3600, 2000)
    assert parse_job(dict(BASE, coreCount="0")).corecount == 1
    assert parse_job(dict(BASE, coreCount=-4)).corecount == 1


def test_null_entries_inside_aligned_lists():
    job = parse_job(dict(BASE, inFiles="a.root,NULL,b.root", fsize="10,NULL,20", GUID="g1,NULL,g3",
                         checksum="ad:0000000a,NULL,NULL", scopeIn="s1, NULL ,s3"))
    assert job.errors == []
    assert [(f.lfn, f.filesize, f.guid, f.checksum) for f in job.inputs] == [
        ("a.root", 10, "g1", {"adler32": "0000000a"}), ("b.root", 20, "g3", {})]
    assert [f.scope for f in job.inputs] == ["s1", "s3"]  # " NULL " is NULL too


def test_list_items_are_stripped():
    job = parse_job(dict(BASE, inFiles=" a.root , b.root ", fsize=" 1 , 2 "))
    assert [(f.lfn, f.filesize) for f in job.inputs] == [("a.root", 1), ("b.root", 2)] and job.errors == []


@pytest.mark.parametrize("value,expected", [
    ("ad:0a1b2c3d", {"adler32": "0a1b2c3d"}),
    ("ad:0A1B2C3D", {"adler32": "0a1b2c3d"}),
    ("ad:1a2b", {"adler32": "00001a2b"}),  # leading zeros dropped by the catalogue
    ("0a1b2c3d", {"adler32": "0a1b2c3d"}),  # bare value: adler32 (Pilot 3)
    ("md:0123456789abcdef0123456789ABCDEF", {"md5": "0123456789abcdef0123456789abcdef"}),
    ("md5:d41d8cd98f00b204e9800998ecf8427e", {"md5": "d41d8cd98f00b204e9800998ecf8427e"}),
    ("NULL", {}),
    ("", {}),
])
def test_checksum_forms(value, expected):
    job = parse_job(dict(BASE, inFiles="a.root", checksum=value))
    assert job.errors == [] and job.inputs[0].checksum == expected


def test_duplicate_input_lfns_are_dropped_keeping_the_first():
    job = parse_job(dict(BASE, inFiles="a.root,b.root,a.root,NULL", GUID="g1,g2,g3,NULL",
                         checksum="ad:1a2b,md5:0123456789abcdef0123456789ABCDEF,ad:ffff,NULL", fsize="1,2,3,0"))
    assert job.errors == []
    assert [(f.lfn, f.guid, f.filesize) for f in job.inputs] == [("a.root", "g1", 1), ("b.root", "g2", 2)]
    assert job.inputs[0].checksum == {"adler32": "00001a2b"}


def test_scope_out_may_be_one_shorter_than_out_files():
    short = parse_job(dict(BASE, outFiles="o1.root,o2.root,job.log.tgz", scopeOut="s1,s2", logFile="job.log.tgz",
                           scopeLog="logscope"))
    assert short.errors == []
    assert [(f.lfn, f.scope) for f in short.outputs] == [("o1.root", "s1"), ("o2.root", "s2")]
    assert short.logfile.scope == "logscope"
    full = parse_job(dict(BASE, outFiles="o1.root,job.log.tgz", scopeOut="s1,s9", logFile="job.log.tgz"))
    assert full.errors == [] and full.logfile.scope == "s9"  # no scopeLog: its scopeOut entry
    # two short is wrong, and so is one short when there is no log to explain it
    assert only_error(dict(BASE, outFiles="o1.root,o2.root,job.log.tgz", scopeOut="s1",
                           logFile="job.log.tgz"))[0] == 1312
    assert only_error(dict(BASE, outFiles="o1.root,o2.root", scopeOut="s1"))[0] == 1312


def test_log_file_from_log_file_log_guid_and_scope_log():
    # a log that outFiles does not list still becomes the log FileSpec
    job = parse_job(dict(BASE, logFile="x.log.tgz", logGUID=LOG_GUID, scopeLog="user.someone"))
    assert job.errors == [] and job.outputs == []
    assert (job.logfile.lfn, job.logfile.guid, job.logfile.scope, job.logfile.role) == (
        "x.log.tgz", LOG_GUID, "user.someone", "log")
    generated = parse_job(dict(BASE, logFile="x.log.tgz", logGUID="NULL"))
    assert is_uuid4(generated.logfile.guid)
    assert parse_job(dict(BASE, logFile="NULL")).logfile is None
    assert parse_job(dict(BASE)).logfile is None


def test_output_guids_are_generated_and_distinct():
    names = [f"out_{i}.root" for i in range(20)]
    job = parse_job(dict(BASE, outFiles=",".join(names + ["log.tgz"]), logFile="log.tgz"))
    guids = [spec.guid for spec in job.outputs]
    assert len(guids) == 20 and len(set(guids)) == 20 and all(is_uuid4(g) for g in guids)
    assert job.logfile.guid not in guids and is_uuid4(job.logfile.guid)


def test_no_transfer_at_all():
    job = parse_job(dict(BASE))
    assert job.errors == [] and job.inputs == [] and job.outputs == [] and job.logfile is None


def test_secrets_are_kept_but_not_shown_or_sent():
    job = parse_job(dict(BASE, secrets='{"token": "s3cr3t"}', pilotSecrets="p1l0t"))
    assert job.secrets == '{"token": "s3cr3t"}' and job.pilotsecrets == "p1l0t"
    text = repr(job) + json.dumps(update_dict(job, "running", {}, final=False)) + json.dumps(
        update_dict(job, "finished", {}, final=True))
    assert "s3cr3t" not in text and "p1l0t" not in text


# --- malformed definitions: a code and a diag, never an exception ------------------------------------------

@pytest.mark.parametrize("extra,code,needle", [
    # names that a path or a shell would misread
    ({"outFiles": "../../etc/x"}, 1371, "illegal characters"),
    ({"inFiles": "../../etc/x"}, 1371, "../../etc/x"),
    ({"outFiles": "/etc/passwd"}, 1371, "/etc/passwd"),
    ({"inFiles": "sub/dir.root"}, 1371, "illegal"),
    ({"inFiles": "$(rm -rf ~)"}, 1371, "illegal"),
    ({"outFiles": "`reboot`.root"}, 1371, "illegal"),
    ({"inFiles": "a;b.root"}, 1371, "illegal"),
    ({"outFiles": "a b.root"}, 1371, "illegal"),
    ({"outFiles": "a\nb"}, 1371, "a\\nb"),
    ({"inFiles": "a\rb"}, 1371, "illegal"),
    ({"inFiles": ".hidden"}, 1371, "illegal"),
    ({"inFiles": ".."}, 1371, "illegal"),
    ({"inFiles": "caf\u00e9.root"}, 1371, "illegal"),
    ({"logFile": "log;reboot", "outFiles": "log;reboot"}, 1371, "illegal"),
    ({"logFile": "../log.tgz"}, 1371, "illegal"),
    ({"scopeIn": "bad scope!", "inFiles": "a"}, 1371, "scope"),
    ({"outFiles": "o.root", "scopeOut": "../up"}, 1371, "scope"),
    ({"logFile": "l.tgz", "scopeLog": "a/b"}, 1371, "scope"),
    # NUL and undecodable bytes (json.loads gives lone surrogates for them) anywhere
    ({"jobPars": "a\x00b"}, 1302, "NUL"),
    ({"inFiles": "a\x00.root"}, 1302, "inFiles contains NUL"),
    ({"jobPars": "bad \udcff surrogate"}, 1302, "undecodable"),
    ({"outFiles": "o\ud800.root"}, 1302, "undecodable"),
    # length
    ({"inFiles": "x" * 256}, 1190, "LFN too long (256 > 255"),
    ({"outFiles": "y" * 1000}, 1190, "LFN too long"),
    # alignment
    ({"inFiles": "a,b", "fsize": "1"}, 1312, "fsize has 1 entries, expected 2"),
    ({"inFiles": "a", "checksum": "ad:1,ad:2"}, 1312, "checksum has 2 entries, expected 1"),
    ({"inFiles": "a,b,c", "GUID": "g1,g2"}, 1312, "GUID"),
    ({"outFiles": "o1,o2", "realDatasets": "d1,d2,d3"}, 1312, "realDatasets"),
    ({"fsize": "10"}, 1312, "fsize has 1 entries, expected 0"),
    # types
    ({"jobPars": ["a", "b"]}, 1302, "jobPars has type list, expected a string"),
    ({"inFiles": {"a": 1}}, 1302, "inFiles has type dict"),
    ({"coreCount": [8]}, 1302, "coreCount has type list"),
    ({"transformation": {"x": "y"}}, 1302, "transformation has type dict"),
    ({"logFile": True}, 1302, "logFile has type bool"),
    # numbers
    ({"coreCount": "many"}, 1302, "coreCount='many' is not a number"),
    ({"attemptNr": "1e3"}, 1302, "not a number"),
    ({"maxWalltime": "9" * 400 + ".0"}, 1302, "not a number"),  # a float infinity
    ({"maxWalltime": float("nan")}, 1302, "not a number"),
    ({"maxCpuCount": 10 ** 5000}, 1302, "too large"),
    ({"inFiles": "a", "fsize": "big"}, 1302, "bad file size 'big' for a"),
    ({"inFiles": "a", "fsize": "-5"}, 1302, "bad file size"),
    ({"inFiles": "a", "fsize": "1.5"}, 1302, "bad file size"),
    # checksums
    ({"inFiles": "a", "checksum": "ad:xyz"}, 1302, "malformed ad checksum 'xyz' for a"),
    ({"inFiles": "a", "checksum": "ad:123456789"}, 1302, "malformed"),
    ({"inFiles": "a", "checksum": "md5:abc"}, 1302, "malformed md5"),
    ({"inFiles": "a", "checksum": "ad:"}, 1302, "malformed"),
    ({"inFiles": "a", "checksum": "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709"}, 1314,
     "unknown checksum type 'sha1' for a"),
    ({"inFiles": "a", "checksum": "crc32:1234"}, 1314, "unknown checksum type"),
    # duplicates and clashes
    ({"outFiles": "o,o"}, 1008, "output file o is listed twice"),
    ({"inFiles": "same.dat", "outFiles": "same.dat"}, 1221, "has the name of an input file"),
    ({"inFiles": "same.dat", "logFile": "same.dat"}, 1221, "input file"),
])
def test_malformed_definitions_get_a_code_and_a_diag(extra, code, needle):
    got, diag = only_error(dict(BASE, **extra))
    assert got == code, (got, diag)
    assert needle in diag, diag


def test_huge_field_over_max_field():
    assert only_error(dict(BASE, jobPars="x" * 101), max_field=100) == (
        1302, "job definition field jobPars is 101 characters long (limit 100)")
    assert parse_job(dict(BASE, jobPars="x" * 100), max_field=100).errors == []
    # the default limit is [File] max_field_length, 1 MiB
    assert only_error(dict(BASE, jobPars="x" * (1048576 + 1)))[0] == 1302
    assert parse_job(dict(BASE, jobPars="x" * 1048576)).errors == []


def test_lfn_length_limit_is_255():
    assert MAX_LFN_LENGTH == 255
    assert parse_job(dict(BASE, inFiles="a" * 255)).errors == []
    assert check_lfn("a" * 255) is None and check_lfn("a" * 256)[0] == 1190


def test_missing_transformation_is_1008():
    assert only_error({"PandaID": 8}) == (1008, "job definition has no transformation")
    assert only_error({"PandaID": 8, "transformation": "NULL"})[0] == 1008
    assert only_error({"PandaID": 8, "transformation": ""})[0] == 1008


def test_every_problem_is_recorded_the_first_one_wins():
    job = parse_job({"PandaID": 9, "inFiles": "../a,b", "fsize": "1", "coreCount": "x"})
    codes = [code for code, _ in job.errors]
    assert codes[0] == 1302 and job.error_code == 1302  # coreCount comes first in the definition order
    assert {1008, 1312, 1371} <= set(codes) and len(codes) == len(set(codes))  # one entry per code


def test_a_malformed_job_is_still_a_job_that_can_be_reported():
    job = parse_job(dict(BASE, outFiles="../../etc/x,log.tgz", logFile="log.tgz", scopeOut="s"))
    assert job.jobid == "7" and job.error_code == 1371
    final = update_dict(job, "failed", {"node": "wn"}, final=True)
    assert final["pilotErrorCode"] == 1371 and "illegal" in final["pilotErrorDiag"]
    json.dumps(final, allow_nan=False)


@pytest.mark.parametrize("raw", [
    None, [], "PandaID=1", b"{}", 42, {}, {"PandaID": None}, {"PandaID": ""}, {"PandaID": "abc"}, {"PandaID": "12a"},
    {"PandaID": -3}, {"PandaID": "-3"}, {"PandaID": 0}, {"PandaID": "0"}, {"PandaID": True}, {"PandaID": 1.5},
    {"PandaID": "1" * 21}, {"PandaID": 10 ** 5000}, {"PandaID": "\u00b2"}, {"PandaID": "\uff11\uff12"},
    {"PandaID": "1 2"}, {"PandaID": [1]}, {"jobid": [1]}, {"jobid": {"a": 1}}, {"transformation": "sh"},
])
def test_no_usable_panda_id_raises_1008(raw):
    with pytest.raises(PilotError) as caught:
        parse_job(raw)
    assert caught.value.code == 1008
    assert "PandaID" in caught.value.diag or "not a dictionary" in caught.value.diag


@pytest.mark.parametrize("raw,jobid", [({"PandaID": 5}, "5"), ({"PandaID": " 6 \n"}, "6"), ({"jobid": "7"}, "7"),
                                       ({"PandaID": "1" * 20}, "1" * 20), ({"PandaID": 8, "jobid": 9}, "8")])
def test_panda_id_forms(raw, jobid):
    assert job_id_of(raw) == jobid


# --- updateJob dict ----------------------------------------------------------------------------------------

STATIC = {"siteName": "TEST_QUEUE", "node": "wn01.example.org", "pilotID": "http://log|PR|3.9|pilot-0.1",
          "schedulerID": None, "batchID": ""}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
SERVER_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z")  # the only form the server accepts


def finished_job():
    job = parse_job(observed())
    out, log = job.outputs[0], job.logfile
    out.status, out.checksum, out.filesize, out.surl = "transferred", {"adler32": "0a0b0c0d"}, 9, "root://se//out"
    out.ddmendpoint = "TEST_DATADISK"
    log.status, log.checksum, log.filesize, log.surl = "transferred", {"md5": "f" * 32}, 5, "root://se//log"
    return job


@pytest.mark.parametrize("state", ["starting", "running"])
def test_heartbeat_update_has_no_final_fields(state):
    job = parse_job(observed())
    data = update_dict(job, state, STATIC, final=False)
    assert data["jobId"] == "4" and data["state"] == state and data["attemptNr"] == 0 and data["coreCount"] == 1
    assert data["siteName"] == "TEST_QUEUE" and data["node"] == "wn01.example.org"
    assert data["pilotID"] == STATIC["pilotID"]
    assert "schedulerID" not in data and "batchID" not in data  # unset values are not sent
    assert ISO.match(data["timestamp"])
    for key in ("xml", "pilotTiming", "endTime", "pilotErrorCode", "pilotErrorDiag", "exeErrorCode",
                "transExitCode", "metaData", "startTime", "cpuConsumptionTime", "stdout"):
        assert key not in data, key
    assert data["jobMetrics"] == "coreCount=1"
    json.dumps(data, allow_nan=False)


def test_heartbeat_of_a_failing_job_carries_its_error():
    job = parse_job(observed())
    job.fail(1150, "looping job: no file changed for 7200 s")
    data = update_dict(job, "running", STATIC, final=False)
    assert data["pilotErrorCode"] == 1150 and data["pilotErrorDiag"] == "looping job: no file changed for 7200 s"


def test_final_update_fields():
    job = finished_job()
    job.trans_exit_code, job.exe_error_code, job.exe_error_diag = 0, 0, ""
    job.timing = {"getjob": 1.2, "stagein": 3.6, "payload": 100.49, "stageout": 0.4, "initial_setup": 2.5,
                  "setup": 7}
    data = update_dict(job, "finished", STATIC, final=True, metadata='{"files": {}}')
    assert data["state"] == "finished" and data["pilotErrorCode"] == 0 and data["pilotErrorDiag"] == ""
    assert data["transExitCode"] == 0 and data["exeErrorCode"] == 0 and data["exeErrorDiag"] == ""
    assert data["metaData"] == '{"files": {}}'
    assert data["pilotTiming"] == "1|4|100|0|2|7"  # getjob|stagein|payload|stageout|initial_setup|setup
    assert SERVER_TIME.match(data["endTime"])
    json.dumps(data, allow_nan=False)


def test_pilot_timing_has_six_integer_fields_even_when_empty():
    data = update_dict(parse_job(dict(BASE)), "failed", {}, final=True)
    assert data["pilotTiming"] == "0|0|0|0|0|0"
    assert re.fullmatch(r"\d+(\|\d+){5}", data["pilotTiming"])


def test_final_xml_lists_only_transferred_files_with_adler32_or_md5sum():
    job = finished_job()
    extra = FileSpec(lfn="not.sent.root", role="output", guid=str(uuid.uuid4()), status="failed", status_code=1137)
    job.outputs.append(extra)
    info = json.loads(update_dict(job, "failed", STATIC, final=True)["xml"])
    assert sorted(info) == ["panda.test.4.log.tgz", "panda.test.4.out.root"]
    out = info["panda.test.4.out.root"]
    assert out == {"guid": job.outputs[0].guid, "fsize": 9, "adler32": "0a0b0c0d", "surl": "root://se//out",
                   "endpoint": "TEST_DATADISK", "type": "output"}
    log = info["panda.test.4.log.tgz"]
    assert log["md5sum"] == "f" * 32 and "adler32" not in log and "md5" not in log
    assert log["guid"] == LOG_GUID and log["type"] == "log" and log["fsize"] == 5
    assert file_info(job) == info


def test_final_xml_of_a_job_that_staged_nothing_is_empty():
    assert json.loads(update_dict(parse_job(observed()), "failed", STATIC, final=True)["xml"]) == {}


def test_final_update_of_a_failed_job():
    job = finished_job()
    job.fail(1305, "payload exited with code 3")
    job.fail(1137, "later problem")
    job.trans_exit_code, job.exe_error_code, job.exe_error_diag = 3, 65, "ERROR: athena crashed"
    data = update_dict(job, "failed", STATIC, final=True)
    assert data["pilotErrorCode"] == 1305 and data["pilotErrorDiag"] == "payload exited with code 3"
    assert (data["transExitCode"], data["exeErrorCode"], data["exeErrorDiag"]) == (3, 65, "ERROR: athena crashed")
    assert "metaData" not in data


def test_time_formats_and_cpu_fields():
    job = parse_job(observed())
    job.started_at = calendar.timegm((2024, 2, 29, 23, 59, 58))
    job.ended_at = job.started_at + 3601
    job.cpu_seconds, job.nevents = 1234.9, 100
    job.memory = {"maxRSS": 1000, "avgPSS": 900}
    job.metrics = {"dbTime": 1.5}
    data = update_dict(job, "finished", STATIC, final=True)
    assert data["startTime"] == "2024-02-29 23:59:58" and data["endTime"] == "2024-03-01 00:59:59"
    assert data["cpuConsumptionTime"] == 1234 and data["cpuConsumptionUnit"].startswith("s+")
    assert "-Core" in data["cpuConsumptionUnit"]
    assert data["cpuConversionFactor"] == 1.0 and data["nEvents"] == 100
    assert data["maxRSS"] == 1000 and data["avgPSS"] == 900
    assert data["jobMetrics"] == "coreCount=1 dbTime=1.5 nEvents=100"
    job.cpu_seconds = 2e9  # Pilot 3: more than 1e9 s is reported as -1
    assert update_dict(job, "running", {}, final=False)["cpuConsumptionTime"] == -1


def test_timestamp_is_now_in_utc():
    before = int(time.time())
    stamp = update_dict(parse_job(dict(BASE)), "running", {}, final=False)["timestamp"]
    got = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 1 <= got <= time.time() + 1


def test_end_time_defaults_to_now():
    data = update_dict(parse_job(dict(BASE)), "failed", {}, final=True)
    got = calendar.timegm(time.strptime(data["endTime"], "%Y-%m-%d %H:%M:%S"))
    assert abs(got - time.time()) <= 2


def test_job_metrics_are_at_most_500_characters():
    job = parse_job(dict(BASE))
    job.metrics = {f"key{i}": "v" * 20 for i in range(50)}
    assert len(update_dict(job, "running", {}, final=False)["jobMetrics"]) == 500


# --- property test: whatever arrives, a 1008 or a reportable job -------------------------------------------
#
# Hypothesis' collection and text strategies cost a millisecond or more per example, so 2000 examples of nested
# dictionaries would take seconds. Each example is therefore one byte string that `Decoder` turns into the
# definition: the bytes choose the fields (job keys, or any value as a key) and their values (None, any int or
# float bit pattern including NaN and infinities, any UTF-8 with lone surrogates where it is invalid, as json.loads
# gives them, comma lists of good and of tricky names, lists, dicts, a 4301-digit int, ...). Shrinking the bytes
# shrinks the definition. With the parser of before the fuzzing fixes this finds ~160 crashing examples in 2000.

FIELDS = ["transformation", "PandaID", "jobid", "jobPars", "inFiles", "outFiles", "logFile", "logGUID", "fsize",
          "checksum", "GUID", "scopeIn", "scopeOut", "scopeLog", "realDatasets", "realDatasetsIn", "ddmEndPointIn",
          "ddmEndPointOut", "coreCount", "attemptNr", "maxWalltime", "taskID", "secrets", "prodDBlockToken",
          "destinationDblock", "minRamCount", "cmtConfig", "container_name"]
PIECES = ["a.root", "b.root", "log.tgz", "NULL", "", " ", "../x", "/etc/passwd", "$(id)", "a\nb", "x\x00",
          "\udcff", "ad:0a1b2c3d", "ad:zz", "md5:" + "0" * 32, "md:" + "f" * 31, "sha1:00", "1024", "-1", "1.5",
          "9" * 310 + ".0", "x" * 256, "\u00e9", "user.jdoe", "1e400", "4", "0", "\u00b2"]
ODD_VALUES = [10 ** 4301, float("nan"), float("inf"), -(2 ** 63), 2 ** 64, True, False, "NULL", "x" * 5000,
              "9" * 310 + ".0", "\u00b2", "1e400", " 12 ", "-0", "0x1F", "1_000"]


class Decoder:
    """Reads a definition (or anything else) from bytes; running out of bytes reads zeros (the simplest)."""

    def __init__(self, data: bytes, words: str):
        self.data, self.pos, self.words = data, 0, words

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def take(self, count: int) -> bytes:
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def value(self, depth: int = 0):
        kind = self.byte() % 16
        if kind == 0:
            return None
        if kind == 1:
            return int.from_bytes(self.take(self.byte() % 17), "little", signed=True)
        if kind == 2:
            return struct.unpack("<d", self.take(8).ljust(8, b"\0"))[0]
        if kind == 3:  # any bytes as JSON would decode them: invalid UTF-8 becomes lone surrogates
            return self.take(self.byte() % 24).decode("utf-8", "surrogateescape")
        if kind == 4:
            return self.words
        if kind in (5, 6, 7):
            return ODD_VALUES[self.byte() % len(ODD_VALUES)]
        if kind == 8 and depth < 2:
            return [self.value(depth + 1) for _ in range(self.byte() % 3)]
        if kind == 9 and depth < 2:
            return {PIECES[self.byte() % len(PIECES)]: self.value(depth + 1) for _ in range(self.byte() % 3)}
        pool = PIECES[:4] if kind < 13 else PIECES  # 10..12: lists of good names; 13..15: of anything
        return ",".join(pool[self.byte() % len(pool)] for _ in range(self.byte() % 5))

    def key(self):
        index = self.byte()
        return FIELDS[index % len(FIELDS)] if index < 224 else self.value(2)

    def anything(self):
        shape = self.byte() % 16
        if shape == 0:
            return self.value()
        raw = {}
        for _ in range(self.byte() % 12):
            if self.pos >= len(self.data):
                break
            try:
                raw[self.key()] = self.value()
            except TypeError:  # an unhashable key
                pass
        if shape == 4:
            raw.setdefault("PandaID", ODD_VALUES[self.byte() % len(ODD_VALUES)])
        elif shape > 4:  # mostly: a usable PandaID, as an int or a string
            number = 1 + int.from_bytes(self.take(5), "little")
            raw.setdefault("PandaID", number if shape % 2 else str(number))
        if shape > 7:  # often: a transformation, so that some definitions are entirely valid
            raw.setdefault("transformation", "run.sh")
        return raw


@settings(max_examples=2000, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.binary(max_size=160))
def test_property_parse_job_and_update_dict_never_break(data):
    """Either PilotError 1008, or a Job whose errors are (known code, str <= 256) and whose updates serialise."""
    words = data[:12].decode("utf-8", "surrogateescape")  # stands for what the pilot adds: node, SURL, metadata
    raw = Decoder(data, words).anything()
    try:
        job = parse_job(raw, max_field=4096)
    except PilotError as exc:
        assert exc.code == 1008
        return
    assert job.jobid.isascii() and job.jobid.isdigit()
    for code, diag in job.errors:
        assert code in ERRORS and isinstance(diag, str) and 0 < len(diag) <= 256
    files = job.inputs + job.outputs + ([job.logfile] if job.logfile else [])
    if not job.errors:  # a job without errors has only safe, unique names
        assert all(check_lfn(spec.lfn) is None for spec in files)
        assert len({spec.lfn for spec in files}) == len(files)
    for spec in files:
        spec.status, spec.surl = "transferred", words
    static = {"node": words, "siteName": "Q", "pilotID": words}
    for state, final in (("running", False), ("failed" if job.errors else "finished", True)):
        update = update_dict(job, state, static, final, metadata=words or None)
        text = json.dumps(update, allow_nan=False)
        assert update["state"] == state and update["jobId"] == job.jobid
        if final:
            assert update["pilotErrorCode"] == job.error_code and len(update["pilotTiming"].split("|")) == 6
            staged = job.outputs + ([job.logfile] if job.logfile else [])
            assert sorted(json.loads(update["xml"])) == sorted({spec.lfn for spec in staged})
        assert json.loads(text) == update


def test_property_decoder_reaches_the_interesting_cases():
    """The decoder above is only useful if it produces valid jobs, 1008s and the other codes."""
    seen = set()
    for seed in range(1000):
        data = random.Random(seed).randbytes(random.Random(-seed).randrange(160))
        try:
            job = parse_job(Decoder(data, "w").anything(), max_field=4096)
        except PilotError:
            seen.add("raise")
            continue
        seen.update(code for code, _ in job.errors)
        if not job.errors and (job.inputs or job.outputs):
            seen.add("clean job with files")
    assert {"raise", "clean job with files", 1008, 1190, 1302, 1312, 1371} <= seen, seen
