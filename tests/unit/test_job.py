"""Job definitions as the PanDA server sends them, and everything that can be wrong with them."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot.errors import ERRORS, PilotError
from pilot.job import JobState, parse_job, update_dict

# the observed acquire_jobs dict of spec panda-server.md B.5 (mixed ints and "NULL" strings)
OBSERVED = {
    "StatusCode": 0, "PandaID": 4, "prodSourceLabel": "managed", "swRelease": "Atlas-24.0.0",
    "homepackage": "AtlasOffline/24.0.0", "transformation": "https://x/trf.sh", "jobName": "pilot_it_1",
    "jobDefinitionID": 9968, "cloud": "WORLD", "inFiles": "input_0.root,input_1.root",
    "dispatchDblock": "panda.test.dis,panda.test.dis", "dispatchDBlockToken": "NULL,NULL",
    "outFiles": "out.root,log.tgz", "destinationDblock": "ds,ds", "destinationDBlockToken": "NULL,NULL",
    "prodDBlocks": "panda.test.input,panda.test.input", "prodDBlockToken": "NULL,NULL", "realDatasets": "ds,ds",
    "realDatasetsIn": "panda.test.input,panda.test.input", "fileDestinationSE": "Q,Q", "logFile": "log.tgz",
    "logGUID": "fac4", "jobPars": "--echo hello --sleep 1", "attemptNr": 0, "GUID": "01ef,6e52",
    "checksum": "ad:00000001,ad:00000001", "fsize": "1024,1024", "scopeIn": "test,test", "scopeOut": "panda",
    "scopeLog": "panda", "ddmEndPointIn": ",", "ddmEndPointOut": ",", "destinationSE": "Q", "maxCpuCount": 3600,
    "minRamCount": 2000, "maxDiskCount": 1000, "cmtConfig": "x86_64-el9-gcc13-opt", "processingType": "NULL",
    "transferType": "NULL", "sourceSite": "NULL", "currentPriority": 1000, "taskID": "NULL", "coreCount": 1,
    "jobsetID": "NULL", "reqID": "NULL", "nucleus": "NULL", "maxWalltime": 3600, "resource_type": "Undefined",
    "ioIntensity": None, "ioIntensityUnit": None, "nSent": 1,
}


def test_observed_server_job():
    job = parse_job(dict(OBSERVED))
    assert not job.errors, job.errors
    assert job.jobid == "4" and job.taskid == "" and job.attemptnr == 0 and job.corecount == 1
    assert [f.lfn for f in job.inputs] == ["input_0.root", "input_1.root"]
    assert job.inputs[0].checksum == {"adler32": "00000001"} and job.inputs[1].filesize == 1024
    assert job.inputs[0].scope == "test" and job.inputs[0].guid == "01ef" and job.inputs[0].ddmendpoint == ""
    assert job.inputs[0].dataset == "panda.test.input" and job.inputs[0].storage_token == ""
    assert [f.lfn for f in job.outputs] == ["out.root"] and job.outputs[0].scope == "panda"
    assert job.outputs[0].guid  # generated: the server sends none
    assert job.logfile.lfn == "log.tgz" and job.logfile.guid == "fac4" and job.logfile.scope == "panda"
    assert job.maxwalltime == 3600 and job.minramcount == 2000 and job.cmtconfig == "x86_64-el9-gcc13-opt"


def test_checksum_forms_and_duplicates():
    job = parse_job({"PandaID": "5", "transformation": "sh", "inFiles": "a,b,a,NULL",
                     "checksum": "ad:1a2b,md5:0123456789abcdef0123456789ABCDEF,ad:1a2b,NULL", "fsize": "1,2,1,0"})
    assert [f.lfn for f in job.inputs] == ["a", "b"]
    assert job.inputs[0].checksum == {"adler32": "00001a2b"}
    assert job.inputs[1].checksum == {"md5": "0123456789abcdef0123456789abcdef"}
    assert not job.errors


def code_of(raw):
    job = parse_job(raw)
    assert job.errors, f"no error for {raw}"
    return job.error_code, job.error_diag


BASE = {"PandaID": "7", "transformation": "sh"}


@pytest.mark.parametrize("extra,code,text", [
    ({"outFiles": "../../etc/x"}, 1371, "illegal characters"),
    ({"outFiles": "/etc/passwd"}, 1371, "/etc/passwd"),
    ({"inFiles": "$(rm -rf ~)"}, 1371, "illegal"),
    ({"outFiles": "a\nb"}, 1371, "illegal"),
    ({"logFile": "log;reboot", "outFiles": "log;reboot"}, 1371, "illegal"),
    ({"inFiles": "x" * 256}, 1190, "LFN too long"),
    ({"inFiles": "a,b", "fsize": "1"}, 1312, "fsize has 1 entries, expected 2"),
    ({"inFiles": "a", "checksum": "ad:1,ad:2"}, 1312, "checksum"),
    ({"jobPars": ["a", "b"]}, 1302, "type list"),
    ({"inFiles": {"a": 1}}, 1302, "type dict"),
    ({"inFiles": "a", "fsize": "big"}, 1302, "bad file size"),
    ({"inFiles": "a", "fsize": "-5"}, 1302, "bad file size"),
    ({"inFiles": "a", "checksum": "ad:xyz"}, 1302, "malformed"),
    ({"inFiles": "a", "checksum": "sha1:abcd"}, 1314, "unknown checksum type"),
    ({"jobPars": "x" * 2_000_000}, 1302, "characters long"),
    ({"jobPars": "a\x00b"}, 1302, "NUL"),
    ({"jobPars": "bad \udcff surrogate"}, 1302, "undecodable"),
    ({"outFiles": "o,o"}, 1008, "listed twice"),
    ({"coreCount": "many"}, 1302, "not a number"),
    ({"inFiles": "same.dat", "outFiles": "same.dat"}, 1221, "name of an input file"),
    ({"scopeIn": "bad scope!", "inFiles": "a"}, 1371, "scope"),
])
def test_malformed_definitions_get_a_code(extra, code, text):
    got, diag = code_of(dict(BASE, **extra))
    assert got == code and text in diag and len(diag) <= 256


def test_missing_transformation():
    assert code_of({"PandaID": 8})[0] == 1008


@pytest.mark.parametrize("raw", [None, [], "PandaID=1", {}, {"PandaID": None}, {"PandaID": "abc"},
                                 {"PandaID": -3}, {"PandaID": True}, {"PandaID": "1" * 30}, {"jobid": [1]}])
def test_no_usable_panda_id_raises_1008(raw):
    with pytest.raises(PilotError) as err:
        parse_job(raw)
    assert err.value.code == 1008


def test_update_dict_states_and_fields():
    job = parse_job(dict(OBSERVED))
    static = {"siteName": "Q", "node": "wn", "pilotID": "x|y|PR|pilot-0", "batchID": ""}
    running = update_dict(job, "running", static, final=False)
    assert running["state"] == "running" and running["jobId"] == "4" and "xml" not in running
    assert "batchID" not in running and running["siteName"] == "Q"
    job.state = JobState.FAILED
    job.fail(1305, "payload exited with code 3")
    job.trans_exit_code = 3
    job.outputs[0].status, job.outputs[0].checksum, job.outputs[0].filesize = "transferred", {"adler32": "0a"}, 9
    job.logfile.status, job.logfile.checksum, job.logfile.filesize = "transferred", {"md5": "f" * 32}, 5
    job.timing = {"getjob": 1.2, "stagein": 3.6, "payload": 10, "stageout": 0.4}
    final = update_dict(job, "failed", static, final=True, metadata='{"a": 1}')
    assert final["pilotErrorCode"] == 1305 and final["transExitCode"] == 3 and final["metaData"] == '{"a": 1}'
    assert final["pilotTiming"] == "1|4|10|0|0|0"
    info = json.loads(final["xml"])
    assert info["out.root"]["adler32"] == "0a" and info["log.tgz"]["md5sum"] == "f" * 32
    assert len(final["endTime"]) == 19 and final["endTime"][4] == "-" and final["endTime"][13] == ":"
    assert "coreCount=1" in final["jobMetrics"]


def test_secrets_are_not_in_repr_or_updates():
    job = parse_job(dict(BASE, secrets='{"token": "s3cr3t"}', pilotSecrets="p1l0t"))
    assert job.secrets == '{"token": "s3cr3t"}'
    text = repr(job) + json.dumps(update_dict(job, "running", {}, final=False))
    assert "s3cr3t" not in text and "p1l0t" not in text


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=40), st.sampled_from(["NULL", ",", "a,b", "ad:1", "../x", "", "1,2,3"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
keys = st.sampled_from(["PandaID", "transformation", "jobPars", "inFiles", "outFiles", "logFile", "fsize",
                        "checksum", "scopeIn", "scopeOut", "scopeLog", "GUID", "coreCount", "attemptNr",
                        "ddmEndPointIn", "ddmEndPointOut", "realDatasets", "logGUID", "secrets", "maxWalltime"])


@settings(max_examples=2000, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(keys, values, max_size=12), st.integers(min_value=1, max_value=10 ** 12))
def test_fuzz_parser_and_update_builder(raw, panda_id):
    """Whatever the server sends: a PilotError 1008, or a job with known codes whose updates serialise."""
    raw = dict(raw, PandaID=raw.get("PandaID", panda_id))
    try:
        job = parse_job(raw)
    except PilotError as exc:
        assert exc.code == 1008
        return
    for code, diag in job.errors:
        assert code in ERRORS and isinstance(diag, str) and len(diag) <= 256
    for spec in job.inputs + job.outputs + ([job.logfile] if job.logfile else []):
        assert "/" not in spec.lfn or job.errors
    job.state = JobState.FAILED if job.errors else JobState.FINISHED
    json.dumps(update_dict(job, job.state.value, {"node": "n"}, final=True))
